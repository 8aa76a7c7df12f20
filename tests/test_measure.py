"""Offline measures of faces and edits (portrait.face.measure, portrait.edit_eval) on real photos, a tiny model."""

import argparse
import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from portrait.face import REGIONS, FaceControls, apply_controls
from portrait.face.measure import FaceMeasures, head_rotation, identity_distance, psnr

from .face_fixtures import CROP_SIZE, astronaut_mesh, gradient_image

ROOT = Path(__file__).resolve().parent.parent
ASTRONAUT = ROOT / "examples" / "astronaut.png"
HOPPER = ROOT / "examples" / "grace_hopper.jpg"


def mesh_landmarks(mesh, size: int = CROP_SIZE) -> np.ndarray:
    """A face mesh back to ``[478, 3]`` landmarks: projected x, y and mediapipe-style z, in crop pixels."""
    return np.column_stack([mesh.project(size), (mesh.vertices[:, 2] - mesh.camera.distance) * size])


# --- identity ---------------------------------------------------------------------------------------------


def test_identity_distance_same_person_resized_and_another_person():
    photo = PIL.Image.open(ASTRONAUT).convert("RGB")
    assert identity_distance(photo, photo) == 0.0
    smaller = photo.resize((384, 384), PIL.Image.Resampling.LANCZOS)
    assert identity_distance(photo, smaller) < 0.2
    assert identity_distance(photo, PIL.Image.open(HOPPER)) > 0.6


# --- pose -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("controls", [dict(yaw=20), dict(yaw=-20), dict(pitch=15), dict(pitch=-15), dict(roll=15),
                                      dict(roll=-15), dict(yaw=15, pitch=-10, roll=10)])
def test_head_rotation_recovers_the_controls_pose_with_their_signs(controls):
    mesh = astronaut_mesh()
    turned = apply_controls(mesh, FaceControls(**controls))
    yaw, pitch, roll = head_rotation(mesh_landmarks(mesh), mesh_landmarks(turned))
    expected = [controls.get(k, 0.0) for k in ("yaw", "pitch", "roll")]
    np.testing.assert_allclose([yaw, pitch, roll], expected, atol=1.5)


def test_head_rotation_ignores_expression_scale_and_shift():
    mesh = astronaut_mesh()
    a = mesh_landmarks(mesh)
    b = mesh_landmarks(apply_controls(mesh, FaceControls(smile=1.0, jaw_open=1.0, eye_close=1.0, brow_raise=1.0)))
    b = b * 1.7 + [30.0, -12.0, 5.0]
    np.testing.assert_allclose(head_rotation(a, b), [0.0, 0.0, 0.0], atol=1.0)


# --- expression -------------------------------------------------------------------------------------------


def test_face_measures_follow_the_mouth_and_the_lids():
    points = mesh_landmarks(astronaut_mesh())
    before = FaceMeasures.of(points)
    assert before.iod > 10 and 0.5 < before.mouth_width < 2.0 and before.eye_opening > 0.0

    lips = np.unique(np.concatenate([REGIONS[n] for n in REGIONS if "lip" in n]))
    stretched = points.copy()
    centre = points[lips].mean(axis=0)
    stretched[lips] = centre + (points[lips] - centre) * 2.0  # the mouth twice as large about its centre
    after = FaceMeasures.of(stretched)
    assert after.mouth_width == pytest.approx(2.0 * before.mouth_width)
    assert after.mouth_opening == pytest.approx(2.0 * before.mouth_opening)
    assert (after.iod, after.eye_opening) == pytest.approx((before.iod, before.eye_opening))

    # each upper lid lowered onto its lower lid at the same place across the eye, halfway and all the way: the
    # lids' middle landmarks (159 over 145) still lie apart, beside each other and at other depths
    half, closed = points.copy(), points.copy()
    for side in ("right", "left"):
        upper, lower = list(REGIONS[f"{side}_eye_upper"]), list(REGIONS[f"{side}_eye_lower"])
        order = np.argsort(points[lower, 0])
        meet = np.interp(points[upper, 0], points[lower, 0][order], points[lower, 1][order])
        closed[upper, 1] = meet
        half[upper, 1] = (points[upper, 1] + meet) / 2
    assert FaceMeasures.of(closed).eye_opening == pytest.approx(0.0, abs=0.02 * before.eye_opening)
    assert FaceMeasures.of(half).eye_opening == pytest.approx(0.5 * before.eye_opening, rel=0.05)
    assert np.linalg.norm(closed[159] - closed[145]) > 0.02 * before.iod

    moved = points * 0.5 + [100.0, 40.0, 0.0]  # the same face smaller elsewhere: same proportions
    np.testing.assert_allclose([FaceMeasures.of(moved).mouth_width, FaceMeasures.of(moved).iod],
                               [before.mouth_width, before.iod * 0.5])


