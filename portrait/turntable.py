"""A depth map's textured mesh turning in front of the crop's camera: a short looping video that shows the depth
in 3-D (no torch).

The mesh is the project's (:func:`portrait.mesh.depth_to_mesh`, keeping the triangles across depth jumps, so a
turned head shows its texture stretched there rather than holes). It turns about the vertical axis through the
centre of its bounding box by ``DEGREES x sin(2 pi t)`` over one loop and is ray-cast (open3d, once per frame,
the scene built once) by the crop's camera. Each vertex keeps the photo's colour, shaded by how its normal
(:func:`portrait.relight.depth_normals`) turns towards or away from the photo's assumed frontal light.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .mesh import DEFAULT_FOV_DEG, depth_to_mesh
from .relight import GAIN_RANGE, depth_normals, light_direction, shading

SIZE = 256  # frame side in pixels
DEGREES = 30.0  # the turn, either way
FRAMES, FPS = 30, 15  # one loop of 2 s
RAYS_PER_PIXEL = 1.5  # rays cast per depth pixel along a side, at most (the mesh has no finer detail); then resized
BACKGROUND = (255, 255, 255)
PROFILE_DEGREES, PROFILE_GREY = 70.0, 200  # profile(): the turn and the plain colour


def turntable(
    depth: np.ndarray, rgb: np.ndarray, mask: np.ndarray | None = None, *, size: int = SIZE,
    degrees: float = DEGREES, frames: int = FRAMES, fov_deg: float = DEFAULT_FOV_DEG,
) -> Iterator[np.ndarray]:
    """``frames`` frames ``[size, size, 3]`` uint8 of the mesh of ``depth`` ``[H, W]`` (relative, NaN = none)
    coloured by ``rgb`` ``[H, W, 3]``, turning from the front to ``+degrees`` (the side on the viewer's right
    comes forward), back through ``-degrees`` and to the front again: a seamless loop whose first frame is the
    photo's view."""
    angles = [degrees * math.sin(2 * math.pi * k / frames) for k in range(frames)]
    return turned_views(depth, rgb, mask, angles, size=size, fov_deg=fov_deg)


def profile(depth: np.ndarray, mask: np.ndarray | None = None, *, degrees: float = PROFILE_DEGREES,
            size: int = SIZE, fov_deg: float = DEFAULT_FOV_DEG) -> np.ndarray:
    """``[size, size, 3]`` uint8: the mesh of ``depth`` in plain grey, shaded, turned ``degrees`` (the face's left
    side towards the viewer): the view that shows a nose's height, a flat or clipped tip."""
    grey = np.full((*np.shape(depth), 3), PROFILE_GREY, np.uint8)
    return next(iter(turned_views(depth, grey, mask, [degrees], size=size, fov_deg=fov_deg)))


def turned_views(
    depth: np.ndarray, rgb: np.ndarray, mask: np.ndarray | None, angles: list[float], *, size: int = SIZE,
    fov_deg: float = DEFAULT_FOV_DEG,
) -> Iterator[np.ndarray]:
    """One frame ``[size, size, 3]`` uint8 per angle in ``angles`` (degrees about the vertical axis; positive: the
    side on the viewer's right comes forward) of the mesh of ``depth`` coloured by ``rgb``, lit from the camera."""
    import cv2
    import open3d as o3d  # lazy: slow to import

    from .face import PinholeCamera

    mesh = depth_to_mesh(depth, rgb, mask, edge_threshold=None, fov_deg=fov_deg)
    vertices = np.asarray(mesh.vertices, np.float32)
    faces = np.asarray(mesh.faces, np.int64)
    colours = np.asarray(mesh.visual.vertex_colors[:, :3], np.float32) if len(vertices) else np.zeros((0, 3))
    pixel = np.asarray(mesh.vertex_attributes["pixel"], np.int64)  # each vertex's pixel (its centre, floored)
    normals = depth_normals(depth, mask, fov_deg=fov_deg)[pixel[:, 1], pixel[:, 0]]  # [V, 3]
    frontal = light_direction(0.0, 0.0)
    photo_light = shading(normals, frontal)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices), o3d.core.Tensor(faces.astype(np.uint32)))
    rays_side = int(min(size, math.ceil(RAYS_PER_PIXEL * max(np.shape(depth)))))
    directions = PinholeCamera(fov_deg).ray_directions(rays_side).reshape(-1, 3)
    pivot = (vertices.min(axis=0) + vertices.max(axis=0)) / 2 if len(vertices) else np.zeros(3, np.float32)
    for degrees in angles:
        # the mesh turned by `rot` about the pivot = the camera turned by its inverse: the scene stays built
        a = math.radians(degrees)
        rot = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]], np.float32)
        rays = np.concatenate([np.broadcast_to(pivot - pivot @ rot, directions.shape), directions @ rot], axis=1)
        hits = scene.cast_rays(o3d.core.Tensor(np.ascontiguousarray(rays, np.float32)))
        ids = hits["primitive_ids"].numpy()
        hit = ids != scene.INVALID_ID
        uv = hits["primitive_uvs"].numpy()[hit]  # [M, 2]: p = (1 - u - v) v0 + u v1 + v v2
        gain = np.clip(shading(normals, rot.T @ frontal) / photo_light, *GAIN_RANGE)  # the turned normals, lit
        corner = (colours * gain[:, None])[faces[ids[hit].astype(np.int64)]]  # [M, 3, 3]
        frame = np.empty((rays_side * rays_side, 3), np.float32)
        frame[:] = BACKGROUND
        frame[hit] = (1 - uv.sum(1, keepdims=True)) * corner[:, 0] + uv[:, :1] * corner[:, 1] + uv[:, 1:] * corner[:, 2]
        frame = frame.reshape(rays_side, rays_side, 3)
        if rays_side != size:
            frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_LINEAR)
        yield np.clip(np.round(frame), 0, 255).astype(np.uint8)


def write_turntable(path: str | Path, depth: np.ndarray, rgb: np.ndarray, mask: np.ndarray | None = None,
                    **kwargs) -> Path:
    """:func:`turntable` (which takes the ``kwargs``) written as an H.264 MP4 at ``FPS`` that loops seamlessly."""
    from .video import VideoWriter

    path = Path(path)
    with VideoWriter(path, FPS) as video:
        for frame in turntable(depth, rgb, mask, **kwargs):
            video.write(frame)
    return path
