"""The photo lifted into 3-D for edits and animation (numpy, scipy, open3d; no torch).

A :class:`HeadLayer` is built once per photo from its depth (:func:`build_head_layer`); :func:`render`
moves it by pose and expression controls, ray-casts it and samples the full-resolution photo, and says which
pixels no photo pixel can show (the holes, for the joint model to paint) and at what depth::

    layer = build_head_layer(photo, aligned_face, head_depth)
    view = render(layer, FaceControls(yaw=20, smile=0.5))
    view.image, view.holes, view.fill_depth, view.changed   # [S, S, 3] uint8, [S, S] bool, [S, S] z, [S, S] bool
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..face import FaceControls
from .layer import MOUTH, OUTLINE_MARGIN, HeadLayer, build_head_layer, output_size
from .motion import DEFAULT_RELIEF, move
from .warp import Warp, cast, sample

MOUTH_DEPTH = 0.3  # an opened mouth's inside lies this many eye distances behind the lips


@dataclass
class View:
    """The layer moved and rendered at the output crop ``S``.

    Attributes:
        image: ``[S, S, 3]`` uint8: the photo's own pixels moved; the photo's crop where nothing moved; holes
            hold the unmoved crop until painted.
        holes: ``[S, S]`` bool, what the photo cannot show.
        mouth: ``[S, S]`` bool, the holes that are the inside of an opened mouth (a part of ``holes``).
        depth: ``[S, S]`` float32 camera z of the moved head (NaN elsewhere).
        fill_depth: ``[S, S]`` float32 the depth to paint the holes with: ``depth``, continued into the holes
            that the head surrounds (from the nearest head pixel; an opened mouth ``MOUTH_DEPTH`` deeper); NaN
            for background, e.g. uncovered behind a turned head.
        changed: ``[S, S]`` bool, the pixels the edit may change (the head before and after, with the holes).
        backdrop: ``[S, S]`` bool, the photo's pixels that are background before and after the move (away from
            the head's outline by ``OUTLINE_MARGIN``): what a fill behind the head continues.
        warp: the ray casting of the moved layer (None unmoved).
    """

    image: np.ndarray
    holes: np.ndarray
    mouth: np.ndarray
    depth: np.ndarray
    fill_depth: np.ndarray
    changed: np.ndarray
    backdrop: np.ndarray
    warp: Warp | None = None

    @cached_property
    def edges(self) -> np.ndarray:
        """``[S, S]`` bool, the pixels beside an edge of the moved head (:meth:`Warp.edges`: its outline, a cheek
        over the hair, a cut opened), to be smoothed once the holes are filled; computed when first asked for."""
        return self.warp.edges() if self.warp is not None else np.zeros_like(self.holes)


def render(layer: HeadLayer, controls: FaceControls) -> View:
    """The layer moved by ``controls`` and seen by the crop's camera. Zero controls give the crop back exactly."""
    import cv2

    outline = layer.outline
    if controls.clipped().is_identity():
        none = np.zeros_like(layer.covered)
        return View(image=layer.crop.copy(), holes=none, mouth=none, depth=layer.depth.copy(),
                    fill_depth=layer.depth.copy(), changed=none, backdrop=~outline)
    warp = cast(layer.mesh, move(layer, controls), layer.size, layer.camera)
    holes = warp.holes(layer.covered)
    left = (holes & ~warp.hit).astype(np.uint8)  # where the head was and is no more (not a crack between pixels)
    reach = np.ones((2 * layer.outline_margin + 3,) * 2, np.uint8)
    ghost = outline & ~layer.covered & ~warp.hit & (cv2.dilate(left, reach) > 0)
    mouth, fill_depth = _hole_depth(warp, holes, MOUTH_DEPTH * layer.face_scale)  # the ghost is background
    holes |= ghost
    image = layer.crop.copy()
    shown = warp.hit & ~holes
    image[shown] = sample(layer.source, warp.source, layer.crop_to_source)[shown]
    return View(image=image, holes=holes, mouth=mouth, depth=warp.depth, fill_depth=fill_depth,
                changed=layer.covered | warp.hit | ghost, backdrop=~(outline | warp.hit), warp=warp)


def _hole_depth(warp: Warp, holes: np.ndarray, mouth_depth: float, head_share: float = 0.6):
    """``(mouth, depth)``: which holes are an opened mouth (they border the mouth part), and the depth to paint
    the holes with (see :class:`View`). A hole is inside the head when the head makes up ``head_share`` of
    the ring around it."""
    from scipy import ndimage

    depth = warp.depth.copy()
    head = np.isfinite(depth)
    labels, count = ndimage.label(holes)
    mouth = np.zeros_like(holes)
    if count == 0 or not head.any():
        return mouth, depth
    ring = ndimage.binary_dilation(holes, iterations=2) & ~holes
    owner = ndimage.grey_dilation(labels, size=5)[ring]  # the hole each ring pixel borders
    index = np.arange(1, count + 1)
    inner = np.nan_to_num(ndimage.mean(head[ring], labels=owner, index=index)) >= head_share
    lips = ndimage.maximum(warp.part[ring] == MOUTH, labels=owner, index=index) > 0
    nearest = ndimage.distance_transform_edt(~head, return_distances=False, return_indices=True)
    inside = np.isin(labels, index[inner])
    depth[inside] = depth[tuple(nearest)][inside]
    mouth = np.isin(labels, index[inner & lips])
    depth[mouth] += mouth_depth
    return mouth, depth


__all__ = ["DEFAULT_RELIEF", "MOUTH_DEPTH", "OUTLINE_MARGIN", "HeadLayer", "View", "Warp", "build_head_layer", "cast", "move",
           "output_size", "render", "sample"]
