"""Normals from depth, relighting (numpy, the studio, the app's handler, the CLI) and the depth's turntable."""

from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from portrait.mesh import camera_distance, depth_to_mesh, depth_to_points
from portrait.relight import depth_normals, light_direction, normals_to_rgb, relight, shading
from portrait.turntable import FPS, FRAMES, SIZE, profile, turntable, write_turntable

ROOT = Path(__file__).resolve().parent.parent
ASTRONAUT = str(ROOT / "examples" / "astronaut.png")


def sphere(size: int = 128, radius: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Camera z ``[size, size]`` of a sphere at the reference distance seen by the crop's camera (NaN off it) and
    its exact unit normals ``[size, size, 3]`` (camera frame, facing the camera)."""
    from portrait.face import PinholeCamera

    rays = PinholeCamera().ray_directions(size).astype(np.float64)  # z = 1: the hit distance is the depth
    centre = np.array([0.0, 0.0, camera_distance()])
    b = rays @ centre
    a = (rays * rays).sum(-1)
    disc = b * b - a * (centre @ centre - radius**2)
    t = np.where(disc > 0, (b - np.sqrt(np.clip(disc, 0, None))) / a, np.nan)
    normals = (rays * t[..., None] - centre) / radius
    return t.astype(np.float32), normals


# --- normals ------------------------------------------------------------------------------------------------


def test_normals_of_a_sphere_match_its_geometry():
    depth, exact = sphere()
    normals = depth_normals(depth, depth_range=None)  # the values are camera z
    inside = np.isfinite(depth)
    assert not normals[~inside].any()  # zero off the depth
    norm = np.linalg.norm(normals[inside], axis=-1)
    np.testing.assert_allclose(norm, 1.0, atol=1e-5)
    # away from the rim (where the surface turns edge-on), within a degree of the true normal
    core = inside & (exact[..., 2] < -0.5)
    angle = np.degrees(np.arccos(np.clip((normals[core] * exact[core]).sum(-1), -1, 1)))
    assert angle.max() < 1.0 and normals[64, 64, 2] < -0.999
    assert normals[64, 40, 0] < -0.3 and normals[64, 88, 0] > 0.3  # the viewer's left faces left
    assert normals[40, 64, 1] < -0.3  # the top faces up (y is down)


def test_normals_place_the_depth_as_the_mesh_builder_does():
    depth, _ = sphere(32)
    relative = (depth - np.nanmin(depth)) / (np.nanmax(depth) - np.nanmin(depth))  # a model's relative depth
    mesh = depth_to_mesh(relative, edge_threshold=None)
    points = depth_to_points(relative)
    pixel = mesh.vertex_attributes["pixel"].astype(int)
    np.testing.assert_array_equal(np.asarray(mesh.vertices), points[pixel[:, 1], pixel[:, 0]])
    assert np.isnan(points[~np.isfinite(relative)]).all()


def test_normal_map_encoding_and_light_directions():
    facing = np.zeros((2, 2, 3), np.float32)
    facing[0, 0] = (0, 0, -1)  # towards the camera
    facing[0, 1] = (1, 0, 0)  # to the viewer's right
    facing[1, 0] = (0, -1, 0)  # up
    rgb = normals_to_rgb(facing)
    assert rgb[0, 0].tolist() == [128, 128, 255] and rgb[0, 1].tolist() == [255, 128, 128]
    assert rgb[1, 0].tolist() == [128, 255, 128] and rgb[1, 1].tolist() == [0, 0, 0]  # no normal
    np.testing.assert_allclose(light_direction(0, 0), (0, 0, -1), atol=1e-7)
    np.testing.assert_allclose(light_direction(-90, 0), (-1, 0, 0), atol=1e-7)  # from the viewer's left
    np.testing.assert_allclose(light_direction(0, 90), (0, -1, 0), atol=1e-7)  # from above
    assert shading(facing, light_direction(0, 0), ambient=0.3)[0, 0] == pytest.approx(1.0)
    assert shading(facing, light_direction(0, 0), ambient=0.3)[0, 1] == pytest.approx(0.3)


# --- relighting ---------------------------------------------------------------------------------------------


def test_a_light_from_the_left_brightens_the_left_of_a_sphere():
    depth, _ = sphere()
    relative = (depth - np.nanmin(depth)) / (np.nanmax(depth) - np.nanmin(depth))
    normals = depth_normals(relative)
    image = np.full(depth.shape + (3,), 128, np.uint8)
    weight = np.isfinite(depth).astype(np.float32)
    left, right = np.s_[54:74, 38:52], np.s_[54:74, 76:90]
    for azimuth, brighter, darker in ((-60, left, right), (60, right, left)):
        out = relight(image, normals, weight, azimuth, 20, 0.8).astype(float)
        assert out[brighter].mean() > out[darker].mean() + 20
    assert np.array_equal(relight(image, normals, weight, -60, 20, 0.0), image)  # zero strength
    assert np.array_equal(relight(image, normals, weight, 0, 0, 1.0), image)  # the photo's own light
    outside = ~np.isfinite(depth)
    assert np.array_equal(relight(image, normals, weight, -60, 20, 1.0)[outside], image[outside])


@pytest.fixture(scope="module")
def studio(pixel_pipe):
    from portrait.studio import Studio

    return Studio(pixel_pipe)


@pytest.fixture(scope="module")
def photo(studio):
    return studio.prepare(ASTRONAUT)


def head_depth(studio, photo):
    """A depth result of the crop: a sphere over the face (the tiny model's own depth is noise)."""
    from portrait.studio import PortraitResult

    depth, _ = sphere(studio.resolution, radius=0.2)
    return PortraitResult(image=photo.crop, depth=depth, mask=np.isfinite(depth))


def test_studio_relight_shades_the_face_and_pastes_it_back(studio, photo):
    from portrait.scene import output_size

    depth = head_depth(studio, photo)
    unchanged = studio.relight(photo, depth, -60, 20, 0.0)
    assert np.array_equal(np.asarray(unchanged.composite), np.asarray(photo.image))  # bit for bit
    size = output_size(photo.face)
    assert unchanged.image.size == (size, size) and unchanged.normals.shape == (size, size, 3)
    crop = np.asarray(unchanged.image, dtype=float).mean(-1)
    lit = studio.relight(photo, depth, -60, 20, 1.0)
    gain = np.asarray(lit.image, dtype=float).mean(-1) / np.maximum(crop, 1)
    middle = slice(size * 2 // 5, size * 3 // 5)
    assert gain[middle, size // 3: size // 2].mean() > gain[middle, size // 2: size * 2 // 3].mean() + 0.1
    composite, original = np.asarray(lit.composite), np.asarray(photo.image)
    assert lit.composite.size == photo.image.size and not np.array_equal(composite, original)
    assert np.array_equal(composite[:40, :40], original[:40, :40])  # away from the head: the photo's own pixels


# --- the app's handler and the CLI --------------------------------------------------------------------------


@pytest.fixture
def ui(studio, tmp_path):
    from portrait.demo import OutputStore, StudioDemo

    ui = StudioDemo(studio, OutputStore(keep=8, parent=tmp_path))
    yield ui
    ui.store.close()


def test_relight_estimates_the_depth_once_then_reuses_it(ui, photo, monkeypatch):
    from portrait.demo import PhotoState, content_key

    state = PhotoState(content_key(ASTRONAUT), photo)
    view = ui.relight(ASTRONAUT, azimuth=-60, elevation=20, strength=0.0, state=state)
    assert state.depth is not None and view.state is state  # estimated first: there was none
    assert np.array_equal(np.asarray(view.photo), np.asarray(photo.image))  # zero strength: the photo itself
    files = {Path(f).name: f for f in view.files}
    assert set(files) == {"relit.png", "relit_face.png", "normals.png"}
    assert np.array_equal(np.asarray(PIL.Image.open(files["relit.png"])), np.asarray(photo.image))
    assert "the photo as it is" in view.info
    monkeypatch.setattr(ui.studio, "estimate_depth", lambda *a, **k: pytest.fail("the depth was estimated again"))
    view = ui.relight(ASTRONAUT, azimuth=60, elevation=-10, strength=0.8, state=state)
    assert view.photo.size == photo.image.size and "Lit from the right (60 deg), 10 deg below" in view.info


def test_the_depth_tab_keeps_its_estimate_and_shows_the_turntable(ui, photo):
    from portrait.demo import PhotoState, content_key
    from portrait.video import probe

    state = PhotoState(content_key(ASTRONAUT), photo)
    view = ui.estimate_depth(ASTRONAUT, ensemble_size=1, steps=1, state=state)
    assert state.depth is not None  # relighting reuses it
    info = probe(view.turntable)
    assert (info.frames, info.fps, info.size) == (FRAMES, FPS, (SIZE, SIZE))
    names = {Path(f).name for f in view.files}
    assert "turntable.mp4" in names and names & {"normals.png", "crop_normals.png"}


def test_relight_settings_are_checked(ui):
    from portrait.errors import PortraitError

    with pytest.raises(PortraitError, match="light azimuth must be between -90 and 90"):
        ui.relight(ASTRONAUT, azimuth=120)
    with pytest.raises(PortraitError, match="light strength must be between 0 and 1"):
        ui.relight(ASTRONAUT, strength=1.5)


def test_relight_and_depth_commands(tiny_model_dir, tmp_path, capsys):
    from portrait.__main__ import main

    out = tmp_path / "relit"
    assert main(["relight", ASTRONAUT, "--azimuth", "60", "--elevation", "20", "--strength", "0.8", "--model",
                 str(tiny_model_dir), "--out", str(out), "--steps", "1", "--ensemble", "1"]) == 0
    assert PIL.Image.open(out / "relit.png").size == PIL.Image.open(ASTRONAUT).size
    assert (out / "relit_face.png").exists() and (out / "normals.png").exists()
    with pytest.raises(SystemExit):
        main(["relight", ASTRONAUT, "--azimuth", "100", "--out", str(out)])
    assert "must be between -90 and 90" in capsys.readouterr().err
    out = tmp_path / "depth"
    assert main(["depth", ASTRONAUT, "--model", str(tiny_model_dir), "--out", str(out), "--steps", "1",
                 "--ensemble", "1"]) == 0
    assert (out / "turntable.mp4").stat().st_size > 0
    crop = "crop_" if (out / "crop_rgb.png").exists() else ""  # the crop's files, beside a depth in the photo's pixels
    assert PIL.Image.open(out / f"{crop}normals.png").size == PIL.Image.open(out / f"{crop}rgb.png").size


# --- the turntable ------------------------------------------------------------------------------------------


def test_turntable_turns_the_textured_mesh_both_ways(tmp_path):
    from portrait.video import probe

    depth, _ = sphere(64)
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[:, :32] = (200, 40, 40)  # the viewer's left red, the right blue
    rgb[:, 32:] = (40, 40, 200)
    frames = list(turntable(depth, rgb, np.isfinite(depth)))
    assert len(frames) == FRAMES and frames[0].shape == (SIZE, SIZE, 3)
    assert frames[0][0, 0].tolist() == [255, 255, 255]  # the background
    blue = [float(((f[..., 2] > 150) & (f[..., 0] < 100)).mean()) for f in frames]
    red = [float(((f[..., 0] > 150) & (f[..., 2] < 100)).mean()) for f in frames]
    assert abs(blue[0] - red[0]) < 0.01  # face-on: as much of each
    peak, trough = FRAMES // 4, 3 * FRAMES // 4  # +30 degrees (the right comes forward), then -30
    assert blue[peak] > blue[0] + 0.01 > red[peak] + 0.02 and red[trough] > red[0] + 0.01
    path = write_turntable(tmp_path / "turntable.mp4", depth, rgb, np.isfinite(depth))
    assert (probe(path).frames, probe(path).fps) == (FRAMES, FPS)


# --- on the example photos, with the embedded default ---------------------------------------------------------


def cheek_gains(photo, original: PIL.Image.Image, relit: PIL.Image.Image) -> tuple[float, float]:
    """Mean brightness gain of the relit crop over the original on the cheek on the viewer's left and on the right
    (discs of 1/25 of the crop around mediapipe's cheek landmarks 50 and 280)."""
    size = original.size[0]
    a, b = photo.face.landmarks_at(size)[[50, 280], :2]
    yy, xx = np.mgrid[:size, :size] + 0.5
    before, after = (np.asarray(image, dtype=float).mean(-1) for image in (original, relit))
    gains = []
    for centre in sorted((a, b), key=lambda p: p[0]):
        disc = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 < (size / 25) ** 2
        gains.append(after[disc].mean() / before[disc].mean())
    return gains[0], gains[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["astronaut.png", "grace_hopper.jpg"])
def test_a_light_from_the_left_brightens_the_left_cheek_on_the_examples(name):
    from portrait.studio import Studio

    studio = Studio.load()
    photo = studio.prepare(str(ROOT / "examples" / name))
    depth = studio.estimate_depth(photo, ensemble_size=2, steps=10)  # the app's defaults
    original = studio.relight(photo, depth, -60, 20, 0.0).image
    left, right = cheek_gains(photo, original, studio.relight(photo, depth, -60, 20, 0.8).image)
    assert left / right > 1.15, (left, right)
    left, right = cheek_gains(photo, original, studio.relight(photo, depth, 60, 20, 0.8).image)
    assert right / left > 1.15, (left, right)


def test_profile_shows_a_nose_side_on():
    """Side on, a nose standing out of the sphere widens the silhouette; the view is plain grey, shaded."""
    depth, _ = sphere(64)
    nosed = depth.copy()
    yy, xx = np.mgrid[0:64, 0:64]
    tip = np.hypot(yy - 32, xx - 32) < 4
    nosed[tip] -= 0.25 * (4 - np.hypot(yy - 32, xx - 32)[tip]) / 4  # a cone, up to a quarter of the radius
    views = [profile(d, np.isfinite(d)) for d in (depth, nosed)]
    columns = [np.nonzero((v < 250).any(axis=(0, 2)))[0] for v in views]  # the columns the mesh covers
    width = [int(c[-1] - c[0]) for c in columns]
    assert width[1] > width[0] + 5  # the tip sticks out of the silhouette (the turn's pivot moves with it)
    face = views[0][(views[0] < 250).any(axis=2)]
    assert np.all(face[:, 0] == face[:, 1]) and np.all(face[:, 1] == face[:, 2]) and face[:, 0].std() > 5
