"""Face mesh topology and camera, pose / expression controls, and depth rendering."""

import os
from collections import Counter

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from portrait.face import (  # noqa: E402
    CONTROL_SPECS,
    EXPRESSIONS,
    FaceControls,
    apply_controls,
    expression_weights,
    face_mask,
    face_triangles,
    region,
    render_depth,
    shade,
)
from portrait.face.controls import FaceFrame  # noqa: E402
from portrait.face.mesh import REGIONS  # noqa: E402

from .face_fixtures import CROP_SIZE, astronaut_crop, astronaut_mesh  # noqa: E402

# --- topology and regions ---------------------------------------------------------------------------------


def test_triangles_form_a_consistently_wound_surface():
    tri = face_triangles()
    assert tri.shape == (898, 3) and tri.dtype == np.int32
    assert tri.min() >= 0 and tri.max() < 468
    assert len({tuple(sorted(t)) for t in tri.tolist()}) == len(tri)  # no duplicates
    directed = Counter((int(a), int(b)) for t in tri for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])))
    assert max(directed.values()) == 1  # consistent winding: each directed edge used once
    undirected = Counter(tuple(sorted(e)) for e in directed)
    assert max(undirected.values()) <= 2  # manifold
    boundary = [e for e, n in undirected.items() if n == 1]
    assert len(boundary) == 36  # only the face oval is open: eyes and mouth are closed


def test_region_table_matches_mediapipe_connection_sets():
    from mediapipe.python.solutions import face_mesh_connections as fmc

    def chains(connections):
        following = {}
        for a, b in connections:
            following.setdefault(a, []).append(b)
        return {tuple(c) for c in _walk(following)}

    def _walk(following):
        ends = {b for nexts in following.values() for b in nexts}
        for start in [a for a in following if a not in ends or len(following[a]) == 2]:
            for n in following[start]:
                chain = [start, n]
                while len(following.get(chain[-1], [])) == 1 and chain[-1] != start:
                    chain.append(following[chain[-1]][0])
                yield chain

    assert chains(fmc.FACEMESH_RIGHT_EYE) == {REGIONS["right_eye_upper"], REGIONS["right_eye_lower"]}
    assert chains(fmc.FACEMESH_LEFT_EYE) == {REGIONS["left_eye_upper"], REGIONS["left_eye_lower"]}
    assert chains(fmc.FACEMESH_LIPS) == {
        REGIONS[n] for n in ("upper_lip_outer", "lower_lip_outer", "upper_lip_inner", "lower_lip_inner")
    }
    assert set(REGIONS["right_eyebrow"]) == {i for e in fmc.FACEMESH_RIGHT_EYEBROW for i in e}
    assert set(REGIONS["left_eyebrow"]) == {i for e in fmc.FACEMESH_LEFT_EYEBROW for i in e}
    oval = REGIONS["face_oval"]
    assert set(zip(oval, oval[1:] + oval[:1])) == set(fmc.FACEMESH_FACE_OVAL)
    assert set(REGIONS["nose"]) == {i for e in fmc.FACEMESH_NOSE for i in e}
    assert set(REGIONS["jaw_line"]) <= set(oval)
    with pytest.raises(KeyError, match="unknown face region"):
        region("forehead_tattoo")


# --- the mesh and its camera ------------------------------------------------------------------------------


def test_mesh_projects_onto_the_detected_landmarks():
    aligned = astronaut_crop(CROP_SIZE)
    face_mesh = astronaut_mesh(CROP_SIZE)
    assert face_mesh.vertices.shape == (478, 3)
    assert np.allclose(face_mesh.project(aligned.size), aligned.landmarks[:, :2], atol=1e-6)
    # at another resolution the projection scales with it
    assert np.allclose(face_mesh.project(64), aligned.landmarks[:, :2] * 64 / aligned.size, atol=1e-6)
    # camera: +z forward, depth near the reference distance, the nose nearer than the head's sides
    z = face_mesh.vertices[:, 2]
    assert np.all(z > 0) and abs(np.median(z) - face_mesh.camera.distance) < 0.2
    assert z[1] < z[list(REGIONS["head_sides"])].min()
    # triangles face the camera (counter-clockwise on screen, y down => negative signed area)
    uv = face_mesh.project(aligned.size)[face_triangles()]
    area = (uv[:, 1, 0] - uv[:, 0, 0]) * (uv[:, 2, 1] - uv[:, 0, 1]) - (uv[:, 2, 0] - uv[:, 0, 0]) * (
        uv[:, 1, 1] - uv[:, 0, 1]
    )
    assert (area < 0).mean() > 0.95
    assert face_mesh.colors.shape == (478, 3) and face_mesh.colors.dtype == np.uint8


