"""Metrics, baselines and the eval command on a tiny model."""

import argparse

import numpy as np
import pytest

from portrait import evaluation
from portrait.evaluation import depth_scores, mean_face_depth, normalise


def test_scores_are_invariant_to_scale_and_shift():
    rng = np.random.default_rng(0)
    gt = rng.uniform(3.7, 4.0, (16, 16)).astype(np.float32)
    mask = np.zeros((16, 16), bool)
    mask[2:14, 2:14] = True
    s = depth_scores(0.3 - 2.0 * gt, gt, mask)
    assert s.rmse < 1e-5 and s.mae < 1e-5 and s.abs_rel < 1e-5 and s.delta1 == 1.0 and s.coverage == 1.0
    noisy = depth_scores(gt + rng.normal(0, 0.05, gt.shape).astype(np.float32), gt, mask)
    assert 0.01 < noisy.rmse < 0.5
    half = np.where(np.arange(16)[None, :] < 8, gt, np.nan).astype(np.float32)
    assert depth_scores(half, gt, mask).coverage == pytest.approx(0.5)
    assert depth_scores(np.full_like(gt, np.nan), gt, mask) is None


def test_scored_region_is_aligned_over_the_whole_mask():
    rng = np.random.default_rng(1)
    gt = rng.uniform(0.0, 1.0, (16, 16)).astype(np.float32)
    mask = np.ones((16, 16), bool)
    left = np.arange(16)[None, :].repeat(16, 0) < 8
    pred = np.where(left, gt, gt + 0.5).astype(np.float32)  # right half off by a constant
    # aligned on the right half alone the offset vanishes; aligned over the whole mask it does not
    assert depth_scores(pred, gt, mask, region=~left).rmse < 1e-5
    assert depth_scores(pred, gt, mask, scored=~left).rmse > 0.1
    assert depth_scores(pred, gt, mask, scored=np.zeros_like(mask)) is None


def test_mean_face_covers_every_pixel():
    depths = np.stack([np.full((8, 8), np.nan, np.float32)] * 2)
    masks = np.zeros((2, 8, 8), bool)
    depths[:, 2:6, 2:6] = np.arange(16, dtype=np.float32).reshape(4, 4)
    masks[:, 2:6, 2:6] = True
    mean = mean_face_depth(depths, masks)
    assert np.isfinite(mean).all()
    np.testing.assert_allclose(mean[2:6, 2:6], normalise(depths[0], masks[0])[2:6, 2:6])


def test_scores_of_a_prediction_on_its_own_mask_report_its_iou():
    gt = np.tile(np.linspace(0, 1, 16, dtype=np.float32), (16, 1))
    mask = np.zeros((16, 16), bool)
    mask[:, :8] = True  # 128 pixels
    pred = gt.copy()
    pred[:, :4] = pred[:, 12:] = np.nan  # its own mask: columns 4..11, 128 pixels, 64 of them on the ground truth's
    s = depth_scores(pred, gt, mask, own_mask=True)
    assert s.iou == pytest.approx(64 / 192) and s.coverage == pytest.approx(0.5)
    assert s.rmse == pytest.approx(0.0, abs=1e-6)  # scored where both masks are
    assert depth_scores(pred, gt, mask).iou is None


def test_eval_command_on_a_tiny_model(tmp_path, tiny_model_dir):
    from portrait.data.synthetic import SyntheticSpec, write_dataset

    write_dataset(tmp_path / "data", SyntheticSpec(identities=4, views=2, size=32, seed=0, test_fraction=0.25))
    parser = argparse.ArgumentParser(prog="python -m portrait")
    evaluation.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", "--model", str(tiny_model_dir), "--data", str(tmp_path / "data"),
                              "--out", str(tmp_path / "eval"), "--steps", "1", "--limit", "2", "--joint-samples", "1",
                              "--timing-steps", "1", "--prior-weight", "0.3", "--prior-weight", "1"])
    args.func(args)
    report = (tmp_path / "eval" / "eval.md").read_text()
    for row in ("| model |", "| mean face |", "| face mesh (mediapipe) |", "| face mesh + mean face |",
                "| model + mesh prior 0.5 |", "| model + mesh prior 0.5 + blend 0.3 |",
                "| model + mesh prior 0.5 + blend 1 |", "Joint generation", "Editing"):
        assert row in report
    assert (tmp_path / "eval" / "contact_sheet.png").is_file()
    from PIL import Image

    profiles = Image.open(tmp_path / "eval" / "profiles.png")  # 2 samples x (photo, truth, estimate) side on
    assert profiles.size[0] >= 3 * evaluation.PROFILE_SIZE and profiles.size[1] >= 2 * evaluation.PROFILE_SIZE
    import json

    summary = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert summary["samples"] == 2 and summary["depth"]["mean face"]["n"] == 2
    # the model finds the head itself (its IoU is reported); the ground-truth mask is handed over in one row only
    assert "| model + mesh prior 0.5 + blend 1 [given mask] |" in report and "mask IoU" in report
    own, given = summary["depth"]["model"], summary["depth"]["model + mesh prior 0.5 + blend 1 [given mask]"]
    assert own["n"] == 2 and 0.0 <= own["iou"] <= 1.0
    assert given["iou"] is None and given["coverage"] == pytest.approx(1.0)


def test_eval_offset_skips_samples_and_rejects_an_empty_slice(tmp_path, tiny_model_dir):
    from portrait.data.synthetic import SyntheticSpec, write_dataset
    from portrait.errors import PortraitError

    write_dataset(tmp_path / "data", SyntheticSpec(identities=4, views=2, size=32, seed=0, test_fraction=0.25))
    summary = evaluation.evaluate(str(tiny_model_dir), tmp_path / "data", tmp_path / "eval", offset=1, limit=1,
                                  steps=1, joint_samples=0, timing_steps=1)
    assert summary["samples"] == 1 and summary["offset"] == 1
    assert "1 samples after the first 1 at" in (tmp_path / "eval" / "eval.md").read_text()
    with pytest.raises(PortraitError, match="offset"):
        evaluation.evaluate(str(tiny_model_dir), tmp_path / "data", tmp_path / "eval", offset=10**6, steps=1,
                            joint_samples=0)
