"""Depth map (+ RGB) -> triangle mesh, and the exports: the one mesh builder of the project (no torch).

Camera and units (shared with :mod:`portrait.face`): a pinhole camera at the origin looking down +z,
x right, y down (image axes), principal point at the image centre, square pixels, horizontal field of
view ``fov_deg``. One *unit* is the image width at the reference distance
``camera_distance(fov_deg) = 1 / (2 tan(fov / 2))``, so an image plane at that distance spans
``[-0.5, 0.5]`` in x. A pixel ``(i, j)`` has its centre at ``(i + 0.5, j + 0.5)``.

Depth follows :mod:`portrait.depth`: relative, larger = farther, NaN = unknown. A relative depth map is
placed at the reference distance with a near-to-far extent of ``depth_range`` units (the model's depth
has no absolute scale); with ``depth_range=None`` the values are used as camera z in units (what
:func:`portrait.face.render_depth` returns).

Exports use the glTF / OpenGL axes that viewers expect (x right, y up, z towards the viewer): the camera
frame is turned 180 degrees about x. The GLB is also centred on its bounding box for the web viewer.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from .depth import colorize_depth, depth_to_png16, unit_depth

DEFAULT_FOV_DEG = (
    15.0  # assumed horizontal field of view of a face crop (a portrait lens, face filling ~half)
)
DEFAULT_DEPTH_RANGE = 0.35  # near-to-far extent given to a relative depth map, in units (~ a face's depth)
DEFAULT_EDGE_THRESHOLD = 0.05  # largest depth jump inside a triangle, as a fraction of the depth range
GLB_MAX_FACES = 100_000  # the viewer's GLB stays below this (a few MB, loads quickly in a browser)
PNG_COMPRESSION = 1  # zlib level of written PNGs: several times faster than the default 6, files ~20 % larger

_TO_EXPORT_FRAME = np.diag([1.0, -1.0, -1.0, 1.0])  # camera frame (y down, z forward) -> glTF (y up, z back)


def camera_distance(fov_deg: float = DEFAULT_FOV_DEG) -> float:
    """Distance (in units) at which an image of this horizontal field of view is 1 unit wide."""
    return 0.5 / math.tan(math.radians(fov_deg) / 2.0)


# --- depth -> mesh ----------------------------------------------------------------------------------------


def depth_to_mesh(
    depth: np.ndarray,
    rgb: np.ndarray | Image.Image | None = None,
    mask: np.ndarray | None = None,
    *,
    fov_deg: float = DEFAULT_FOV_DEG,
    edge_threshold: float | None = DEFAULT_EDGE_THRESHOLD,
    depth_range: float | None = DEFAULT_DEPTH_RANGE,
    max_faces: int | None = None,
    parts: np.ndarray | None = None,
    smooth_iterations: int = 0,
    estimate_normals: bool = False,
) -> trimesh.Trimesh:
    """Turn a depth map into a vertex-coloured grid mesh in the camera frame (see the module docstring).

    Every valid pixel becomes a vertex; each 2x2 block of valid pixels gives two triangles, wound
    counter-clockwise as seen from the camera (normals face the camera). Triangles are dropped where a
    vertex is invalid (NaN depth or outside ``mask``) or where they span a depth edge: any two of their
    vertices differ by more than ``edge_threshold`` x the depth range (ZoeDepth's rule on normalised
    depth, so stretched "curtains" between foreground and background disappear).

    Args:
        depth: ``[H, W]`` relative depth, larger = farther, NaN = unknown.
        rgb: optional ``[H, W, 3]`` uint8 array or PIL image for vertex colours (resized if its size differs).
        mask: optional ``[H, W]`` bool, False = drop the pixel.
        fov_deg: horizontal field of view of the camera that saw the depth map.
        edge_threshold: largest depth difference within a triangle as a fraction of the near-far range,
            per grid step (None = keep all). Scaled by the grid step when ``max_faces`` subsamples.
        depth_range: near-to-far extent in units for relative depth; None = use the values as camera z.
        max_faces: subsample the pixel grid (every k-th row and column) so the mesh has at most this
            many triangles; None = full resolution.
        parts: optional ``[H, W]`` non-negative integer labels: the mesh is cut along the parts' borders
            (e.g. the lips, so a mouth can open). A triangle belongs to the highest part among its corners, and
            each part has its own copy of a border vertex, so the parts meet without a gap until moved apart.
            ``vertex_attributes["part"]`` [N] is each vertex's part.
        smooth_iterations: Taubin smoothing iterations (open3d); 0 = none.
        estimate_normals: compute vertex normals with open3d (otherwise trimesh computes them on demand).

    Returns:
        ``trimesh.Trimesh`` with ``vertices`` [N, 3] in units (camera frame), ``faces`` [F, 3] and,
        when ``rgb`` is given, ``visual.vertex_colors`` [N, 4] uint8. Unused pixels are not vertices.
        ``vertex_attributes["pixel"]`` [N, 2] float32 is each vertex's pixel centre ``(x, y)`` in the depth
        map (continuous coordinates), so a moved mesh still knows where its colours came from.
    """
    # 1. Check inputs
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2 or min(depth.shape) < 2:
        raise ValueError(f"depth must be a 2-D array of at least 2x2 pixels, got shape {depth.shape}")
    height, width = depth.shape
    valid = np.isfinite(depth)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != depth.shape:
            raise ValueError(f"mask shape {mask.shape} does not match depth shape {depth.shape}")
        valid &= mask
    if depth_range is None and valid.any() and float(depth[valid].min()) <= 0.0:
        raise ValueError("depth_range=None needs positive camera z; pass a depth_range for relative depth")

    # 2. Normalised depth (0 = near, 1 = far) and camera z
    unit, z = _camera_z(depth, valid, fov_deg, depth_range)  # [H, W]

    # 3. Subsample the grid for a lighter mesh
    stride = 1
    if max_faces is not None:
        # about two triangles per valid pixel; stop at a grid of 2x2
        stride = max(1, math.ceil(math.sqrt(2 * int(valid.sum()) / max(max_faces, 1))))
        while 2 * int(valid[::stride, ::stride].sum()) > max_faces and stride < min(height, width) - 1:
            stride += 1
    rows, cols = np.arange(0, height, stride), np.arange(0, width, stride)
    z, unit, valid = z[np.ix_(rows, cols)], unit[np.ix_(rows, cols)], valid[np.ix_(rows, cols)]
    gh, gw = z.shape

    # 4. Back-project pixel centres: X = (u - cx) / f * Z
    vertices = _back_project(z, rows, cols, (width, height), fov_deg).reshape(-1, 3)

    # 5. Two triangles per grid cell: (a, c, b) and (b, c, d) with a b / c d the cell's corners
    index = np.arange(gh * gw, dtype=np.int64).reshape(gh, gw)
    a, b = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()
    c, d = index[1:, :-1].ravel(), index[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, c, b], axis=1), np.stack([b, c, d], axis=1)])  # [F, 3]

    # 6. Drop triangles on invalid pixels or across depth edges
    flat_valid, flat_unit = valid.ravel(), np.nan_to_num(unit.ravel(), nan=0.0)
    keep = flat_valid[faces].all(axis=1)
    if edge_threshold is not None:
        tri = flat_unit[faces]  # [F, 3]
        jump = tri.max(axis=1) - tri.min(axis=1)
        keep &= jump <= edge_threshold * stride
    faces = faces[keep]

    # 7. One vertex per pixel and part (a triangle belongs to the highest part among its corners, so parts
    #    meet without a gap but move apart freely), only those that triangles use, with their colours
    labels = np.zeros(gh * gw, np.int64) if parts is None else np.asarray(parts, np.int64)[np.ix_(rows, cols)].ravel()
    count = int(labels.max()) + 1
    keys, faces = np.unique(faces * count + labels[faces].max(axis=1, keepdims=True), return_inverse=True)
    faces = faces.reshape(-1, 3)
    used, part = keys // count, keys % count  # each vertex's grid pixel and part
    vertices = vertices[used]
    colors = None
    if rgb is not None:
        colors = _grid_colors(rgb, width, height)[np.ix_(rows, cols)].reshape(-1, 3)[used]
        colors = np.concatenate([colors, np.full((len(colors), 1), 255, np.uint8)], axis=1)

    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, vertex_colors=colors, process=False)
    pixel = np.stack(np.meshgrid(cols + 0.5, rows + 0.5), axis=-1).reshape(-1, 2)[used]
    mesh.vertex_attributes["pixel"] = pixel.astype(np.float32)
    if parts is not None:
        mesh.vertex_attributes["part"] = part.astype(np.int32)
    if smooth_iterations > 0 or estimate_normals:
        mesh = _open3d_postprocess(mesh, smooth_iterations, estimate_normals)
    return mesh


def depth_to_points(
    depth: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    fov_deg: float = DEFAULT_FOV_DEG,
    depth_range: float | None = DEFAULT_DEPTH_RANGE,
) -> np.ndarray:
    """``[H, W, 3]`` float32: each pixel centre's point in the camera frame, as :func:`depth_to_mesh` places its
    vertices (same arguments); NaN where the depth is unknown or outside ``mask``."""
    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth) if mask is None else np.isfinite(depth) & np.asarray(mask, dtype=bool)
    _, z = _camera_z(depth, valid, fov_deg, depth_range)
    height, width = depth.shape
    points = _back_project(z, np.arange(height), np.arange(width), (width, height), fov_deg)
    points[~valid] = np.nan
    return points


def _camera_z(
    depth: np.ndarray, valid: np.ndarray, fov_deg: float, depth_range: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Depth normalised over ``valid`` (0 = near, 1 = far) and camera z: the normalised depth placed at the
    reference distance, ``depth_range`` deep, or with ``depth_range=None`` the depth itself."""
    unit = unit_depth(depth, valid)
    z = camera_distance(fov_deg) + (unit - 0.5) * depth_range if depth_range is not None else depth
    return unit, z


