"""The real-texture RGB-D set (real photos' own pixels at new poses, exact depth) and the evaluation on it."""

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from portrait.data.folder import load_folder
from portrait.data.real_texture import (
    EXAMPLES,
    MIN_SIZE,
    RealTextureSpec,
    lift_photo,
    render_sample,
    sources,
    tune_split,
    write_dataset,
)
from portrait.data.synthetic import source_faces, split_sources
from portrait.evaluation import BACKGROUND_FILL, STUDIO_FILL
from portrait.face import FaceControls

SPEC = RealTextureSpec(views=2, size=32, seed=0, examples=False)


@pytest.fixture(scope="module")
def chosen():
    """One held-out photo of the tune split and one of the test split."""
    photos = sources(SPEC)
    return [next(p for p in photos if p[2] == "tune"), next(p for p in photos if p[2] == "test")]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, chosen):
    root = tmp_path_factory.mktemp("real_texture")
    write_dataset(root, SPEC, photos=chosen)
    return root


def _box(a: np.ndarray, size: int) -> np.ndarray:
    k = a.shape[0] // size
    return a.reshape(size, k, size, k, *a.shape[2:]).mean(axis=(1, 3))


def test_sources_are_the_synthetic_sets_held_out_faces_split_by_face():
    faces = source_faces()
    held = {f.name for f, h in zip(faces, split_sources(len(faces), 0.2, 0)) if h}  # the synthetic set's test sources
    photos = sources(RealTextureSpec())
    splits = {name: split for name, _, split in photos}
    assert len(splits) == len(photos)  # each source once: splits are disjoint by face
    assert {n for n, s in splits.items() if s in ("tune", "test")} == held
    tune = {n for n, s in splits.items() if s == "tune"}
    assert len(tune) == round(len(held) / 3)
    assert {n for n, s in splits.items() if s == "examples"} == set(EXAMPLES) - held
    assert tune == tune_split([n for n, _, s in photos if s != "examples"], 1 / 3, 0)  # seeded
    assert tune_split(["a", "b"], 1 / 3, 0) in ({"a"}, {"b"})  # two faces: one to tune, one to report
    assert tune_split(["a", "b", "c", "d", "e", "f"], 1 / 3, 0) == tune_split(["a", "b", "c", "d", "e", "f"], 1 / 3, 0)


def test_the_folder_has_exact_depth_on_its_mask_and_splits_by_source(folder, chosen):
    manifest = json.loads((folder / "manifest.json").read_text())
    entries = manifest["samples"]
    assert manifest["generator"] == "portrait.data.real_texture" and len(entries) == 4
    by_source = {}
    for e in entries:
        depth = np.load(folder / e["depth"])
        mask = np.asarray(Image.open(folder / e["mask"])) >= 128
        rgb = np.asarray(Image.open(folder / e["image"]))
        assert rgb.shape == (32, 32, 3) and depth.shape == mask.shape == (32, 32)
        assert np.array_equal(np.isfinite(depth), mask)  # depth exactly where the mask is
        assert 0.2 < mask.mean() < 0.8 and np.all(depth[mask] > 0)
        assert e["identity"] == e["source"]
        by_source.setdefault(e["source"], set()).add(e["split"])
    assert by_source == {name: {split} for name, _, split in chosen}  # one split per face, tune and test apart
    samples, skipped = load_folder(folder, "tune")
    assert not skipped and {s.record.meta["source"] for s in samples} == {chosen[0][0]}
    controls = {e["id"]: e["controls"] for e in entries}
    assert all(v == 0.0 for v in controls[f"{chosen[0][0]}_00"].values())  # view 0: the photo itself
    assert abs(controls[f"{chosen[0][0]}_01"]["yaw"]) > 0.0
    assert (folder / "contact_sheet.png").is_file()


def test_pixels_come_from_the_photo_and_depth_from_its_head_geometry(chosen):
    from portrait.data.real_texture import HAIR_VOLUME
    from portrait.data.synthetic import SOURCE_CROP_SIZE, head_depth
    from portrait.face import crop_face, detect_landmarks, face_mesh_from_landmarks
    from portrait.scene import render

    _, photo, _ = chosen[1]
    layer = lift_photo(photo, MIN_SIZE)

    # 1. Zero controls: the photo's aligned crop, box-filtered, and the head geometry it was lifted on
    still = render_sample(layer, FaceControls(), 32)
    crop = np.asarray(crop_face(photo, detect_landmarks(photo), MIN_SIZE).image, dtype=np.float64)
    assert np.abs(still.rgb - _box(crop, 32)).max() <= 1.0
    face = crop_face(photo, detect_landmarks(photo), SOURCE_CROP_SIZE)
    geometry = head_depth(face_mesh_from_landmarks(face.landmarks, face.size), 32, HAIR_VOLUME)
    both = still.mask & np.isfinite(geometry)
    assert both.sum() > 0.9 * still.mask.sum()
    span = np.nanmax(geometry) - np.nanmin(geometry)
    assert np.median(np.abs(still.depth - geometry)[both]) < 0.02 * span

    # 1b. With a shape change: the same pixels on the same features, the face at another depth than mediapipe's
    varied = lift_photo(photo, MIN_SIZE, np.random.default_rng(0))
    assert np.array_equal(varied.crop, layer.crop)
    assert np.allclose(varied.face.project(MIN_SIZE), layer.face.project(MIN_SIZE), atol=1e-6)
    face_z = [np.asarray(m.face.vertices)[:468, 2] for m in (layer, varied)]
    assert np.abs(np.subtract(*face_z)).max() > 0.05 * np.ptp(face_z[0])

    # 2. A new pose and an opened mouth (its inside a hole): the rendered photo pixels are kept wherever a whole
    #    block of them is shown
    controls = FaceControls(yaw=20, pitch=-8, smile=0.5, jaw_open=0.5)
    view = render(layer, controls)
    moved = render_sample(layer, controls, 32)
    shown = _box((np.isfinite(view.depth) & ~view.holes).astype(np.float64), 32) == 1.0
    assert shown.sum() > 100 and view.holes.any()
    assert np.abs(moved.rgb[shown] - _box(view.image.astype(np.float64), 32)[shown]).max() <= 0.5
    assert not np.array_equal(moved.mask, still.mask)
    assert np.array_equal(np.isfinite(moved.depth), moved.mask)


