"""The app's handlers (portrait/demo.py) on a tiny model, without a browser or a server."""

import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from portrait import demo
from portrait.demo import OutputStore, PhotoState, StudioDemo
from portrait.errors import ImageSizeError, InvalidImageError, InvalidVideoError, NoFaceError, PortraitError
from portrait.face.controls import CONTROL_SPECS
from portrait.video import VideoWriter, probe

ROOT = Path(__file__).resolve().parent.parent
ASTRONAUT = str(ROOT / "examples" / "astronaut.png")
GRACE = str(ROOT / "examples" / "grace_hopper.jpg")
DRIVING = str(ROOT / "examples" / "driving.mp4")


# --- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def studio(pixel_pipe):
    from portrait.studio import Studio

    return Studio(pixel_pipe)


@pytest.fixture
def ui(studio, tmp_path):
    ui = StudioDemo(studio, OutputStore(keep=8, parent=tmp_path))
    yield ui
    ui.store.close()


@pytest.fixture(scope="module")
def prepared(studio):
    """The astronaut photo, prepared once for the module (face finding is the slow part)."""
    return PhotoState(demo.content_key(ASTRONAUT), studio.prepare(ASTRONAUT))


def bad_inputs(folder: Path) -> dict[str, tuple[str, type]]:
    """Files a user might send by mistake, with the error each must raise."""
    text = folder / "notes.png"
    text.write_text("this is a text file, renamed")
    no_face = folder / "no_face.png"
    yy, xx = np.mgrid[0:256, 0:256]
    PIL.Image.fromarray(np.stack([xx, yy, np.full_like(xx, 128)], -1).astype(np.uint8)).save(no_face)
    huge = folder / "huge.png"
    PIL.Image.new("1", (9000, 9000)).save(huge)  # 81 M pixels, a few kB on disk
    return {"text": (str(text), InvalidImageError), "no face": (str(no_face), NoFaceError),
            "oversized": (str(huge), ImageSizeError)}


def driving_clip(path: Path, frames: int = 6, every: int = 4, fps: float = 25.0) -> str:
    """A short driving video of a real face: every ``every``-th frame of the example clip (a turn), at ``fps``."""
    from portrait.video import frames as read

    with VideoWriter(path, fps) as video:
        for rgb in list(read(DRIVING, frames * every))[::every]:
            video.write(rgb)
    return str(path)


def bad_videos(folder: Path) -> dict[str, tuple[str, type, str]]:
    """Files a user might send as a driving video by mistake, with the error and message each must raise."""
    text = folder / "notes.txt"
    text.write_text("this is a text file")
    still = folder / "photo.mp4"
    shutil.copy(ASTRONAUT, still)  # a PNG renamed
    blank = folder / "blank.mp4"
    with VideoWriter(blank, 25.0) as video:
        for _ in range(6):
            video.write(np.full((96, 96, 3), (90, 140, 200), np.uint8))
    return {"text": (str(text), InvalidVideoError, "notes.txt is not a video"),
            "still": (str(still), InvalidVideoError, "photo.mp4 has a single frame"),
            "no face": (str(blank), NoFaceError, "no face was found in the driving video")}


# --- the four jobs ----------------------------------------------------------------------------------------


def test_estimate_depth_returns_images_mesh_and_downloads(ui, prepared):
    view = ui.estimate_depth(ASTRONAUT, ensemble_size=2, steps=2, seed=0, state=prepared)
    side = max(demo.DISPLAY_SIDES[0], ui.studio.resolution)  # small crops are enlarged for the page
    assert view.face.size == view.depth.size == view.uncertainty.size == (side, side)
    assert view.composite.size == PIL.Image.open(ASTRONAUT).size  # pasted back into the full photo
    assert view.mesh.endswith(".glb") and Path(view.mesh).stat().st_size > 0
    names = {Path(f).name for f in view.files}
    assert {"crop_rgb.png", "crop_depth.png", "crop_mesh.glb", "crop_mesh.ply", "composite.png", "depth.png",
            "depth.npy", "alignment.json"} <= names
    depth_png = PIL.Image.open(next(f for f in view.files if Path(f).name == "depth.png"))
    assert np.asarray(depth_png).dtype == np.uint16 and depth_png.size == PIL.Image.open(ASTRONAUT).size  # the photo's
    assert view.state is prepared and "head and neck pixels" in view.info


