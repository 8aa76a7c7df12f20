"""Normals from a depth map, and a photo re-shaded by them under a new light (numpy only, no torch).

Normals are unit vectors in the crop camera's frame (:mod:`portrait.mesh`: x right, y down, z away from the
camera), from the depth placed in 3-D as the mesh builder places it, so a surface facing the camera has
``n = (0, 0, -1)``. ``normals.png`` stores them in the exports' axes (x right, y up, z towards the viewer) as
RGB = (n + 1) / 2, the usual encoding: a surface facing the camera is (128, 128, 255).

A light is the direction from the surface towards it, by ``azimuth`` (degrees, + = from the viewer's right, - =
from the left) and ``elevation`` (degrees, + = from above); (0, 0) is a light at the camera. The shading is
Lambert plus ambient, ``ambient + (1 - ambient) max(0, n . l)``. Relighting assumes the photo was lit from the
front: each pixel is multiplied (in linear light) by the new shading over the frontal one, clipped to
``GAIN_RANGE``, blended in by ``strength``.
"""

from __future__ import annotations

import math

import numpy as np

from .mesh import DEFAULT_DEPTH_RANGE, DEFAULT_FOV_DEG, depth_to_points

AMBIENT = 0.3  # the share of the light that reaches every surface, whichever way it faces
GAIN_RANGE = (0.25, 2.0)  # new / estimated shading is clipped to this: no black hole, no burnt-out cheek
GAMMA = 2.2  # photos' pixel values are about linear light to this power
_TO_EXPORT_AXES = np.array([1.0, -1.0, -1.0], np.float32)  # camera frame -> x right, y up, z towards the viewer


def depth_normals(
    depth: np.ndarray, mask: np.ndarray | None = None, *, fov_deg: float = DEFAULT_FOV_DEG,
    depth_range: float | None = DEFAULT_DEPTH_RANGE,
) -> np.ndarray:
    """``[H, W, 3]`` float32 unit normals of a depth map (NaN = no depth) in the camera frame, facing the
    camera; zero where there is no depth. The depth goes to 3-D as :func:`portrait.mesh.depth_to_mesh` puts it
    (``fov_deg``, ``depth_range``: relative depth placed ``depth_range`` deep; None = the values are camera z);
    derivatives are central differences, one-sided at the edge of the depth."""
    points = depth_to_points(depth, mask, fov_deg=fov_deg, depth_range=depth_range)
    normals = np.cross(_derivative(points, 0), _derivative(points, 1))  # d/dy x d/dx: towards the camera
    length = np.linalg.norm(normals, axis=-1, keepdims=True)
    good = np.isfinite(length) & (length > 0)
    return np.where(good, normals / np.where(good, length, 1.0), 0.0).astype(np.float32)


def _derivative(points: np.ndarray, axis: int) -> np.ndarray:
    """Central difference of ``[H, W, 3]`` points along an image axis (one-sided where a neighbour is NaN)."""
    pad = [(0, 0)] * 3
    pad[axis] = (1, 1)
    p = np.pad(points, pad, constant_values=np.nan)
    n = points.shape[axis]
    ahead = np.take(p, np.arange(2, n + 2), axis=axis) - points
    behind = points - np.take(p, np.arange(0, n), axis=axis)
    both = np.isfinite(ahead) & np.isfinite(behind)
    return np.where(both, 0.5 * (ahead + behind), np.where(np.isfinite(ahead), ahead, behind))


def normals_to_rgb(normals: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` uint8: camera-frame normals in the exports' axes as RGB = (n + 1) / 2; black where zero."""
    rgb = np.round((normals * _TO_EXPORT_AXES + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    rgb[~np.any(normals != 0, axis=-1)] = 0
    return rgb


def light_direction(azimuth: float, elevation: float) -> np.ndarray:
    """``[3]`` unit direction towards a light at ``azimuth`` / ``elevation`` degrees, in the camera frame."""
    az, el = math.radians(azimuth), math.radians(elevation)
    return np.array([math.sin(az) * math.cos(el), -math.sin(el), -math.cos(az) * math.cos(el)], np.float32)


def shading(normals: np.ndarray, light: np.ndarray, ambient: float = AMBIENT) -> np.ndarray:
    """``[H, W]`` Lambert plus ambient shading of unit ``normals`` under a ``light`` direction (``ambient``
    where a pixel has no normal)."""
    return ambient + (1.0 - ambient) * np.clip(normals @ np.asarray(light, np.float32), 0.0, None)


def relight(
    image: np.ndarray, normals: np.ndarray, weight: np.ndarray, azimuth: float, elevation: float, strength: float,
) -> np.ndarray:
    """``image`` ``[H, W, 3]`` uint8 re-shaded by a light at ``azimuth`` / ``elevation``: multiplied in linear
    light by the shading under it over the shading under a frontal light (clipped to ``GAIN_RANGE``), blended
    in by ``strength`` (0 = the image) x ``weight`` ``[H, W]`` in [0, 1] (e.g. the head mask, feathered).
    Where the gain is 1 the pixel comes back unchanged."""
    ratio = shading(normals, light_direction(azimuth, elevation)) / shading(normals, light_direction(0.0, 0.0))
    gain = 1.0 + float(strength) * np.asarray(weight, np.float32) * (np.clip(ratio, *GAIN_RANGE) - 1.0)
    image = np.asarray(image, dtype=np.uint8)
    linear = (image.astype(np.float32) / 255.0) ** GAMMA * gain[..., None]
    out = np.round(np.clip(linear, 0.0, 1.0) ** (1.0 / GAMMA) * 255.0).astype(np.uint8)
    return np.where((gain == 1.0)[..., None], image, out)