def _back_project(z: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: tuple[int, int], fov_deg: float) -> np.ndarray:
    """``[len(rows), len(cols), 3]`` float32 points of the pixel centres ``rows`` x ``cols`` of an image of ``size``
    ``(width, height)`` at camera z ``z``: X = (u - cx) / f * Z."""
    width, height = size
    focal = width / (2.0 * math.tan(math.radians(fov_deg) / 2.0))
    u = (cols.astype(np.float32) + 0.5 - width / 2.0) / focal  # [gw]
    v = (rows.astype(np.float32) + 0.5 - height / 2.0) / focal  # [gh]
    return np.stack([u[None, :] * z, v[:, None] * z, z], axis=-1).astype(np.float32)


def _grid_colors(rgb, width: int, height: int) -> np.ndarray:
    """RGB image -> ``[height, width, 3]`` uint8 matching the depth grid (resized if needed)."""
    image = rgb if isinstance(rgb, Image.Image) else Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    image = image.convert("RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def _open3d_postprocess(
    mesh: trimesh.Trimesh, smooth_iterations: int, estimate_normals: bool
) -> trimesh.Trimesh:
    """Taubin smoothing and/or vertex normals with open3d, keeping vertex colours."""
    import open3d as o3d  # lazy: slow to import, only needed here

    o3d_mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.asarray(mesh.vertices, dtype=np.float64)),
        o3d.utility.Vector3iVector(np.asarray(mesh.faces, dtype=np.int32)),
    )
    if smooth_iterations > 0:
        o3d_mesh = o3d_mesh.filter_smooth_taubin(number_of_iterations=int(smooth_iterations))
    o3d_mesh.compute_vertex_normals()
    colors = mesh.visual.vertex_colors if mesh.visual.kind == "vertex" else None
    out = trimesh.Trimesh(
        vertices=np.asarray(o3d_mesh.vertices, dtype=np.float32),
        faces=np.asarray(mesh.faces),
        vertex_normals=np.asarray(o3d_mesh.vertex_normals, dtype=np.float32) if estimate_normals else None,
        vertex_colors=colors,
        process=False,
    )
    out.vertex_attributes.update(mesh.vertex_attributes)
    return out


