"""Depth -> mesh (the one mesh builder) and its exports."""

import os
import subprocess
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import trimesh  # noqa: E402
from PIL import Image  # noqa: E402

from portrait.depth import png16_to_depth  # noqa: E402
from portrait.mesh import (  # noqa: E402
    GLB_MAX_FACES,
    benchmark_depth_to_glb,
    camera_distance,
    decimate,
    depth_to_mesh,
    export_glb,
    export_obj,
    export_ply,
    write_depth_outputs,
)


def _dome(size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    return (1.0 - np.sqrt(np.clip(0.3 - xx**2 - yy**2, 0, None))).astype(np.float32)


def _colors(size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_grid_mesh_geometry_colours_and_winding():
    depth, rgb = _dome(), _colors()
    mesh = depth_to_mesh(depth, rgb, edge_threshold=None)
    assert len(mesh.vertices) == 64 * 64 and len(mesh.faces) == 2 * 63 * 63
    # vertex colours are the pixels' colours, in row-major order
    assert np.array_equal(mesh.visual.vertex_colors[:, :3], rgb.reshape(-1, 3))
    # relative depth is placed around the reference distance, with the default near-far extent
    z = mesh.vertices[:, 2]
    assert np.isclose(z.max() - z.min(), 0.35, atol=1e-5) and np.isclose(
        (z.max() + z.min()) / 2, camera_distance(), atol=1e-5
    )
    # normals face the camera (which sits at the origin, looking down +z)
    assert (mesh.face_normals[:, 2] < 0).all()


def test_metric_depth_back_projects_with_the_field_of_view():
    plane = np.full((32, 48), 2.0, np.float32)
    mesh = depth_to_mesh(plane, depth_range=None, fov_deg=60.0)
    assert np.allclose(mesh.vertices[:, 2], 2.0)
    half_width = np.tan(np.radians(30.0)) * 2.0
    assert np.isclose(mesh.vertices[:, 0].max(), half_width * (47.5 / 48 * 2 - 1), atol=1e-5)
    with pytest.raises(ValueError, match="positive camera z"):
        depth_to_mesh(plane - 3.0, depth_range=None)


def test_no_triangle_spans_a_depth_step():
    depth = np.ones((40, 40), np.float32)
    depth[:, 20:] = 2.0  # a step: the right half is farther
    depth += np.linspace(0, 0.01, 40, dtype=np.float32)[:, None]  # a gentle slope that must stay
    threshold = 0.05
    mesh = depth_to_mesh(depth, edge_threshold=threshold)
    z = mesh.vertices[:, 2][mesh.faces]  # [F, 3]
    unit = (z - mesh.vertices[:, 2].min()) / (mesh.vertices[:, 2].max() - mesh.vertices[:, 2].min())
    assert (unit.max(axis=1) - unit.min(axis=1)).max() <= threshold
    # both sides are meshed (all cells except the column of cells across the step)
    assert len(mesh.faces) == 2 * 39 * 39 - 2 * 39
    near = mesh.vertices[:, 2] < mesh.vertices[:, 2].mean()
    assert near.any() and (~near).any()
    # without the threshold the step is bridged by stretched triangles
    assert len(depth_to_mesh(depth, edge_threshold=None).faces) == 2 * 39 * 39


def test_masked_and_unknown_pixels_are_dropped():
    depth = _dome(32)
    depth[:4] = np.nan
    mask = np.ones((32, 32), bool)
    mask[:, :8] = False
    mesh = depth_to_mesh(depth, mask=mask, edge_threshold=None)
    assert len(mesh.vertices) == 28 * 24  # only pixels that triangles use
    assert len(mesh.faces) == 2 * 27 * 23
    empty = depth_to_mesh(np.full((8, 8), np.nan, np.float32))
    assert len(empty.faces) == 0 and len(empty.vertices) == 0
    with pytest.raises(ValueError, match="mask shape"):
        depth_to_mesh(depth, mask=np.ones((4, 4), bool))


def test_max_faces_subsamples_the_grid_and_colours_follow():
    depth, rgb = _dome(512), _colors(512)
    mesh = depth_to_mesh(depth, Image.fromarray(rgb).resize((256, 256)), max_faces=GLB_MAX_FACES)
    assert 0.25 * GLB_MAX_FACES < len(mesh.faces) <= GLB_MAX_FACES
    assert mesh.visual.vertex_colors.shape == (len(mesh.vertices), 4)


def test_glb_ply_obj_round_trips(tmp_path):
    depth, rgb = _dome(48), _colors(48)
    mesh = depth_to_mesh(depth, rgb)
    glb = export_glb(mesh, tmp_path / "m.glb")
    loaded = trimesh.load(glb, force="mesh")
    assert len(loaded.faces) == len(mesh.faces)
    assert loaded.visual.kind == "vertex"
    assert len(mesh.faces) < 2 * 47 * 47  # the dome's steep rim was cut by the edge threshold
    assert np.array_equal(
        np.sort(loaded.visual.vertex_colors.reshape(-1)), np.sort(mesh.visual.vertex_colors.reshape(-1))
    )
    # glTF axes: y up (the image's top row is the highest), centred for the viewer
    top = loaded.vertices[np.argmax(loaded.vertices[:, 1])]
    assert np.allclose(loaded.bounds.mean(axis=0), 0.0, atol=1e-5) and top[1] > 0

    ply = trimesh.load(export_ply(mesh, tmp_path / "m.ply"), process=False)
    assert len(ply.vertices) == len(mesh.vertices) and ply.visual.kind == "vertex"
    assert np.allclose(ply.vertices * [1, -1, -1], mesh.vertices, atol=1e-6)  # same points, glTF axes
    obj = trimesh.load(export_obj(mesh, tmp_path / "m.obj"), process=False)
    assert len(obj.faces) == len(mesh.faces) and obj.visual.kind == "vertex"


def test_export_glb_decimates_large_meshes(tmp_path):
    mesh = depth_to_mesh(_dome(64), _colors(64))
    small = decimate(mesh, 2000)
    assert len(small.faces) <= 2000 and small.visual.kind == "vertex"
    loaded = trimesh.load(export_glb(mesh, tmp_path / "d.glb", max_faces=2000), force="mesh")
    assert len(loaded.faces) <= 2000


def test_open3d_smoothing_and_normals():
    noisy = _dome(32) + np.random.default_rng(0).normal(0, 0.01, (32, 32)).astype(np.float32)
    raw = depth_to_mesh(noisy, edge_threshold=None)
    smooth = depth_to_mesh(noisy, edge_threshold=None, smooth_iterations=10, estimate_normals=True)
    assert smooth.vertices.shape == raw.vertices.shape
    roughness = lambda m: np.abs(np.diff(m.vertices[:, 2].reshape(32, 32), 2, axis=1)).mean()  # noqa: E731
    assert roughness(smooth) < 0.7 * roughness(raw)
    assert np.allclose(np.linalg.norm(smooth.vertex_normals, axis=1), 1.0, atol=1e-4)


def test_write_depth_outputs(tmp_path):
    depth, rgb = _dome(64), _colors(64)
    mask = np.zeros((64, 64), bool)
    mask[8:56, 8:56] = True
    paths = write_depth_outputs(depth, tmp_path / "out", rgb=rgb, mask=mask)
    assert set(paths.as_dict()) == {"depth_npy", "depth_png", "depth_color", "glb", "ply", "obj"}
    assert all(p.is_file() for p in paths.as_dict().values())
    saved = np.load(paths.depth_npy)
    assert (
        saved.dtype == np.float32 and np.isnan(saved[~mask]).all() and np.allclose(saved[mask], depth[mask])
    )
    png = np.asarray(Image.open(paths.depth_png))
    assert png.dtype == np.uint16 and (png[~mask] == 0).all()
    back = png16_to_depth(png)
    assert np.allclose(back[mask], (depth[mask] - depth[mask].min()) / np.ptp(depth[mask]), atol=1e-4)
    assert np.asarray(Image.open(paths.depth_color)).shape == (64, 64, 3)
    assert trimesh.load(paths.glb, force="mesh").visual.kind == "vertex"
    prefixed = write_depth_outputs(depth, tmp_path / "out", prefix="target_")
    assert prefixed.glb.name == "target_mesh.glb"


def test_benchmark_reports_timings():
    result = benchmark_depth_to_glb(size=64, repeats=1)
    assert result["total_s_best"] > 0 and result["faces"] > 0 and result["glb_bytes"] > 0


def test_geometry_modules_never_import_torch_or_load_mediapipe_eagerly():
    code = (
        "import sys, portrait.imageio, portrait.mesh, portrait.face, portrait.face.commands; "
        "print(sorted(m for m in ('torch', 'mediapipe', 'open3d') if m in sys.modules))"
    )
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