def test_eval_runs_on_the_real_texture_folder(tmp_path, tiny_model_dir, folder):
    from portrait import evaluation
    from portrait.data.synthetic import SyntheticSpec
    from portrait.data.synthetic import write_dataset as write_synthetic
    from portrait.errors import PortraitError

    write_synthetic(tmp_path / "synth", SyntheticSpec(identities=2, views=1, size=32, seed=0, test_fraction=0.0))
    parser = argparse.ArgumentParser(prog="python -m portrait")
    evaluation.register(parser.add_subparsers(dest="command", required=True))
    common = ["--model", str(tiny_model_dir), "--data", str(folder), "--steps", "1", "--timing-steps", "1",
              "--mean-face-data", str(tmp_path / "synth")]

    # 1. The sweep on the tune split: every strength x weight ranked, the best named
    args = parser.parse_args(["eval", *common, "--out", str(tmp_path / "sweep"), "--split", "tune", "--sweep-prior",
                              "--prior-strength", "0.5", "--prior-strength", "0.9", "--prior-weight", "0.3",
                              "--prior-weight", "1"])
    args.func(args)
    summary = json.loads((tmp_path / "sweep" / "eval.json").read_text())
    assert summary["split"] == "tune" and summary["samples"] == 2
    assert "synth" in summary["mean_face_from"] and summary["depth"]["mean face"]["n"] == 2
    grid = summary["sweep"]["grid"]
    assert {(g["strength"], g["weight"]) for g in grid} == {(0.5, 0.3), (0.5, 1.0), (0.9, 0.3), (0.9, 1.0)}
    assert summary["sweep"]["best"]["rmse"] == min(g["rmse"] for g in grid)
    assert summary["joint"] == {} and set(summary["holes"]) == {"steps"}  # a sweep needs the depth rows only
    report = (tmp_path / "sweep" / "eval.md").read_text()
    best = summary["sweep"]["best"]
    assert "## Prior sweep" in report and f"Best: prior strength {best['strength']:g}, blend weight {best['weight']:g}" in report

    # 2. The reported evaluation on the test split: every row, generation, editing and hole filling
    args = parser.parse_args(["eval", *common, "--out", str(tmp_path / "test"), "--joint-samples", "1",
                              "--hole-samples", "1", "--hole-masks", "2", "--fill-strength", "0.3", "--prior-strength", "0.7", "--prior-weight", "0.7"])
    args.func(args)
    summary = json.loads((tmp_path / "test" / "eval.json").read_text())
    assert summary["split"] == "test" and summary["samples"] == 2 and "sweep" not in summary
    for row in ("model", "mean face", "face mesh (mediapipe)", "face mesh + mean face", "model + mesh prior 0.7",
                "model + mesh prior 0.7 + blend 0.7", "model + mesh prior 0.7 + blend 0.7 [given mask]"):
        assert row in summary["depth"]
    assert summary["depth"]["model + mesh prior 0.7 + blend 0.7 [given mask]"]["n"] == 2
    assert summary["edit"]["target depth vs depth estimated from edited RGB"]["n"] == 1
    holes = summary["holes"]
    assert holes["model in every hole"]["n"] == holes["model from strength 0.3"]["n"] == 2  # 1 sample, 2 masks
    # the studio's fill is the model's painting on the head's hole pixels and the background continued behind it
    for part in ("[head]", "[background]"):
        fills = [f"{BACKGROUND_FILL} {part}", f"model in every hole {part}", f"{STUDIO_FILL} {part}"]
        if fills[0] in holes:
            same = fills[1] if part == "[head]" else fills[0]
            assert holes[fills[2]]["rmse"] == pytest.approx(holes[same]["rmse"])
    on_head = f"{BACKGROUND_FILL} [head]", "pre-fill alone (OpenCV Telea) [head]"
    if on_head[0] in holes:  # on the head the background fill leaves the pre-fill as it was
        assert holes[on_head[0]]["rmse"] == pytest.approx(holes[on_head[1]]["rmse"])

    # 3. A mean-face folder without a train split is refused
    with pytest.raises(PortraitError, match="train"):
        evaluation.evaluate(str(tiny_model_dir), folder, tmp_path / "x", steps=1, joint_samples=0, hole_samples=0,
                            timing_steps=1, mean_face_data=folder)


def test_the_command_is_registered():
    from portrait.__main__ import build_parser
    from portrait.data.commands import cmd_real_texture

    args = build_parser().parse_args(["real-texture", "--out", "x", "--views", "2", "--no-examples"])
    assert args.func is cmd_real_texture and args.views == 2 and not args.examples
