"""The photo lifted into 3-D for edits and animation (numpy, scipy, open3d; no torch).

A :class:`HeadLayer` is built once per photo from its depth (:func:`build_head_layer`); :func:`render`
moves it by pose and expression controls, ray-casts it and samples the full-resolution photo, and says which
pixels no photo pixel can show (the holes, for the joint model to paint)::

    layer = build_head_layer(photo, aligned_face, head_depth)
    view = render(layer, FaceControls(yaw=20, smile=0.5))
    view.image, view.holes, view.depth, view.changed      # [S, S, 3] uint8, [S, S] bool, [S, S] z, [S, S] bool
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..face import FaceControls
from .layer import DEFAULT_RELIEF, HeadLayer, build_head_layer, output_size
from .motion import move
from .warp import Warp, cast, sample


@dataclass
class View:
    """The layer moved and rendered at the output crop ``S``.

    Attributes:
        image: ``[S, S, 3]`` uint8: the photo's own pixels moved; the photo's crop where nothing moved; holes
            hold the unmoved crop until painted.
        holes: ``[S, S]`` bool, what the photo cannot show.
        depth: ``[S, S]`` float32 camera z of the moved head (NaN elsewhere).
        changed: ``[S, S]`` bool, the pixels the edit may change (the head before and after, with the holes).
    """

    image: np.ndarray
    holes: np.ndarray
    depth: np.ndarray
    changed: np.ndarray


def render(layer: HeadLayer, controls: FaceControls) -> View:
    """The layer moved by ``controls`` and seen by the crop's camera. Zero controls give the crop back exactly."""
    if controls.clipped().is_identity():
        return View(image=layer.crop.copy(), holes=np.zeros_like(layer.covered), depth=layer.depth.copy(),
                    changed=np.zeros_like(layer.covered))
    warp = cast(layer.mesh, move(layer, controls), layer.size, layer.camera)
    holes = warp.holes(layer.covered)
    image = layer.crop.copy()
    shown = warp.hit & ~holes
    image[shown] = sample(layer.source, warp.source, layer.crop_to_source)[shown]
    return View(image=image, holes=holes, depth=warp.depth, changed=layer.covered | warp.hit)


def hole_depth(view: View, head_share: float = 0.6) -> np.ndarray:
    """``[S, S]`` depth to paint the holes with: the moved head's depth, continued (from the nearest head pixel)
    into each hole that the head surrounds (an opened mouth, the far side of the nose); holes at the head's
    outline (background uncovered by a turn) stay NaN, i.e. background."""
    from scipy import ndimage

    depth = view.depth.copy()
    head = np.isfinite(depth)
    labels, count = ndimage.label(view.holes)
    if count == 0 or not head.any():
        return depth
    ring = ndimage.binary_dilation(view.holes, iterations=2) & ~view.holes
    share = ndimage.mean(head[ring], labels=ndimage.grey_dilation(labels, size=5)[ring], index=np.arange(1, count + 1))
    inner = np.isin(labels, 1 + np.flatnonzero(np.nan_to_num(share) >= head_share))
    nearest = ndimage.distance_transform_edt(~head, return_distances=False, return_indices=True)
    depth[inner] = depth[tuple(nearest)][inner]
    return depth


__all__ = ["hole_depth", "DEFAULT_RELIEF", "HeadLayer", "View", "Warp", "build_head_layer", "cast", "move", "output_size", "render",
           "sample"]
