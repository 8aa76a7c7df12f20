"""The photo lifted into 3-D (portrait.scene): layer, motion, ray-cast warp, holes. No diffusion model here."""

import numpy as np
import pytest
from PIL import Image

from portrait.face import FaceControls, PinholeCamera, apply_controls, render_depth
from portrait.face.mesh import REGIONS
from portrait.mesh import camera_distance, depth_to_mesh
from portrait.scene import build_head_layer, cast, move, render
from portrait.scene.layer import EYES, MOUTH
from portrait.scene.warp import HOLE_GROW

from .face_fixtures import astronaut_image, astronaut_landmarks


def head_and_neck_depth(face, size: int = 128) -> np.ndarray:
    """A stand-in for the model's head depth: the face mesh's depth, continued (nearest value, a little
    farther) over an ellipse around the face and a neck column down to the bottom of the crop."""
    from scipy import ndimage

    from portrait.face import face_mesh_from_landmarks

    depth = render_depth(face_mesh_from_landmarks(face.landmarks, face.size), size).depth
    y, x = np.mgrid[0:size, 0:size] / size
    head = ((x - 0.5) / 0.33) ** 2 + ((y - 0.45) / 0.4) ** 2 < 1
    head |= (np.abs(x - 0.5) < 0.15) & (y > 0.5)
    head |= (np.abs(x - 0.5) < 0.3) & (y > 0.8)  # the neck widening into the collar beside the jaw
    known = np.isfinite(depth)
    nearest = ndimage.distance_transform_edt(~known, return_distances=False, return_indices=True)
    filled = depth[tuple(nearest)] + 0.05 * ~known
    return np.where(head | known, filled, np.nan).astype(np.float32)


@pytest.fixture(scope="module")
def layer():
    """The astronaut's head layer, from a stand-in for the model's depth estimate."""
    from portrait.face import crop_face

    face = crop_face(astronaut_image(), astronaut_landmarks(), 512)
    return build_head_layer(astronaut_image(), face, head_and_neck_depth(face), size=512)


def _moved(layer, **controls) -> np.ndarray:
    """``[V]`` distance each vertex moves, in crop pixels of the image plane."""
    before = layer.camera.project(layer.mesh.vertices, layer.size)
    after = layer.camera.project(move(layer, FaceControls(**controls)), layer.size)
    return np.linalg.norm(after - before, axis=1)


def _near(layer, *regions: str, radius: float) -> np.ndarray:
    """``[V]`` bool: vertices whose source pixel lies within ``radius`` crop pixels of the regions' landmarks."""
    points = layer.face.project(layer.size)[np.concatenate([REGIONS[r] for r in regions])]
    pixel = layer.mesh.vertex_attributes["pixel"]
    return np.min(np.linalg.norm(pixel[:, None] - points[None], axis=2), axis=1) < radius


def _on_outline(layer) -> np.ndarray:
    """``[V]`` bool: vertices whose source pixel lies on the head's outline (not the crop's border)."""
    from scipy import ndimage

    outline = layer.covered & ~ndimage.binary_erosion(layer.covered, border_value=1)
    at = np.clip(np.floor(layer.mesh.vertex_attributes["pixel"]).astype(int), 0, layer.size - 1)
    return outline[at[:, 1], at[:, 0]]


def test_zero_controls_give_the_crop_back_exactly(layer):
    view = render(layer, FaceControls())
    assert np.array_equal(view.image, layer.crop)
    assert not view.holes.any() and not view.changed.any()
    assert np.array_equal(move(layer, FaceControls()), layer.mesh.vertices)


def test_unmoved_layer_samples_its_own_pixels(layer):
    """Ray casting the unmoved layer gives each pixel its own position as the source (barycentric order right)."""
    warp = cast(layer.mesh, layer.mesh.vertices, layer.size, layer.camera)
    centres = np.stack(np.meshgrid(np.arange(layer.size) + 0.5, np.arange(layer.size) + 0.5), -1)
    error = np.linalg.norm(warp.source[warp.hit] - centres[warp.hit], axis=1)
    assert warp.hit.mean() > 0.3
    assert np.percentile(error, 99) < 0.25
    assert not warp.stretched.any()