# --- exports ----------------------------------------------------------------------------------------------


def _export_copy(mesh: trimesh.Trimesh, centre: bool = False) -> trimesh.Trimesh:
    """A copy in the glTF axes (y up, z towards the viewer), optionally centred on its bounding box."""
    out = mesh.copy()
    for bookkeeping in ("pixel", "part"):  # the build's, not part of the exchange formats
        out.vertex_attributes.pop(bookkeeping, None)
    out.apply_transform(_TO_EXPORT_FRAME)
    if centre and len(out.vertices):
        out.apply_translation(-out.bounds.mean(axis=0))
    return out


def decimate(mesh: trimesh.Trimesh, max_faces: int) -> trimesh.Trimesh:
    """Reduce any mesh to at most ``max_faces`` triangles (open3d quadric decimation, keeps colours).

    Depth maps do not need this: ``depth_to_mesh(..., max_faces=...)`` subsamples the grid instead, which
    is far faster.
    """
    if len(mesh.faces) <= max_faces:
        return mesh
    import open3d as o3d

    o3d_mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.asarray(mesh.vertices, dtype=np.float64)),
        o3d.utility.Vector3iVector(np.asarray(mesh.faces, dtype=np.int32)),
    )
    has_colors = mesh.visual.kind == "vertex"
    if has_colors:
        o3d_mesh.vertex_colors = o3d.utility.Vector3dVector(mesh.visual.vertex_colors[:, :3] / 255.0)
    o3d_mesh = o3d_mesh.simplify_quadric_decimation(target_number_of_triangles=int(max_faces))
    colors = None
    if has_colors:
        colors = np.round(np.asarray(o3d_mesh.vertex_colors) * 255).clip(0, 255).astype(np.uint8)
    return trimesh.Trimesh(
        vertices=np.asarray(o3d_mesh.vertices, dtype=np.float32),
        faces=np.asarray(o3d_mesh.triangles),
        vertex_colors=colors,
        process=False,
    )