def test_photo_is_prepared_once_per_upload(ui, monkeypatch):
    calls = []
    prepare = ui.studio.prepare
    monkeypatch.setattr(ui.studio, "prepare", lambda source: calls.append(source) or prepare(source))
    state = ui.load_for_edit(ASTRONAUT).state
    for yaw in (10.0, -10.0):  # slider moves reuse the session's photo
        state = ui.edit(ASTRONAUT, yaw=yaw, steps=1, state=state).state
    state = ui.estimate_depth(ASTRONAUT, ensemble_size=1, steps=1, state=state).state
    assert calls == [ASTRONAUT]
    ui.generate(str(ROOT / "examples" / "grace_hopper.jpg"), num_images=1, steps=1, state=state)
    assert len(calls) == 2  # a new upload is prepared again


def test_upload_lifts_the_head_into_3d_once(ui, prepared, monkeypatch):
    start = ui.load_for_edit(ASTRONAUT, prepared)
    assert start.composite.size == PIL.Image.open(ASTRONAUT).size and start.mesh is None
    assert id(ui.studio.pipe) in prepared.photo.layers and "lifted into 3-D" in start.info
    monkeypatch.setattr(ui.studio, "estimate_depth", lambda *a, **k: pytest.fail("the head layer was rebuilt"))
    ui.edit(ASTRONAUT, yaw=10.0, steps=1, state=prepared)  # the slider release reuses it


def test_edit_follows_the_controls(ui, studio):
    """Yaw 25 (with smile 0.5) and smile 0.8 on the astronaut, re-measured with mediapipe on the edited photo:
    the head turned to the viewer's right, the mouth widened. (The head layer from a stand-in for the model's depth: a tiny
    model's own depth is noise.)"""
    from portrait.face import detect_landmarks
    from portrait.face.measure import FaceMeasures, head_rotation
    from portrait.scene import build_head_layer

    from .test_scene import head_and_neck_depth

    state = PhotoState(demo.content_key(ASTRONAUT), studio.prepare(ASTRONAUT))
    photo = state.photo
    photo.layers[id(studio.pipe)] = build_head_layer(photo.image, photo.face, head_and_neck_depth(photo.face))
    start = ui.load_for_edit(ASTRONAUT, state)
    view = ui.edit(ASTRONAUT, yaw=25.0, smile=0.5, steps=2, state=state)
    assert view.composite.size == start.composite.size
    before, after = (detect_landmarks(image).points for image in (photo.image, view.composite))
    yaw, pitch, roll = head_rotation(before, after)
    assert 12.0 < yaw < 40.0 and abs(pitch) < 8.0 and abs(roll) < 8.0
    smiling = detect_landmarks(ui.edit(ASTRONAUT, smile=0.8, steps=2, state=state).composite).points
    assert FaceMeasures.of(smiling).mouth_width > 1.06 * FaceMeasures.of(before).mouth_width
    assert "yaw (turn) 25 deg" in view.info and "smile 0.5" in view.info
    assert "moved in 3-D" in view.info and "% of the face crop painted by the model" in view.info
    assert any(Path(f).name == "depth_color.png" for f in view.files)
    assert Path(view.mesh).is_file()