def test_layer_covers_the_face_and_is_cut_at_the_lips_and_eyes(layer):
    oval = layer.face.project(layer.size)[list(REGIONS["face_oval"])].mean(axis=0).astype(int)
    assert layer.covered[oval[1], oval[0]]
    parts = set(np.unique(layer.parts))
    assert {MOUTH, EYES} <= parts
    # the mouth part's vertices have twins in the skin part at the same pixel: the parts meet without a gap
    pixel = layer.mesh.vertex_attributes["pixel"]
    mouth = {tuple(p) for p in pixel[layer.parts == MOUTH]}
    skin = {tuple(p) for p in pixel[layer.parts == 0]}
    assert mouth & skin


@pytest.mark.parametrize(
    "control, value, moving, still",
    [
        ("smile", 0.8, ("mouth_corners",), ("right_eyebrow", "left_eyebrow", "right_eye_upper")),
        ("eye_close", 1.0, ("right_eye_upper", "left_eye_upper"), ("mouth_corners", "lower_lip_outer")),
        ("brow_raise", 1.0, ("right_eyebrow", "left_eyebrow"), ("mouth_corners", "lower_lip_outer")),
        ("jaw_open", 0.6, ("lower_lip_outer",), ("upper_lip_outer", "right_eye_upper", "right_eyebrow")),
    ],
)
def test_each_expression_moves_only_its_region(layer, control, value, moving, still):
    moved = _moved(layer, **{control: value})
    skin = layer.parts == 0  # eye openings stay put while the lids close over them
    assert np.median(moved[_near(layer, *moving, radius=4) & skin]) > 2.0  # crop pixels at 512
    assert np.percentile(moved[_near(layer, *still, radius=4)], 95) < 0.5
    far = layer.mesh.vertex_attributes["pixel"][:, 1] > layer.size - 3  # the bottom row of the crop
    assert np.abs(moved[far]).max() < 0.5
    if control in ("smile", "brow_raise"):  # spread by the spline: the head's outline stays, all the way round
        landmarks = apply_controls(layer.face, FaceControls(**{control: value})).vertices - layer.face.vertices
        moving = layer.face.project(layer.size)[:468][np.linalg.norm(landmarks[:468], axis=1) > 0]
        pixel = layer.mesh.vertex_attributes["pixel"]
        away = np.min(np.linalg.norm(pixel[:, None] - moving[None], axis=2), axis=1) > 0.05 * layer.size
        assert (_on_outline(layer) & away).sum() > 100
        assert moved[_on_outline(layer) & away].max() < 0.5


def test_closing_eyes_slides_the_lashes_whole_onto_the_lower_lid(layer):
    """Down the middle of each eye the band of skin just above the upper lid (lashes, lid margin) lands on the lower
    lid at its own thickness; the skin between it and the brow takes the stretch; the brows stay."""
    from portrait.face.mesh import eye_centres
    from portrait.scene.motion import LID_BAND

    points = layer.face.project(layer.size)
    right, left = eye_centres(points)
    band = LID_BAND * np.linalg.norm(left - right)  # crop pixels
    pixel = layer.mesh.vertex_attributes["pixel"]
    after = layer.camera.project(move(layer, FaceControls(eye_close=1.0)), layer.size)
    for upper, lower in ((159, 145), (386, 374)):
        column = (np.abs(pixel[:, 0] - points[upper, 0]) < 4) & (layer.parts == 0)
        lashes = column & (pixel[:, 1] > points[upper, 1] - band) & (pixel[:, 1] < points[upper, 1])
        assert lashes.sum() >= 4
        travel = points[lower, 1] - points[upper, 1]
        assert np.allclose(after[lashes, 1] - pixel[lashes, 1], travel, rtol=0.1)
        above = column & (pixel[:, 1] < points[upper, 1] - band)
        assert (after[above, 1] - pixel[above, 1]).max() < travel  # fading out above the band
    brows = _near(layer, "right_eyebrow", "left_eyebrow", radius=4)
    assert np.percentile(_moved(layer, eye_close=1.0)[brows], 95) < 1.0


