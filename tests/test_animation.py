"""Animation: video in and out, the driver's motion as controls, and a photo animated end to end (tiny model)."""

import json
from pathlib import Path

import numpy as np
import pytest

from portrait.animation import animate, motion_from_landmarks, one_euro
from portrait.animation.driving import NAMES, OneEuro, expression_gains
from portrait.animation.script import scripted_controls
from portrait.errors import InvalidVideoError, NoFaceError
from portrait.face import FaceControls, apply_controls
from portrait.video import VideoWriter, frames, probe

from .face_fixtures import astronaut_image, astronaut_mesh

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _write(path, images, fps=10.0):
    with VideoWriter(path, fps) as video:
        for image in images:
            video.write(image)
    return path


# --- video in and out ---------------------------------------------------------------------------------------


def test_video_round_trip_keeps_count_rate_and_pictures(tmp_path):
    images = [np.full((61, 83, 3), 20 * i, np.uint8) for i in range(7)]
    path = _write(tmp_path / "v.mp4", images, fps=12.5)
    info = probe(path)
    assert info.size == (82, 60)  # even sides for yuv420p
    assert info.frames == 7 and info.fps == pytest.approx(12.5)
    decoded = list(frames(path))
    assert len(decoded) == 7 and decoded[0].shape == (60, 82, 3)
    assert [int(round(f.mean())) for f in decoded] == pytest.approx([20 * i for i in range(7)], abs=3)
    assert len(list(frames(path, max_frames=3))) == 3


@pytest.mark.parametrize("content", [b"", b"hello, not a video", None])
def test_what_is_not_a_video_is_refused_with_a_message(tmp_path, content):
    path = tmp_path / "clip.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InvalidVideoError, match="clip.mp4|no video file"):
        probe(path)
    with pytest.raises(InvalidVideoError):
        list(frames(path))


# --- the driver's motion ------------------------------------------------------------------------------------


def test_one_euro_keeps_a_still_signal_and_smooths_noise_but_follows_a_move():
    rng = np.random.default_rng(0)
    still = np.full((50, 2), 3.0)
    assert np.allclose(one_euro(still, 25.0), 3.0)
    noisy = 0.01 * rng.standard_normal((200, 1))  # a still head tracked with 1 % of a slider's range of noise
    assert one_euro(noisy, 25.0).std() < 0.6 * noisy.std()
    step = np.r_[np.zeros(25), np.ones(50)][:, None]
    smoothed = one_euro(step, 25.0)
    assert smoothed[24, 0] == 0.0 and 0.95 < smoothed[-1, 0] <= 1.0  # causal, and it arrives
    assert np.all(np.diff(smoothed[:, 0]) >= 0)


def test_relative_motion_recovers_the_controls_that_moved_a_face():
    """A face moved by known controls is read back as those controls (pose from the rotation, expressions through
    the gains measured on the same face), relative to the first frame, whatever the face's size."""
    mesh = astronaut_mesh()
    truth = [FaceControls(), FaceControls(yaw=12.0), FaceControls(pitch=-8.0, roll=5.0), FaceControls(smile=0.6),
             FaceControls(jaw_open=0.5), FaceControls(brow_raise=0.5), FaceControls(eye_close=0.8)]
    track = np.stack([apply_controls(mesh, c).vertices * 3.0 for c in truth])  # another scale: a driver nearer
    motion = motion_from_landmarks(track, 25.0, expression_gains(mesh), smoothing=None)
    expected = np.array([[c.to_dict()[n] for n in NAMES] for c in truth])
    pose, expression = slice(0, 3), slice(3, 7)
    assert np.abs(motion.values[:, pose] - expected[:, pose]).max() < 0.5  # degrees
    assert np.abs(motion.values[:, expression] - expected[:, expression]).max() < 0.15
    assert motion.lost == 0


def test_lost_frames_hold_the_last_good_motion_and_are_counted():
    mesh = astronaut_mesh()
    track = np.stack([apply_controls(mesh, FaceControls(yaw=y)).vertices for y in (0.0, 10.0, 0.0, 0.0)])
    track[2:] = np.nan
    motion = motion_from_landmarks(track, 25.0, expression_gains(mesh), smoothing=None)
    assert motion.lost == 2
    assert motion.values[2:, 0] == pytest.approx([10.0, 10.0], abs=0.5)