def test_render_lines_up_with_the_crop():
    aligned = astronaut_crop(CROP_SIZE)
    face_mesh = astronaut_mesh(CROP_SIZE)
    size = aligned.size
    result = render_depth(face_mesh, size)
    assert result.depth.shape == (size, size) and result.depth.dtype == np.float32
    assert np.isnan(result.depth[~result.mask]).all() and np.isfinite(result.depth[result.mask]).all()
    # the depth at a landmark's pixel is the landmark's depth (front-facing points: nose, cheeks, forehead)
    for index in (1, 4, 151, 50, 280):
        u, v = aligned.landmarks[index, :2].astype(int)
        assert result.mask[v, u]
        assert abs(result.depth[v, u] - face_mesh.vertices[index, 2]) < 0.01
    # larger = farther: the nose tip is the nearest region
    nose_u, nose_v = aligned.landmarks[1, :2].astype(int)
    assert result.depth[nose_v, nose_u] < np.nanpercentile(result.depth, 5)
    # normals: unit length, towards the camera
    n = result.normals[result.mask]
    assert np.allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-4) and (n[:, 2] < 0).mean() > 0.99
    assert not result.normals[~result.mask].any()


def test_render_resolutions_and_face_mask_agree():
    face_mesh = astronaut_mesh(CROP_SIZE)
    small, large = render_depth(face_mesh, 64), render_depth(face_mesh, 256)
    down = large.mask.reshape(64, 4, 64, 4).mean(axis=(1, 3)) >= 0.5
    assert (down & small.mask).sum() / (down | small.mask).sum() > 0.95
    mask = face_mask(face_mesh, 256)
    assert mask.dtype == bool and (mask & large.mask).sum() / (mask | large.mask).sum() > 0.95
    wide = render_depth(face_mesh, (96, 64))
    assert wide.depth.shape == (64, 96)


def test_shade_preview():
    face_mesh = astronaut_mesh(CROP_SIZE)
    result = render_depth(face_mesh, 64)
    image = shade(result)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert (image[~result.mask] == 255).all()
    assert image[result.mask].std() > 5  # lit, not flat


# --- controls ---------------------------------------------------------------------------------------------


def test_control_specs_are_complete_and_sane():
    names = [s.name for s in CONTROL_SPECS]
    assert names == list(FaceControls().to_dict())
    for s in CONTROL_SPECS:
        assert s.minimum <= s.default <= s.maximum and s.label
    assert {"yaw", "pitch", "roll", "smile", "jaw_open", "brow_raise", "eye_close"} <= set(names)
    assert FaceControls.spec("yaw").unit == "deg"
    assert FaceControls(yaw=99, eye_close=-1).clipped() == FaceControls(yaw=45, eye_close=0)
    with pytest.raises(ValueError, match="unknown face control"):
        FaceControls.from_dict({"wink": 1})


def test_zero_controls_are_the_identity():
    face_mesh = astronaut_mesh(CROP_SIZE)
    same = apply_controls(face_mesh, FaceControls())
    assert same is not face_mesh and np.array_equal(same.vertices, face_mesh.vertices)
    assert np.array_equal(same.faces, face_mesh.faces)
    # every zero-valued control also leaves the mesh exactly unchanged inside a non-zero set
    only_smile = apply_controls(face_mesh, FaceControls(smile=0.5))
    also_zero = apply_controls(face_mesh, FaceControls.from_dict({"smile": 0.5, "yaw": 0.0, "jaw_open": 0.0}))
    assert np.array_equal(only_smile.vertices, also_zero.vertices)


# Regions that each expression must leave exactly where they are.
UNTOUCHED = {
    "smile": ("right_eye_upper", "left_eye_upper", "right_eyebrow", "left_eyebrow", "face_oval"),
    "jaw_open": ("upper_lip_outer", "upper_lip_inner", "nose", "right_eye_upper", "left_eyebrow"),
    "brow_raise": (
        "right_eye_upper",
        "right_eye_lower",
        "left_eye_lower",
        "upper_lip_outer",
        "lower_lip_outer",
        "nose",
    ),
    "eye_close": (
        "right_eye_lower",
        "left_eye_lower",
        "right_eyebrow",
        "left_eyebrow",
        "upper_lip_outer",
        "nose",
    ),
}
MOVED = {
    "smile": ("mouth_corners",),
    "jaw_open": ("lower_lip_outer", "jaw_line"),
    "brow_raise": ("right_eyebrow", "left_eyebrow"),
    "eye_close": ("right_eye_upper", "left_eye_upper"),
}