def test_yaw_turns_the_head_and_leaves_the_neck_under_the_jaw(layer):
    from portrait.face.mesh import eye_centres
    from portrait.scene.motion import NECK_FADE

    pixel = layer.mesh.vertex_attributes["pixel"]
    right = _moved(layer, yaw=20)
    nose = _near(layer, "nose", radius=3)
    assert np.median(right[nose]) > 10
    bottom = pixel[:, 1] > layer.size - 3
    assert right[bottom].max() < 0.5
    # the chin turns with the head; the neck a fade's length below the jaw line stays, the collar beside it too
    points = layer.face.project(layer.size)
    iod = float(np.linalg.norm(np.subtract(*eye_centres(points))))
    jaw = points[list(REGIONS["jaw_line"])]
    chin = jaw[np.argmax(jaw[:, 1]), :2]
    assert np.median(right[_near(layer, "jaw_line", radius=3)]) > 5
    under = np.zeros(len(pixel), bool)
    for x, y in jaw[:, :2]:  # below each point of the jaw line
        under |= (np.abs(pixel[:, 0] - x) < 2) & (pixel[:, 1] > y + (NECK_FADE + 0.02) * iod)
    level = under & (pixel[:, 1] < chin[1] + 6)  # beside the chin, about at its height: no fade to the crop's bottom yet
    assert level.sum() > 10 and right[under].max() < 0.5
    # positive yaw turns the face towards the viewer's right: the nose moves right
    before = layer.camera.project(layer.mesh.vertices, layer.size)[nose, 0]
    after = layer.camera.project(move(layer, FaceControls(yaw=20)), layer.size)[nose, 0]
    assert np.median(after - before) > 0
    after = layer.camera.project(move(layer, FaceControls(yaw=-20)), layer.size)[nose, 0]
    assert np.median(after - before) < 0


def test_a_turn_or_a_nod_keeps_the_outline_and_a_roll_turns_it(layer):
    """A real head's silhouette barely moves under a turn: the layer's outline stays while the face turns inside it."""
    from scipy import ndimage

    pixel = layer.mesh.vertex_attributes["pixel"]
    at = np.clip(np.floor(pixel).astype(int), 0, layer.size - 1)
    outline = ndimage.distance_transform_edt(layer.covered)[at[:, 1], at[:, 0]] <= 1.5
    nose = _near(layer, "nose", radius=3)
    for controls in ({"yaw": 20}, {"yaw": -20}, {"pitch": 10}):
        moved = _moved(layer, **controls)
        assert np.median(moved[nose]) > 5
        assert np.percentile(moved[outline], 95) < 0.5
    assert np.median(_moved(layer, roll=15)[outline & (pixel[:, 1] < layer.size / 2)]) > 5


def test_opened_jaw_leaves_a_hole_between_the_lips_with_head_depth(layer):
    view = render(layer, FaceControls(jaw_open=0.8))
    lips = layer.face.project(layer.size)
    top, bottom = lips[13], lips[14]  # inner lip midpoints
    x = int(round((top[0] + bottom[0]) / 2))
    column = view.holes[int(top[1]) - 2 : int(bottom[1]) + 12, x]
    assert column.any()
    mouth_hole = view.holes & (np.abs(np.arange(layer.size)[None, :] - x) < 10)
    assert view.mouth[mouth_hole].mean() > 0.9  # an opened mouth, painted as part of the head, deeper than the lips
    assert (view.fill_depth[mouth_hole] > np.nanmax(view.depth[int(top[1]) - 5 : int(top[1]), x])).all()