def test_smoothing_settings_change_the_motion():
    mesh = astronaut_mesh()
    yaws = 10.0 * (np.arange(30) % 2)  # a flickering driver
    track = np.stack([apply_controls(mesh, FaceControls(yaw=y)).vertices for y in yaws])
    raw = motion_from_landmarks(track, 25.0, expression_gains(mesh), smoothing=None).values[:, 0]
    smooth = motion_from_landmarks(track, 25.0, expression_gains(mesh), smoothing=OneEuro()).values[:, 0]
    assert np.abs(np.diff(smooth)).mean() < 0.3 * np.abs(np.diff(raw)).mean()


def test_smoothing_the_example_clip_removes_the_tracking_noise_not_the_motion():
    """The example clip was made from known controls: tracked, the raw motion shakes; smoothed, its pose moves
    about as smoothly as the script's and no farther from it."""
    from portrait.animation.driving import expression_gains, motion_from_landmarks
    from portrait.animation.evaluate import track_video
    from portrait.face import align_face, face_mesh_from_landmarks
    from portrait.imageio import load_image

    face = align_face(load_image(EXAMPLES / "grace_hopper.jpg"), 512)
    gains = expression_gains(face_mesh_from_landmarks(face.landmarks, face.size))
    track = track_video(EXAMPLES / "driving.mp4")
    script = np.array([[c.to_dict()[n] for n in NAMES] for c in scripted_controls()])
    raw, smooth = (motion_from_landmarks(track, 25.0, gains, smoothing=s).values for s in (None, OneEuro()))

    def acceleration(values):
        return np.abs(np.diff(values[:, :3], 2, axis=0)).mean()

    assert acceleration(smooth) < 0.2 * acceleration(raw)
    assert acceleration(smooth) < 1.5 * acceleration(script)
    assert np.abs(smooth[:, :3] - script[:, :3]).mean() <= np.abs(raw[:, :3] - script[:, :3]).mean()
    assert np.abs(smooth[:, :3] - script[:, :3]).mean() < 2.0  # degrees


def test_script_starts_and_ends_at_rest_and_moves_in_between():
    controls = scripted_controls(fps=25.0)
    assert len(controls) == 126
    assert controls[0].is_identity() and controls[-1].is_identity()
    assert max(c.yaw for c in controls) == pytest.approx(15.0, abs=0.1)
    assert min(c.yaw for c in controls) == pytest.approx(-15.0, abs=0.1)
    assert max(c.eye_close for c in controls) == pytest.approx(1.0, abs=0.05)


# --- end to end, with a tiny model ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def studio_photo(pixel_pipe):
    """A tiny model's studio; the photo's head layer from a stand-in for the model's depth (a tiny model's own
    depth is noise)."""
    from portrait.scene import build_head_layer
    from portrait.studio import Studio

    from .test_scene import head_and_neck_depth

    studio = Studio(pixel_pipe)
    photo = studio.prepare(astronaut_image())
    photo.layers[id(pixel_pipe)] = build_head_layer(photo.image, photo.face, head_and_neck_depth(photo.face))
    return studio, photo


def test_a_photo_driven_by_a_clip_of_itself_follows_it(studio_photo, tmp_path):
    from portrait.animation.script import write_clip

    studio, photo = studio_photo
    script = [FaceControls(), FaceControls(yaw=6.0), FaceControls(yaw=12.0), FaceControls(yaw=12.0, smile=0.5)]
    clip = write_clip(studio, photo, tmp_path / "clip.mp4", controls=script, fps=10.0, size=256)
    anim = animate(studio, photo, clip, tmp_path / "out", smoothing=None)

    assert anim.frames == 4 and anim.lost == 0 and anim.message is None
    for key in ("video", "depth_video", "preview"):
        info = probe(anim.paths[key])
        assert info.frames == 4 and info.fps == pytest.approx(10.0)
    assert probe(anim.paths["preview"]).size[0] == 3 * probe(anim.paths["video"]).size[0]
    yaw = anim.motion.values[:, 0]
    assert yaw[0] == 0.0 and 3.0 < yaw[1] < yaw[2] and yaw[2] == pytest.approx(12.0, rel=0.6)  # re-measured turns
    with np.load(anim.paths["depth_npz"]) as depth:
        assert depth["frame_00000"].dtype == np.float16 and float(depth["fps"]) == pytest.approx(10.0)
        first, turned = depth["frame_00000"].astype(np.float32), depth["frame_00002"].astype(np.float32)
    layer = studio.head_layer(photo)
    assert np.allclose(first, layer.depth, equal_nan=True, atol=1e-2 * np.nanmax(np.abs(layer.depth)))
    assert not np.allclose(first, turned, equal_nan=True)
    # the first frame is the photo's own crop (the driver has not moved yet), up to the video codec
    start = next(frames(anim.paths["video"])).astype(float)
    assert np.abs(start - layer.crop).mean() < 4.0
    assert json.loads(anim.paths["motion"].read_text())["controls"] == list(NAMES)