def export_glb(mesh: trimesh.Trimesh, path: str | Path, max_faces: int | None = GLB_MAX_FACES) -> Path:
    """Write a binary glTF for the web viewer: glTF axes, centred, vertex colours and normals.

    Meshes above ``max_faces`` triangles are decimated first (build depth meshes with
    ``depth_to_mesh(..., max_faces=GLB_MAX_FACES)`` to skip that slower step).
    """
    path = _prepare(path)
    if max_faces is not None:
        mesh = decimate(mesh, max_faces)
    out = _export_copy(mesh, centre=True)
    path.write_bytes(out.export(file_type="glb", include_normals=True))
    return path


def export_ply(mesh: trimesh.Trimesh, path: str | Path) -> Path:
    """Write a binary PLY with vertex colours, full resolution, glTF axes (camera at the origin)."""
    path = _prepare(path)
    path.write_bytes(_export_copy(mesh).export(file_type="ply", encoding="binary"))
    return path


def export_obj(mesh: trimesh.Trimesh, path: str | Path) -> Path:
    """Write a Wavefront OBJ (``v x y z r g b`` vertex colours), full resolution, glTF axes.

    Formatted in one vectorised pass (several times faster than trimesh's writer on grid meshes).
    """
    path = _prepare(path)
    out = _export_copy(mesh)
    vertices = np.asarray(out.vertices, dtype=np.float64)
    faces = np.asarray(out.faces, dtype=np.int64) + 1  # OBJ indices start at 1
    if out.visual.kind == "vertex":
        colors = np.asarray(out.visual.vertex_colors[:, :3], dtype=np.float64) / 255.0
        rows, line = np.hstack([vertices, colors]), "v %.6f %.6f %.6f %.4f %.4f %.4f\n"
    else:
        rows, line = vertices, "v %.6f %.6f %.6f\n"
    with open(path, "w") as f:
        f.write("# portrait mesh: x right, y up, z towards the viewer\n")
        f.write((line * len(rows)) % tuple(rows.ravel().tolist()))
        f.write(("f %d %d %d\n" * len(faces)) % tuple(faces.ravel().tolist()))
    return path