# --- pixels -----------------------------------------------------------------------------------------------


def test_psnr_identical_known_value_and_region():
    a = np.full((8, 8, 3), 100, np.uint8)
    b = a.copy()
    assert psnr(a, b) == float("inf")
    b[:4] += 1  # error 1 in the top half only
    top = np.zeros((8, 8), bool)
    top[:4] = True
    assert psnr(a, b, top) == pytest.approx(20 * np.log10(255.0))
    assert psnr(a, b, ~top) == float("inf")
    assert np.isnan(psnr(a, b, np.zeros((8, 8), bool)))


# --- the edits evaluation ---------------------------------------------------------------------------------


def test_photo_variants_keep_the_face():
    from portrait.edit_eval import photo_variants

    photo = PIL.Image.open(HOPPER).convert("RGB")
    variants = photo_variants(photo)
    assert variants["mirrored"].size == photo.size
    assert variants["0.5x"].size == (256, 300) and variants["2x"].size == (1024, 1200)
    w, h = variants["re-cropped"].size
    assert w < photo.width and h < photo.height


def test_evaluate_edits_end_to_end_on_a_tiny_model(tmp_path, pixel_pipe):
    from portrait.edit_eval import BARS, DEFAULT_SETTINGS, evaluate_edits
    from portrait.studio import Studio

    settings = {k: DEFAULT_SETTINGS[k] for k in ("zero controls", "yaw +20")}
    summary = evaluate_edits(Studio(pixel_pipe), [ASTRONAUT, gradient_image()], settings, tmp_path, steps=1)

    photo, no_face = summary["photos"]
    assert no_face["error"] and not no_face["rows"]  # recorded, not raised
    assert [r["setting"] for r in photo["rows"]] == list(settings)
    for row in photo["rows"]:
        assert row["seconds"] > 0 and row["psnr_outside_head"] is not None
        # a random tiny model may leave no face: then the measures are missing and say why
        assert row["yaw"] is not None or "no face" in row["note"]
    assert set(photo["bars"]) == set(BARS) and photo["bars"]["smile 0.8 widens the mouth >= 8 %"] is None

    saved = json.loads((tmp_path / "edits.json").read_text())
    assert saved["photos"][0]["rows"][0]["setting"] == "zero controls" and saved["edit_kwargs"] == {"steps": 1}
    report = (tmp_path / "edits.md").read_text()
    assert "## astronaut.png (512x512)" in report and "| zero controls |" in report and "Not measured" in report
    assert PIL.Image.open(tmp_path / "edits_contact_sheet.png").size[0] > 3 * 160


def test_eval_command_takes_edits_without_data(tmp_path, monkeypatch):
    from portrait import edit_eval, evaluation
    from portrait.errors import PortraitError

    calls = []
    monkeypatch.setattr("portrait.studio.Studio.load", classmethod(lambda cls, model=None: model))
    monkeypatch.setattr(edit_eval, "evaluate_edits", lambda *a, **k: calls.append((a, k)) or
                        (tmp_path / "edits.md").write_text("report"))
    parser = argparse.ArgumentParser()
    evaluation.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", "--edits", "a.png", "b.jpg", "--out", str(tmp_path), "--model", "M"])
    args.func(args)
    (studio, photos), kwargs = calls[0]
    assert studio == "M" and photos == ["a.png", "b.jpg"]
    assert kwargs["method"] is None and kwargs["variants"] is False and kwargs["seed"] == 0
    args = parser.parse_args(["eval", "--edits", "a.png", "--out", str(tmp_path), "--method", "warp", "--variants"])
    args.func(args)
    assert calls[1][1]["method"] == "warp" and calls[1][1]["variants"] is True
    with pytest.raises(PortraitError, match="--data"):
        args = parser.parse_args(["eval", "--out", str(tmp_path)])
        args.func(args)
