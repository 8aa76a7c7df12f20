"""Depth, mask and normals of a face mesh seen by the crop's camera (open3d ray casting, CPU, no GL).

The rendered depth follows the project's convention (:mod:`portrait.depth`): ``depth[y, x]`` is the camera
z (in units, see :mod:`portrait.face.mesh`) of the surface seen through the pixel centre; larger =
farther; NaN where no triangle is hit. Rendering the undeformed mesh of an aligned crop at any
resolution lines it up with the crop image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mesh import FaceMesh, PinholeCamera, _wh


@dataclass
class RenderResult:
    """A rendered face.

    Attributes:
        depth: ``[H, W]`` float32 camera z in units, larger = farther, NaN off the mesh.
        mask: ``[H, W]`` bool, True where the mesh is hit.
        normals: ``[H, W, 3]`` float32 unit normals in the camera frame (smooth, facing the camera),
            zero off the mesh.
    """

    depth: np.ndarray
    mask: np.ndarray
    normals: np.ndarray


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``[N, 3]`` area-weighted vertex normals (unit; zero for unused vertices)."""
    tri = vertices[faces]  # [F, 3, 3]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 x area
    normals = np.zeros_like(vertices, dtype=np.float64)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_n)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.where(length > 0, length, 1.0)


def render_depth(
    mesh: FaceMesh,
    size: int | tuple[int, int],
    camera: PinholeCamera | None = None,
) -> RenderResult:
    """Ray-cast ``mesh`` into a ``size`` image (int = square, or ``(width, height)``).

    ``camera`` defaults to the mesh's own (the crop's) camera.
    """
    import open3d as o3d  # lazy: slow to import

    # 1. Scene with the mesh's triangles
    camera = camera or mesh.camera
    width, height = _wh(size)
    vertices = np.asarray(mesh.vertices, dtype=np.float32)
    faces = np.asarray(mesh.faces, dtype=np.uint32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices), o3d.core.Tensor(faces))

    # 2. One ray per pixel centre, directions with z = 1 so the hit distance is the depth
    directions = camera.ray_directions((width, height))  # [H, W, 3]
    rays = np.concatenate([np.zeros_like(directions), directions], axis=-1)  # [H, W, 6]
    hits = scene.cast_rays(o3d.core.Tensor(rays))
    t_hit = hits["t_hit"].numpy()  # [H, W]
    mask = np.isfinite(t_hit)
    depth = np.where(mask, t_hit, np.nan).astype(np.float32)

    # 3. Smooth normals: barycentric blend of vertex normals, turned towards the camera
    normals = np.zeros((height, width, 3), dtype=np.float32)
    if mask.any():
        ids = hits["primitive_ids"].numpy()[mask].astype(np.int64)  # [M]
        uv = hits["primitive_uvs"].numpy()[mask]  # [M, 2]
        vn = vertex_normals(vertices.astype(np.float64), faces.astype(np.int64))
        corner = vn[faces[ids].astype(np.int64)]  # [M, 3, 3]
        n = (1.0 - uv[:, :1] - uv[:, 1:]) * corner[:, 0] + uv[:, :1] * corner[:, 1] + uv[:, 1:] * corner[:, 2]
        ray = directions[mask]
        n *= np.where((n * ray).sum(axis=1, keepdims=True) > 0, -1.0, 1.0)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        normals[mask] = n
    return RenderResult(depth=depth, mask=mask, normals=normals)


def shade(
    result: RenderResult,
    *,
    light: tuple[float, float, float] = (-0.4, -0.5, -1.0),
    color: tuple[int, int, int] = (222, 196, 178),
    background: tuple[int, int, int] = (255, 255, 255),
    ambient: float = 0.25,
) -> np.ndarray:
    """A shaded preview ``[H, W, 3]`` uint8 of a render: ambient + Lambert + a little specular.

    ``light`` is the direction from the surface towards the light in the camera frame (default: upper
    left, in front of the face); pixels off the mesh get ``background``.
    """
    light_dir = np.asarray(light, dtype=np.float32)
    light_dir /= np.linalg.norm(light_dir)
    n = result.normals
    diffuse = np.clip((n * light_dir).sum(-1), 0.0, 1.0)  # [H, W]
    half = light_dir + np.array([0.0, 0.0, -1.0], dtype=np.float32)  # towards the light + towards the camera
    half /= np.linalg.norm(half)
    specular = np.clip((n * half).sum(-1), 0.0, 1.0) ** 24
    base = np.asarray(color, dtype=np.float32) / 255.0
    rgb = (ambient + (1.0 - ambient) * diffuse)[..., None] * base + 0.2 * specular[..., None]
    out = np.empty(result.mask.shape + (3,), dtype=np.uint8)
    out[...] = np.asarray(background, dtype=np.uint8)
    out[result.mask] = np.clip(np.round(rgb[result.mask] * 255.0), 0, 255).astype(np.uint8)
    return out
