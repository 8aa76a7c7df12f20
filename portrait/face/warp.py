"""Sampling a square out of a photo through an affine map, without aliasing (PIL and numpy only; the face
package's lowest layer: landmarks, alignment and segmentation all look at photos through it)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image


def warp_to_square(image: Image.Image, m: np.ndarray, size: int, *, mirror: bool = True) -> Image.Image:
    """The ``size`` x ``size`` square seen through the crop -> photo affine ``m`` ([2, 3]).

    Box-reduces the photo region first when it is much larger than the square (no aliasing), pads what
    lies outside the photo (mirrored, or black with ``mirror=False``), then warps with bicubic interpolation.
    """
    width, height = image.size
    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))  # photo pixels per crop pixel
    reduce = box_reduction(scale)

    # 1. The photo region under the crop (+ a margin for the filter), clipped to the photo
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], dtype=np.float64) @ m[:, :2].T + m[:, 2]
    margin = 3 * reduce
    lo = np.floor(corners.min(axis=0)).astype(int) - margin
    hi = np.ceil(corners.max(axis=0)).astype(int) + margin
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], width), min(hi[1], height)
    x1 = x0 + max(reduce, (x1 - x0) // reduce * reduce)  # whole reduction boxes
    y1 = y0 + max(reduce, (y1 - y0) // reduce * reduce)
    region = image.crop((x0, y0, x1, y1))
    if reduce > 1:
        region = region.reduce(reduce)
    pixels = np.asarray(region)

    # 2. Pad (in reduced pixels) to cover the whole crop
    pad_left, pad_top = max(0, math.ceil((x0 - lo[0]) / reduce)), max(0, math.ceil((y0 - lo[1]) / reduce))
    pad_right = max(0, math.ceil((hi[0] - x1) / reduce))
    pad_bottom = max(0, math.ceil((hi[1] - y1) / reduce))
    if pad_left or pad_top or pad_right or pad_bottom:
        pads = ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0))
        pixels = np.pad(pixels, pads, mode="symmetric") if mirror else np.pad(pixels, pads)
    origin = np.array([x0 - pad_left * reduce, y0 - pad_top * reduce], dtype=np.float64)

    # 3. crop -> padded-region pixels: (A u + t - origin) / reduce
    local = np.column_stack([m[:, :2] / reduce, (m[:, 2] - origin) / reduce])
    return Image.fromarray(pixels).transform(
        (size, size), Image.Transform.AFFINE, affine_data(local), Image.Resampling.BICUBIC
    )


def box_reduction(scale: float) -> int:
    """The box-reduction factor of a photo sampled at ``scale`` photo pixels per output pixel: it keeps 1-1.5
    photo pixels per output pixel for bilinear / bicubic sampling, so nothing aliases."""
    return max(1, int(scale // 1.5)) if scale >= 2.0 else 1


def affine_data(m: np.ndarray, offset=(0.0, 0.0)) -> tuple[float, ...]:
    """PIL's AFFINE data (output -> input, continuous coordinates) for ``input = m @ (output + offset)``."""
    a, t = m[:, :2], m[:, 2] + m[:, :2] @ np.asarray(offset, dtype=np.float64)
    return (a[0, 0], a[0, 1], t[0], a[1, 0], a[1, 1], t[1])