def test_long_clips_are_cut_and_faceless_clips_refused(studio_photo, tmp_path):
    studio, photo = studio_photo
    plain = _write(tmp_path / "plain.mp4", [np.full((64, 64, 3), 128, np.uint8)] * 5)
    with pytest.raises(NoFaceError, match="driving video"):
        animate(studio, photo, plain, tmp_path / "a")
    crop = np.asarray(photo.crop.resize((128, 128)))
    clip = _write(tmp_path / "still.mp4", [crop] * 6, fps=10.0)
    anim = animate(studio, photo, clip, tmp_path / "b", max_seconds=0.3, output="photo")
    assert anim.frames == 3 and "first 0.3 s" in anim.message
    # the whole photo comes out (a still driver: the photo itself, up to the video codec)
    assert probe(anim.paths["video"]).size == photo.image.size
    assert np.abs(next(frames(anim.paths["video"])).astype(float) - np.asarray(photo.image)).mean() < 4.0


# --- the evaluation's measures -------------------------------------------------------------------------------


def test_evaluation_measures_pose_expression_and_jitter_on_known_motion():
    from portrait.animation.evaluate import expressions, jitter, poses

    mesh = astronaut_mesh()
    turned = [apply_controls(mesh, FaceControls(yaw=y)).vertices for y in np.linspace(0.0, 20.0, 9)]
    track = np.stack(turned)
    assert poses(track, track[0])[:, 0] == pytest.approx(np.linspace(0.0, 20.0, 9), abs=0.5)
    assert np.abs(expressions(track, track[0])).max() < 0.01  # a rigid turn is no expression
    smiling = np.stack([apply_controls(mesh, FaceControls(smile=s)).vertices for s in (0.0, 0.8)])
    assert np.abs(expressions(smiling, smiling[0])[1]).max() > 0.05
    shaken = track + np.random.default_rng(0).normal(0.0, 0.5, track.shape)
    assert jitter(track) < 0.2 * jitter(shaken)  # a steady turn barely accelerates


def test_jitter_ratio_interval_holds_one_for_equal_noise_and_not_for_more():
    from portrait.animation.evaluate import _reading, jitter_ratio
    from portrait.face.mesh import eye_centres

    mesh = astronaut_mesh()
    track = np.stack([apply_controls(mesh, FaceControls(yaw=y)).vertices for y in np.linspace(0.0, 20.0, 80)])
    rng = np.random.default_rng(0)
    sigma = 0.01 * np.linalg.norm(np.subtract(*eye_centres(track[0])))  # a hundredth of the eye distance
    noisy, other = (track + rng.normal(0.0, sigma, track.shape) for _ in range(2))
    ratio, low, high = jitter_ratio(noisy, other)
    assert low < 1.0 < high and ratio == pytest.approx(1.0, abs=0.1)
    assert "within the tracker's noise" in _reading((low, high))  # what the report says of it
    ratio, low, high = jitter_ratio(track + rng.normal(0.0, 2 * sigma, track.shape), other)
    assert ratio == pytest.approx(2.0, rel=0.15) and low > 1.5
    assert "rougher" in _reading((low, high)) and "smoother" in _reading((1 / high, 1 / low))
    assert jitter_ratio(noisy, other[:60])[1] < 1.0  # tracks of different lengths: drawn independently