def test_a_barely_opened_jaw_leaves_no_crack(layer):
    """A lip moved by a fraction of a pixel opens no hole: the cut between the lips is no dotted dark line."""
    assert not render(layer, FaceControls(jaw_open=0.01)).holes.any()
    assert render(layer, FaceControls(jaw_open=0.2)).mouth.any()


def test_holes_are_exactly_the_disoccluded_step():
    """A raised square in front of a plane, moved sideways: the holes are the strip it uncovered."""
    size, step = 128, 12  # the square moves right by `step` pixels
    camera = PinholeCamera()
    z0 = camera_distance(camera.fov_deg)
    depth = np.full((size, size), z0 + 0.2, np.float32)
    depth[40:88, 40:88] = z0
    mesh = depth_to_mesh(depth, depth_range=None, edge_threshold=None)
    vertices = np.asarray(mesh.vertices, dtype=np.float64).copy()
    front = vertices[:, 2] < z0 + 0.1
    vertices[front, 0] += step * z0 / camera.focal(size)
    covered = cast(mesh, mesh.vertices, size, camera).hit
    warp = cast(mesh, vertices, size, camera)
    holes = warp.holes(covered)
    strip = np.zeros((size, size), bool)
    strip[40:88, 40 : 40 + step] = True
    grow = max(1, round(size * HOLE_GROW))
    assert holes[strip].all()
    from scipy import ndimage

    extra = holes & ~ndimage.binary_dilation(strip, np.ones((3, 3)), iterations=grow + 1)
    moved = np.zeros((size, size), bool)
    moved[40:88, 40 + step : 88 + step] = True
    outline = ndimage.binary_dilation(moved, iterations=2) & ~ndimage.binary_erosion(moved, iterations=2)
    assert not (extra & ~outline).any()  # nothing but a stretched corner cell of the moved square
    assert extra.sum() < 0.05 * strip.sum()
    # the moved square shows its own pixels, shifted
    inside = warp.source[60, 70]
    assert np.allclose(inside, [70.5 - step, 60.5], atol=0.05)
    # its edges, to be smoothed, are where it now covers the plane (its sources jump by the step) and round the
    # stretched strip it left: by its outline and the holes only
    edges = warp.edges()
    assert edges[42:86, 40 + step + 47 : 40 + step + 49].all()  # the right side, over the plane
    assert not (edges & ~outline & ~holes).any()


def test_large_photo_is_sampled_at_its_own_resolution():
    """The output crop follows the face's size in the photo; a large photo is sampled, never the 128-px crop."""
    from portrait.face import crop_face, detect_landmarks
    from portrait.scene import output_size

    big = astronaut_image().resize((1536, 1536), Image.Resampling.LANCZOS)
    face = crop_face(big, detect_landmarks(big), 512)
    assert output_size(face) > 512
    layer = build_head_layer(big, face, head_and_neck_depth(face, 64))
    assert layer.crop.shape[0] == output_size(face)
    assert layer.source.shape[0] >= 768  # the photo, at most box-reduced, not the model's crop


# --- through the studio, with the model painting the holes (a tiny model) -----------------------------------


@pytest.fixture(scope="module")
def studio_photo(pixel_pipe):
    from portrait.studio import Studio

    studio = Studio(pixel_pipe)
    return studio, studio.prepare(astronaut_image())