@pytest.mark.parametrize("method", ["warp", "regenerate"])
def test_both_edit_methods_return_images(ui, prepared, method):
    view = ui.edit(ASTRONAUT, yaw=15.0, jaw_open=0.3, steps=2, method=method, state=prepared)
    assert view.composite.size == PIL.Image.open(ASTRONAUT).size
    assert view.face.size[0] >= demo.DISPLAY_SIDES[0] and Path(view.mesh).is_file()
    photo = np.asarray(PIL.Image.open(ASTRONAUT).convert("RGB"))
    assert not np.array_equal(np.asarray(view.composite), photo)
    assert ("re-generated by the model" in view.info) == (method == "regenerate")


def test_warp_with_zero_controls_is_the_photo(ui, prepared):
    view = ui.edit(ASTRONAUT, steps=2, method="warp", state=prepared)
    photo = np.asarray(PIL.Image.open(ASTRONAUT).convert("RGB"))
    np.testing.assert_array_equal(np.asarray(view.composite), photo)
    composite = next(f for f in view.files if Path(f).name == "composite.png")
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(composite).convert("RGB")), photo)
    assert "the photo itself" in view.info


def test_choices_are_the_studios():
    from portrait.studio import EDIT_METHODS

    assert tuple(demo.EDIT_METHODS) == EDIT_METHODS
    assert list(inspect.signature(StudioDemo.edit).parameters)[-3:] == ["method", "state", "progress"]
    assert list(inspect.signature(StudioDemo.generate).parameters)[-3:] == ["source", "state", "progress"]
    from portrait.animation import OUTPUTS

    assert tuple(demo.ANIMATION_OUTPUTS) == OUTPUTS


def test_random_controls_stay_in_range_and_follow_the_seed():
    specs = {s.name: s for s in CONTROL_SPECS}
    for name, (lo, hi) in demo.VARIATION_RANGES.items():
        assert specs[name].minimum <= lo < hi <= specs[name].maximum, name
    drawn = [demo.random_controls(np.random.default_rng(seed)) for seed in range(200)]
    for controls in drawn:
        for name, value in controls.to_dict().items():
            lo, hi = demo.VARIATION_RANGES.get(name, (specs[name].default, specs[name].default))
            assert lo <= value <= hi, (name, value)
            assert abs(value / specs[name].step - round(value / specs[name].step)) < 1e-6  # on the slider's steps
    assert len({tuple(c.to_dict().values()) for c in drawn}) == len(drawn)
    assert demo.random_controls(np.random.default_rng(7)) == demo.random_controls(np.random.default_rng(7))
    rng = np.random.default_rng(7)
    assert demo.random_controls(rng) != demo.random_controls(rng)


def test_edit_parameters_are_the_control_table():
    names = list(inspect.signature(StudioDemo.edit).parameters)
    assert names[2 : 2 + len(CONTROL_SPECS)] == [s.name for s in CONTROL_SPECS]


def test_reset_returns_defaults_and_the_photo(ui, prepared):
    out = ui.reset(ASTRONAUT, prepared)
    assert list(out[: len(CONTROL_SPECS)]) == [s.default for s in CONTROL_SPECS]
    assert out[len(CONTROL_SPECS)].size == PIL.Image.open(ASTRONAUT).size
    assert ui.reset(None, None)[-1] is None  # after the photo was cleared


def test_generate_gallery_pairs_and_selection(ui, prepared):
    view = ui.generate(ASTRONAUT, num_images=2, steps=2, seed=3, source="model", state=prepared)
    assert [caption for _, caption in view.gallery] == ["portrait 1", "depth 1", "portrait 2", "depth 2"]
    assert "sampled by the model from noise" in view.info
    assert len(view.results) == 2 and view.mesh == view.results[0].mesh
    mesh, files = ui.select(view.results, 3)  # the second portrait's depth tile
    assert mesh == view.results[1].mesh and Path(mesh).is_file() and files == view.results[1].files
    with pytest.raises(PortraitError, match="Generate"):
        ui.select(None, 0)


