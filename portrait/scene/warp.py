"""Rendering a moved head layer: ray casting, each pixel's source in the photo, and the holes (no torch).

Every output pixel's ray is cast against the moved layer (open3d ``RaycastingScene``: the first hit, so
occlusion is right where the nose and a cheek overlap under a turn). A hit gives the triangle and its
barycentric coordinates, which interpolate the triangle's *source* pixels: the colour is then sampled from
the full-resolution photo there. Holes are what nothing in the photo can show: pixels the unmoved layer
covered that the moved one leaves uncovered (background behind a turned head, the gap of an opened mouth),
and pixels of triangles stretched far beyond their size in the photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..face import PinholeCamera

# A triangle whose projected area grows by more than this shows no photo pixels: a hole for the model. The model
# paints at 128 px, 16 times the area of a pixel of a 512 px output crop: the photo's own pixels stretched up to
# 6 times are sharper, and they are the person's. At 3, the cheek coming into view under a turn of 20-30 degrees
# (the head's outline kept in place, so the side between the face and the outline stretches) became a grey patch.
MAX_STRETCH = 6.0
HOLE_GROW = 1 / 256  # holes are grown by this part of the crop's side (the smeared rim around them)
# Neighbouring output pixels whose sources lie further apart than this (crop pixels) are on an edge of the moved
# layer: an occlusion (a cheek over the hair behind it, the nose over a cheek), a fold, or a side squeezed to less
# than a third, which samples the photo sparser than its pixels. Unmoved, neighbours' sources lie 1 pixel apart.
EDGE_JUMP = 3.0


@dataclass
class Warp:
    """A moved layer seen by the crop's camera at ``S`` x ``S``.

    Attributes:
        hit: ``[S, S]`` bool, where a ray hits the moved layer.
        source: ``[S, S, 2]`` float32 source position (crop pixels at ``S``, continuous) of each hit, NaN elsewhere.
        depth: ``[S, S]`` float32 camera z of each hit, NaN elsewhere.
        stretched: ``[S, S]`` bool, hits on triangles stretched beyond ``MAX_STRETCH``.
        part: ``[S, S]`` int part label of each hit (the mesh's ``vertex_attributes["part"]``, 0 without), -1 elsewhere.
    """

    hit: np.ndarray
    source: np.ndarray
    depth: np.ndarray
    stretched: np.ndarray
    part: np.ndarray

    def holes(self, covered: np.ndarray) -> np.ndarray:
        """``[S, S]`` bool: what the photo cannot show (uncovered pixels of ``covered``, stretched hits), grown a little.

        Misses without a 2 x 2 block of them are not holes: they are where a crack narrower than a pixel (a lip
        that moved a fraction of a pixel from the one above it) falls between pixel centres; the unmoved photo
        shows there."""
        import cv2

        holes = self._gaps(covered) | self.stretched
        grow = max(1, round(holes.shape[0] * HOLE_GROW))
        if holes.any():
            holes = cv2.dilate(holes.astype(np.uint8), np.ones((2 * grow + 1,) * 2, np.uint8)) > 0
            holes &= covered | self.hit
        return holes

    def edges(self) -> np.ndarray:
        """``[S, S]`` bool: the pixels on either side of an edge of the moved layer, where neighbours (4-connected)
        differ: one shows the layer and the other a gap (its outline, a cut opened; a crack is no gap, see
        :meth:`holes`), or their sources lie more than ``EDGE_JUMP`` apart. None by the crop's border. One sample
        per pixel draws these edges as stairs: they are to be smoothed."""
        source = np.nan_to_num(self.source, nan=0.0)
        shown = ~self._gaps()
        edges = np.zeros_like(self.hit)
        for a, b in (((slice(1, None), slice(None)), (slice(None, -1), slice(None))),  # down
                     ((slice(None), slice(1, None)), (slice(None), slice(None, -1)))):  # across
            jump = np.linalg.norm(source[a] - source[b], axis=-1) > EDGE_JUMP
            step = (shown[a] != shown[b]) | (self.hit[a] & self.hit[b] & jump)
            edges[a] |= step
            edges[b] |= step
        # the crop's border is none: the layer runs on past it (a neck), and its last vertices sit on pixel centres
        edges[:3], edges[-3:], edges[:, :3], edges[:, -3:] = False, False, False, False
        return edges

    def _gaps(self, within: np.ndarray | None = None) -> np.ndarray:
        """``[S, S]`` bool: the misses (of ``within``, default everywhere) that make up 2 x 2 blocks, not cracks
        between pixel centres."""
        import cv2

        missed = (~self.hit if within is None else within & ~self.hit).astype(np.uint8)
        return cv2.morphologyEx(missed, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8)) > 0


def cast(mesh, vertices: np.ndarray, size: int, camera: PinholeCamera) -> Warp:
    """Ray-cast ``mesh`` (a layer mesh with ``vertex_attributes["pixel"]``) with its vertices moved to
    ``vertices`` ``[V, 3]`` into a ``size`` x ``size`` image of ``camera``."""
    import open3d as o3d  # lazy: slow to import

    faces = np.asarray(mesh.faces, dtype=np.int64)
    pixel = np.asarray(mesh.vertex_attributes["pixel"], dtype=np.float64)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(vertices, np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))
    directions = camera.ray_directions(size)  # [S, S, 3], z = 1: the hit distance is the depth
    rays = np.concatenate([np.zeros_like(directions), directions], axis=-1)
    hits = scene.cast_rays(o3d.core.Tensor(rays))
    t_hit = hits["t_hit"].numpy()
    hit = np.isfinite(t_hit)

    source = np.full((size, size, 2), np.nan, np.float32)
    stretched = np.zeros((size, size), bool)
    part = np.full((size, size), -1, np.int32)
    if hit.any():
        ids = hits["primitive_ids"].numpy()[hit].astype(np.int64)  # [M]
        uv = hits["primitive_uvs"].numpy()[hit].astype(np.float64)  # [M, 2]: p = (1-u-v) v0 + u v1 + v v2
        corners = pixel[faces[ids]]  # [M, 3, 2]
        source[hit] = (1 - uv.sum(1, keepdims=True)) * corners[:, 0] + uv[:, :1] * corners[:, 1] + uv[:, 1:] * corners[:, 2]
        grown = _area(camera.project(vertices, size)[faces]) / np.maximum(_area(pixel[faces]), 1e-9)  # [F]
        stretched[hit] = grown[ids] > MAX_STRETCH
        labels = mesh.vertex_attributes.get("part")
        part[hit] = labels[faces[ids, 0]] if labels is not None else 0
    depth = np.where(hit, t_hit, np.nan).astype(np.float32)
    return Warp(hit=hit, source=source, depth=depth, stretched=stretched, part=part)


def _area(tri: np.ndarray) -> np.ndarray:
    """``[F]`` unsigned areas of 2-D triangles ``[F, 3, 2]``."""
    a, b = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    return 0.5 * np.abs(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])


def sample(image: np.ndarray, xy: np.ndarray, to_image: np.ndarray) -> np.ndarray:
    """``image`` ``[h, w, 3]`` sampled (bilinear) at crop positions ``xy`` ``[..., 2]`` mapped by the affine
    ``to_image`` ``[2, 3]`` (continuous coordinates); NaN positions give 0."""
    import cv2

    pts = np.nan_to_num(xy.astype(np.float64)) @ to_image[:, :2].T + to_image[:, 2] - 0.5  # pixel-centre indices
    out = cv2.remap(image, pts[..., 0].astype(np.float32), pts[..., 1].astype(np.float32), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REFLECT_101)
    out[~np.isfinite(xy[..., 0])] = 0
    return out