def test_model_paints_the_holes_inside_the_head_only(studio_photo):
    """Known pixels never pass the model; holes inside the head (depth known) are the model's painting, holes
    behind it (background) are continued from the backdrop alone, so a view with background holes alone never
    calls the model."""
    from dataclasses import replace

    from portrait.compositing import continue_from, prefill, soften
    from portrait.studio import dilate

    studio, photo = studio_photo
    view = render(studio.head_layer(photo), FaceControls(yaw=20, roll=15))  # a roll uncovers background
    inside, behind = view.holes & np.isfinite(view.fill_depth), view.holes & ~np.isfinite(view.fill_depth)
    assert inside.any() and behind.any()
    painted = studio.fill_holes(photo, view, steps=2, guidance=1.0, seed=0, callback=None)
    known = ~view.holes & ~view.edges  # the head's edges are smoothed, each pixel from its 3 x 3 neighbourhood
    assert view.edges.any() and np.array_equal(painted[known], view.image[known])
    start = prefill(continue_from(view.image, behind, view.backdrop), inside, radius_px=view.holes.shape[0] / 128)
    assert not np.array_equal(painted[inside], start[inside])
    far = behind & ~dilate(inside, 4) & ~view.edges  # away from the feathered seam of the painted holes
    assert far.any() and np.array_equal(painted[far], start[far])
    background_only = replace(view, holes=behind, mouth=view.mouth & behind)
    studio.pipe, pipe = None, studio.pipe  # no model to call
    try:
        alone = studio.fill_holes(photo, background_only, steps=2, guidance=1.0, seed=0, callback=None)
    finally:
        studio.pipe = pipe
    continued = soften(continue_from(view.image, behind, view.backdrop), view.edges)
    assert np.array_equal(alone[behind], continued[behind])


def test_a_roll_leaves_no_ghost_outline_and_fills_behind_the_head_from_the_background(layer):
    """Where the head moves away, the photo's pixels just outside its old outline (hair wisps the layer's mask
    missed) become holes too; the backdrop a fill continues holds neither the head before or after nor that
    margin, and the fill behind the head takes no colour from the head."""
    from scipy import ndimage

    from portrait.compositing import continue_from
    from portrait.scene import OUTLINE_MARGIN

    view = render(layer, FaceControls(roll=20))  # a turn keeps the outline; a roll turns it
    margin = round(layer.size * OUTLINE_MARGIN)
    left = view.holes & layer.covered & ~np.isfinite(view.depth)  # where the head was and is no more
    outline = ndimage.binary_dilation(layer.covered, iterations=margin) & ~layer.covered
    ghost = outline & ndimage.binary_dilation(left, iterations=margin) & ~np.isfinite(view.depth)
    assert ghost.sum() > 50 and view.holes[ghost].all() and view.changed[ghost].all()
    assert not view.backdrop[layer.covered | np.isfinite(view.depth) | outline].any()
    assert view.backdrop.mean() > 0.3
    painted = view.image.copy()
    painted[~view.backdrop] = (255, 0, 255)  # anything not backdrop: a colour the fill must not pick up
    behind = view.holes & ~np.isfinite(view.fill_depth)
    filled = continue_from(painted, behind, view.backdrop)[behind].astype(int)
    assert behind.any() and not ((filled[:, 0] > 200) & (filled[:, 1] < 60) & (filled[:, 2] > 200)).any()


def test_edit_changes_the_photo_only_around_the_head(studio_photo):
    studio, photo = studio_photo
    result = studio.edit(photo, FaceControls(yaw=20, roll=15), steps=2)
    holes, painted = (np.asarray(result.extras[name]) > 0 for name in ("holes", "painted"))
    assert painted.any() and not painted[~holes].any() and painted.sum() < holes.sum()  # the background is not the model's
    changed = np.any(np.asarray(result.composite) != np.asarray(photo.image), axis=-1)
    layer = studio.head_layer(photo)
    ys, xs = np.nonzero(layer.covered | np.isfinite(result.depth))
    corners = photo.face.to_photo(np.stack([xs, ys], 1) + 0.5, size=layer.size)  # the head, before and after
    x0, y0 = corners.min(axis=0) - 6
    x1, y1 = corners.max(axis=0) + 6
    yy, xx = np.nonzero(changed)
    assert changed.any()
    assert ((xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)).all()
    assert np.array_equal(np.asarray(studio.edit(photo, FaceControls()).composite), np.asarray(photo.image))