def test_generate_from_the_photo_moves_it_to_new_poses(ui, prepared):
    view = ui.generate(ASTRONAUT, num_images=2, steps=2, seed=5, state=prepared)  # source "photo" by default
    assert len(view.results) == 2 and "moved in 3-D" in view.info
    rng = np.random.default_rng(5)
    for i in (1, 2):
        label = demo.describe_controls(demo.random_controls(rng))
        assert view.gallery[2 * i - 2][1] == f"portrait {i}: {label}" and view.gallery[2 * i - 1][1] == f"depth {i}"
    composites = [next(f for f in r.files if Path(f).name == "composite.png") for r in view.results]
    a, b = (np.asarray(PIL.Image.open(f)) for f in composites)
    assert a.shape == b.shape and not np.array_equal(a, b)
    assert all(Path(r.mesh).is_file() for r in view.results)


def test_animate_moves_the_photo_by_the_driving_video(ui, prepared, tmp_path):
    clip = driving_clip(tmp_path / "clip.mp4")
    steps = []
    view = ui.animate(ASTRONAUT, clip, state=prepared, progress=lambda k, n: steps.append((k, n)))
    source = probe(clip)
    for path in (view.video, view.preview, view.depth):
        info = probe(path)  # H.264 that the page plays, frame for frame with the driver
        assert (info.frames, info.fps) == (source.frames, source.fps), path
    assert probe(view.preview).size == (3 * probe(view.video).size[0], probe(view.video).size[1])
    names = [Path(f).name for f in view.files]
    assert names == ["animation.mp4", "depth.mp4", "depth.npz", "preview.mp4", "motion.json"]
    assert all(Path(f).stat().st_size > 0 for f in view.files)
    assert steps == [(k, source.frames) for k in range(1, source.frames + 1)]
    assert view.state is prepared and "6 frames at 25 fps (0.2 s)" in view.info and "moved in 3-D" in view.info
    from portrait.video import frames as read

    first, *_, last = read(view.video)
    assert np.abs(first.astype(float) - last).mean() > 1.0  # the driver turns: so does the photo


def test_animate_bad_input_then_a_good_request(ui, prepared, tmp_path):
    clip = driving_clip(tmp_path / "slow.mp4", fps=5.0)  # 1.2 s
    for message, image, video in [("Upload a photo first", None, clip),
                                  ("Upload a driving video first", ASTRONAUT, None),
                                  ("Upload a photo and a driving video", None, "")]:
        with pytest.raises(PortraitError, match=message):
            ui.animate(image, video, state=prepared)
    for name, (path, error, message) in bad_videos(tmp_path).items():
        with pytest.raises(error, match=message) as caught:
            ui.animate(ASTRONAUT, path, state=prepared)
        assert str(tmp_path) not in str(caught.value), name  # names the file, not the server's folder
    # the session's photo still serves; the whole photo, the clip cut at one second
    view = ui.animate(ASTRONAUT, clip, output="photo", max_seconds=1, state=prepared)
    info = probe(view.video)
    assert view.state is prepared and (info.frames, info.fps) == (5, 5.0)
    assert info.size == PIL.Image.open(ASTRONAUT).size
    assert "5 frames at 5 fps (1.0 s)" in view.info and "first 1 s were animated" in view.info


# --- bad input --------------------------------------------------------------------------------------------