def _prepare(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class DepthOutputs:
    """Files written by :func:`write_depth_outputs` (all inside one folder)."""

    depth_npy: Path  # float32 [H, W], NaN where unknown
    depth_png: Path  # uint16 PNG: 1..65535 = near..far, 0 = unknown (portrait.depth.depth_to_png16)
    depth_color: Path  # magma colour map, near = bright
    glb: Path  # decimated mesh for the viewer
    ply: Path  # full-resolution mesh
    obj: Path  # full-resolution mesh

    def as_dict(self) -> dict[str, Path]:
        return dict(self.__dict__)


def write_depth_outputs(
    depth: np.ndarray,
    out_dir: str | Path,
    rgb: np.ndarray | Image.Image | None = None,
    mask: np.ndarray | None = None,
    *,
    prefix: str = "",
    fov_deg: float = DEFAULT_FOV_DEG,
    edge_threshold: float | None = DEFAULT_EDGE_THRESHOLD,
    depth_range: float | None = DEFAULT_DEPTH_RANGE,
    glb_max_faces: int = GLB_MAX_FACES,
    max_faces: int | None = None,
) -> DepthOutputs:
    """Write every depth deliverable into ``out_dir``: ``depth.npy``, ``depth.png`` (16-bit),
    ``depth_color.png``, ``mesh.glb`` (decimated), ``mesh.ply`` and ``mesh.obj`` (full resolution).

    ``prefix`` is prepended to every file name (e.g. ``"target_"``). Pixels outside ``mask`` are NaN
    in the saved depth. ``max_faces`` caps the PLY / OBJ mesh too (None: one vertex per pixel), e.g. for a
    depth map whose geometry is coarser than its pixels. PNGs are written with fast compression.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    depth = np.asarray(depth, dtype=np.float32).copy()
    if mask is not None:
        depth[~np.asarray(mask, dtype=bool)] = np.nan
    paths = DepthOutputs(
        depth_npy=out_dir / f"{prefix}depth.npy",
        depth_png=out_dir / f"{prefix}depth.png",
        depth_color=out_dir / f"{prefix}depth_color.png",
        glb=out_dir / f"{prefix}mesh.glb",
        ply=out_dir / f"{prefix}mesh.ply",
        obj=out_dir / f"{prefix}mesh.obj",
    )
    np.save(paths.depth_npy, depth)
    Image.fromarray(depth_to_png16(depth)).save(paths.depth_png, compress_level=PNG_COMPRESSION)
    Image.fromarray(colorize_depth(depth)).save(paths.depth_color, compress_level=PNG_COMPRESSION)

    options = dict(fov_deg=fov_deg, edge_threshold=edge_threshold, depth_range=depth_range)
    full = depth_to_mesh(depth, rgb, max_faces=max_faces, **options)
    export_ply(full, paths.ply)
    export_obj(full, paths.obj)
    light = (
        full
        if len(full.faces) <= glb_max_faces
        else depth_to_mesh(depth, rgb, max_faces=glb_max_faces, **options)
    )
    export_glb(light, paths.glb, max_faces=None)
    return paths


# --- benchmark --------------------------------------------------------------------------------------------


def benchmark_depth_to_glb(
    size: int = 512, repeats: int = 5, max_faces: int = GLB_MAX_FACES
) -> dict[str, float]:
    """Time depth map -> GLB for the viewer on a synthetic ``size`` x ``size`` head (depth + colours).

    Returns seconds (best and median over ``repeats`` runs) for the mesh build, the GLB export and both,
    plus the triangle count and the GLB size in bytes.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    radius2 = xx**2 + (yy * 0.8) ** 2
    depth = np.where(radius2 < 0.16, 1.0 - np.sqrt(np.clip(0.16 - radius2, 0, None)), np.nan).astype(
        np.float32
    )
    rgb = np.stack([(xx + 0.5) * 255, (yy + 0.5) * 255, np.full_like(xx, 128)], axis=-1).astype(np.uint8)

    build, export, total = [], [], []
    faces, nbytes = 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.glb"
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            mesh = depth_to_mesh(depth, rgb, max_faces=max_faces)
            t1 = time.perf_counter()
            export_glb(mesh, path, max_faces=None)
            t2 = time.perf_counter()
            build.append(t1 - t0)
            export.append(t2 - t1)
            total.append(t2 - t0)
            faces, nbytes = len(mesh.faces), path.stat().st_size
    return {
        "size": float(size),
        "build_s_best": min(build),
        "export_s_best": min(export),
        "total_s_best": min(total),
        "total_s_median": float(np.median(total)),
        "faces": float(faces),
        "glb_bytes": float(nbytes),
    }
