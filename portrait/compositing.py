"""Put generated pixels into the holes of an image without touching anything else (numpy + OpenCV, no torch).

Images are ``[H, W, 3]`` uint8; a hole mask is ``[H, W]`` bool, true where the pixel is unknown and must be
generated. Radii are in pixels of the image given, chosen by the caller, so the same calls serve the
pipeline's working resolution and full-resolution photos. Every function touches only pixels inside the
hole: outside it the known image comes back bit for bit.
"""

from __future__ import annotations

import cv2
import numpy as np


def _nearest_known(hole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel: the distance ``[H, W]`` float32 to the nearest known pixel (0 outside the hole) and that
    pixel's flat index ``[H, W]`` int (itself outside the hole). Without a known pixel the distance is huge."""
    dist, labels = cv2.distanceTransformWithLabels(
        hole.astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    known = ~hole
    index = np.zeros(labels.max() + 1, np.int64)  # label of a known pixel -> its flat index
    index[labels[known]] = np.flatnonzero(known)
    return dist, index[labels]


def _ramp(dist: np.ndarray, radius_px: float) -> np.ndarray:
    return np.clip(dist / max(float(radius_px), 1.0), 0.0, 1.0).astype(np.float32)


def feather(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """Blending weight ``[H, W]`` float32 in [0, 1] of a hole ``mask``: 0 outside the hole, rising linearly with
    the distance to the nearest known pixel to 1 at ``radius_px`` inside it. The feather grows into the hole
    only, so weight 0 = the known pixel stays. ``radius_px`` <= 1 gives a hard edge (1 on the whole hole)."""
    hole = np.asarray(mask, dtype=bool)
    return _ramp(_nearest_known(hole)[0], radius_px)


def match_colours(
    generated: np.ndarray, known: np.ndarray, hole_mask: np.ndarray, ring_px: float, max_gain: float = 2.0
) -> np.ndarray:
    """``generated`` ``[H, W, 3]`` with each hole's colours matched to the known image around it.

    Per connected hole (8-connected) and per channel, the generated pixels inside the hole get the gain and
    offset that take the generated pixels' mean and standard deviation in the ring of known pixels within
    ``ring_px`` of that hole to the known pixels' there; the gain is clamped to [1 / ``max_gain``,
    ``max_gain``]. Returns float32 in [0, 255]; outside the holes it is ``generated`` unchanged.
    """
    hole = np.asarray(hole_mask, dtype=bool)
    out = np.array(generated, dtype=np.float32)  # a copy
    if not hole.any() or hole.all():
        return out
    # every known pixel's distance to the nearest hole and that hole's label (holes carry their own label)
    dist, labels = cv2.distanceTransformWithLabels(
        (~hole).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_CCOMP
    )
    ring = ~hole & (dist <= ring_px)
    n = labels.max() + 1
    slot = (labels[ring][:, None] * 3 + np.arange(3)).ravel()  # [P * 3]: (hole, channel) of each ring value
    count = np.bincount(slot, minlength=3 * n).reshape(n, 3)  # [K, 3]

    def stats(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # per hole and channel: ring mean, std  [K, 3]
        px = img[ring].astype(np.float64).ravel()
        mean, sq = (np.bincount(slot, w, 3 * n).reshape(n, 3) / np.maximum(count, 1) for w in (px, px * px))
        return mean, np.sqrt(np.maximum(sq - mean**2, 0.0))

    (mean_g, std_g), (mean_k, std_k) = stats(out), stats(np.asarray(known))
    gain = np.where(std_g > 1e-3, std_k / np.maximum(std_g, 1e-3), 1.0).clip(1.0 / max_gain, max_gain)
    gain, mean_k = np.where(count > 0, gain, 1.0), np.where(count > 0, mean_k, mean_g)  # no ring: unchanged
    lab = labels[hole]
    out[hole] = np.clip((out[hole] - mean_g[lab]) * gain[lab] + mean_k[lab], 0, 255)
    return out


def composite(
    known_rgb: np.ndarray, generated_rgb: np.ndarray, hole_mask: np.ndarray, feather_px: float, ring_px: float
) -> np.ndarray:
    """The known image with its holes filled from ``generated_rgb`` ``[H, W, 3]``: uint8 ``[H, W, 3]``.

    Inside each hole the generated pixels, colour-matched to the known ring around it (:func:`match_colours`),
    are blended over the colour of the nearest known pixel with the :func:`feather` weight, so the seam fades
    over ``feather_px`` pixels inside the hole. Whatever ``known_rgb`` holds inside the holes is ignored;
    outside them the result is ``known_rgb`` bit for bit.
    """
    known = np.asarray(known_rgb, dtype=np.uint8)
    hole = np.asarray(hole_mask, dtype=bool)
    out = known.copy()
    if not hole.any():
        return out
    matched = match_colours(generated_rgb, known, hole, ring_px)  # [H, W, 3] float32
    dist, nearest = _nearest_known(hole)
    w = _ramp(dist[hole], feather_px)[:, None]  # [P, 1], the feather() weight
    edge = known.reshape(-1, 3)[nearest[hole]].astype(np.float32)  # [P, 3] the nearest known colour
    out[hole] = np.clip(np.rint(w * matched[hole] + (1 - w) * edge), 0, 255).astype(np.uint8)
    return out


def continue_from(rgb: np.ndarray, fill: np.ndarray, known: np.ndarray, work_side: int = 256) -> np.ndarray:
    """``rgb`` ``[H, W, 3]`` uint8 with the pixels of ``fill`` continued from the pixels of ``known`` alone: OpenCV's
    Telea over everything not known, so a pixel left out of ``known`` (a moved head, the ghost of its outline)
    lends no colour, unlike :func:`prefill` of the hole alone, which continues the hole's whole border. Worked at
    ``work_side`` px at most (the unknown part can be most of the picture, and the fill is soft anyway), where a
    pixel counts as known only if all it covers is; the rest of ``rgb`` unchanged."""
    fill = np.asarray(fill, dtype=bool)
    known = np.asarray(known, dtype=bool) & ~fill
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if not fill.any() or not known.any():
        return rgb.copy()
    h, w = fill.shape
    scale = min(1.0, work_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    sure = cv2.resize(known.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.999
    filled = prefill(small, ~sure, radius_px=max(1.0, 3.0 * scale))
    out = rgb.copy()
    out[fill] = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)[fill]
    return out


def prefill(rgb: np.ndarray, hole_mask: np.ndarray, radius_px: float = 3.0) -> np.ndarray:
    """A cheap fill of the holes of ``rgb`` ``[H, W, 3]`` uint8 from their surroundings (``cv2.inpaint``,
    Telea), e.g. a start for diffusion to refine; outside the holes ``rgb`` unchanged."""
    hole = np.asarray(hole_mask, dtype=bool)
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if not hole.any() or hole.all():
        return rgb.copy()
    return cv2.inpaint(rgb, hole.astype(np.uint8), float(radius_px), cv2.INPAINT_TELEA)


def soften(rgb: np.ndarray, mask: np.ndarray, sigma_px: float = 0.8) -> np.ndarray:
    """``rgb`` ``[H, W, 3]`` uint8 with the pixels of ``mask`` ``[H, W]`` bool replaced by a Gaussian blur
    (``sigma_px``, 3 x 3) of their neighbourhood: the anti-aliasing of an edge drawn with one sample per pixel."""
    out = rgb.copy()
    if mask.any():
        out[mask] = cv2.GaussianBlur(rgb, (3, 3), sigma_px)[mask]
    return out