@pytest.mark.parametrize("name", sorted(EXPRESSIONS))
def test_each_expression_moves_only_its_region(name):
    face_mesh = astronaut_mesh(CROP_SIZE)
    spec = FaceControls.spec(name)
    moved = apply_controls(face_mesh, FaceControls(**{name: spec.maximum}))
    shift = np.linalg.norm(moved.vertices - face_mesh.vertices, axis=1) / FaceFrame.of(face_mesh).scale
    assert np.all(shift[region(*UNTOUCHED[name])] == 0.0)
    core = region(*MOVED[name])
    core = core[np.linalg.norm(face_mesh.vertices[core] - moved.vertices[core], axis=1) > 0]
    assert len(core) >= 0.5 * len(region(*MOVED[name]))  # (lid and lip corners may stay)
    assert shift[core].max() > 0.05  # moves by a visible fraction of the eye distance
    # nothing moves outside the expression's weighted region
    weights = expression_weights(face_mesh, name)
    assert np.all(shift[weights == 0] == 0.0)


def test_smile_raises_the_mouth_corners_and_frown_lowers_them():
    face_mesh = astronaut_mesh(CROP_SIZE)
    corners = list(REGIONS["mouth_corners"][:2])
    before = face_mesh.project(CROP_SIZE)[corners]
    smiling = apply_controls(face_mesh, FaceControls(smile=1.0)).project(CROP_SIZE)[corners]
    frowning = apply_controls(face_mesh, FaceControls(smile=-1.0)).project(CROP_SIZE)[corners]
    assert np.all(smiling[:, 1] < before[:, 1] - 1.0)  # image y is down: smaller = higher
    assert np.all(frowning[:, 1] > before[:, 1] + 1.0)
    assert smiling[1, 0] - smiling[0, 0] > before[1, 0] - before[0, 0]  # and wider


def test_eye_close_meets_the_lower_lid_and_jaw_open_lowers_the_chin():
    face_mesh = astronaut_mesh(CROP_SIZE)
    closed = apply_controls(face_mesh, FaceControls(eye_close=1.0))
    upper, lower = 159, 145  # the middle of the subject's right upper and lower lid
    assert upper in REGIONS["right_eye_upper"] and lower in REGIONS["right_eye_lower"]
    gap_before = np.linalg.norm(face_mesh.vertices[upper] - face_mesh.vertices[lower])
    gap_after = np.linalg.norm(closed.vertices[upper] - closed.vertices[lower])
    assert gap_after < 0.15 * gap_before

    chin = 152
    opened = apply_controls(face_mesh, FaceControls(jaw_open=1.0)).project(CROP_SIZE)
    assert opened[chin, 1] > face_mesh.project(CROP_SIZE)[chin, 1] + 3.0


def test_pose_turns_the_head_rigidly():
    face_mesh = astronaut_mesh(CROP_SIZE)
    nose = 1
    before = face_mesh.project(CROP_SIZE)[nose]
    turned = apply_controls(face_mesh, FaceControls(yaw=30.0))
    assert turned.project(CROP_SIZE)[nose, 0] > before[0] + 10.0  # to the viewer's right
    assert apply_controls(face_mesh, FaceControls(pitch=20.0)).project(CROP_SIZE)[nose, 1] < before[1] - 5.0
    rolled = apply_controls(face_mesh, FaceControls(roll=20.0)).project(CROP_SIZE)
    right_eye, left_eye = (
        rolled[list(REGIONS["right_eye_upper"])].mean(0),
        rolled[list(REGIONS["left_eye_upper"])].mean(0),
    )
    assert left_eye[1] > right_eye[1] + 5.0  # clockwise on screen
    # rigid: distances between vertices are kept; the head's centre stays put
    d0 = np.linalg.norm(face_mesh.vertices[:50, None] - face_mesh.vertices[None, :50], axis=-1)
    d1 = np.linalg.norm(turned.vertices[:50, None] - turned.vertices[None, :50], axis=-1)
    assert np.allclose(d0, d1, atol=1e-9)
    assert np.allclose(turned.head_centre(), face_mesh.head_centre())
    # the render changes visibly
    a, b = render_depth(face_mesh, 64).mask, render_depth(turned, 64).mask
    assert (a & b).sum() / (a | b).sum() < 0.9