def test_bad_files_raise_clear_errors(ui, tmp_path):
    for name, (path, error) in bad_inputs(tmp_path).items():
        with pytest.raises(error) as caught:
            ui.estimate_depth(path, ensemble_size=1, steps=1)
        assert str(tmp_path) not in str(caught.value), name  # names the file, not the server's folder
    with pytest.raises(PortraitError, match="Upload a photo"):
        ui.generate(None)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda ui, s: ui.estimate_depth(ASTRONAUT, ensemble_size=0, state=s), "ensemble size"),
        (lambda ui, s: ui.estimate_depth(ASTRONAUT, steps=500, state=s), "steps"),
        (lambda ui, s: ui.edit(ASTRONAUT, yaw=90.0, state=s), "Yaw"),
        (lambda ui, s: ui.edit(ASTRONAUT, strength=0.0, state=s), "strength"),
        (lambda ui, s: ui.edit(ASTRONAUT, yaw=10.0, method="morph", state=s), "editing method 'morph'.*warp, regenerate"),
        (lambda ui, s: ui.generate(ASTRONAUT, source="dream", state=s), "source 'dream'.*photo, model"),
        (lambda ui, s: ui.generate(ASTRONAUT, num_images=9, state=s), "number of portraits"),
        (lambda ui, s: ui.generate(ASTRONAUT, seed=-1, state=s), "seed"),
        (lambda ui, s: ui.animate(ASTRONAUT, DRIVING, output="gif", state=s), "output 'gif'.*crop, photo"),
        (lambda ui, s: ui.animate(ASTRONAUT, DRIVING, max_seconds=30, state=s), "longest clip .* 1 and 20"),
    ],
)
def test_settings_out_of_range_are_refused(ui, prepared, call, message):
    with pytest.raises(PortraitError, match=message):
        call(ui, prepared)


# --- files, start-up, header ------------------------------------------------------------------------------


def test_output_store_keeps_the_latest_folders_and_cleans_up(tmp_path):
    store = OutputStore(keep=2, parent=tmp_path)
    folders = [store.new_folder("x") for _ in range(3)]
    assert not folders[0].exists() and folders[1].is_dir() and folders[2].is_dir()
    store.close()
    assert not store.root.exists() and list(tmp_path.iterdir()) == []


def test_warm_up_leaves_no_files(studio, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    demo.warm_up(studio)
    assert list(tmp_path.iterdir()) == []


def test_header_says_what_the_model_is(studio):
    default = demo.describe_model(studio)
    assert "synthetic" in default and "--model" in default and "relative" in default
    assert "my/checkpoint" in demo.describe_model(studio, "my/checkpoint")


def test_imports_stay_light():
    """Importing the handlers or the app loads no model and no torch (the model is loaded in main())."""
    code = "import sys, app, portrait.demo; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# --- bounded memory and disk ----------------------------------------------------------------------------------


def test_one_prepared_photo_per_file_shared_by_tabs_and_dropped_past_the_memory_budget(studio, tmp_path):
    import shutil

    copy = tmp_path / "same_photo.png"  # the same file uploaded again (another tab): another path, same content
    shutil.copy(ASTRONAUT, copy)
    ui = StudioDemo(studio, OutputStore(parent=tmp_path), demo.PhotoCache(max_mb=1e6))
    first = ui.photo(ASTRONAUT)
    assert ui.photo(str(copy)) is first and ui.photo(ASTRONAUT, first) is first and len(ui.photos) == 1
    assert first.nbytes() >= 512 * 512 * 3  # at least the photo itself

    tight = StudioDemo(studio, OutputStore(parent=tmp_path), demo.PhotoCache(max_mb=first.nbytes() * 1.5 / 2**20))
    a = tight.photo(ASTRONAUT)
    b = tight.photo(str(GRACE))
    assert b.photo is not None and a.photo is None  # the least recently used was emptied
    again = tight.photo(ASTRONAUT, a)  # its session prepares it again on its next job
    assert again.photo is not None and np.array_equal(np.asarray(again.photo.crop), np.asarray(first.photo.crop))


def test_the_output_store_stays_under_its_disk_budget(tmp_path):
    store = OutputStore(keep=100, parent=tmp_path, max_mb=0.5)
    for _ in range(8):
        folder = store.new_folder()
        (folder / "file.bin").write_bytes(b"x" * 200_000)
    assert store.disk_bytes() <= 0.5 * 2**20 + 200_000  # the budget, plus the folder being written
    assert len(list(store.root.iterdir())) < 8
