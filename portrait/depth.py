"""The one depth convention of the project (numpy only, no torch).

Depth maps are float32 arrays ``[H, W]`` of *relative* depth: larger = farther, defined only where the
mask is true and NaN elsewhere. For the diffusion model a depth map is turned into a *depth code* in
[-1, 1]: the face is normalised by its 2 % / 98 % quantiles inside the mask to
[-1, ``FOREGROUND_MAX``] and the background is set to ``BACKGROUND_CODE`` (= 1, the far plane). The gap
between the two lets the model's output say where the face is (``code < MASK_THRESHOLD``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FOREGROUND_MAX = 0.6  # code of the farthest face point (98 % quantile)
BACKGROUND_CODE = 1.0  # code of everything outside the mask
MASK_THRESHOLD = 0.8  # code below this = face
QUANTILES = (0.02, 0.98)


def _as_mask(depth: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    finite = np.isfinite(depth)
    return finite if mask is None else (np.asarray(mask, dtype=bool) & finite)


def depth_span(depth: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """``(near, far)``: the least and greatest depth over ``mask`` (default: every finite pixel); ``(0, 1)`` if
    there is none."""
    valid = _as_mask(np.asarray(depth), mask)
    if not valid.any():
        return 0.0, 1.0
    return float(depth[valid].min()), float(depth[valid].max())


def unit_depth(depth: np.ndarray, mask: np.ndarray | None = None, span: tuple[float, float] | None = None) -> np.ndarray:
    """The one min / max normalisation of the project: ``depth`` with ``span`` (default :func:`depth_span` over
    ``mask``) mapped to [0, 1] (0 = near), float32, every pixel (nothing clipped or masked here)."""
    lo, hi = depth_span(depth, mask) if span is None else span
    return ((np.asarray(depth, dtype=np.float32) - lo) / max(hi - lo, 1e-12)).astype(np.float32)


def depth_to_code(depth: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Relative depth ``[H, W]`` (NaN = unknown) -> depth code ``[H, W]`` in [-1, 1], float32."""
    depth = np.asarray(depth, dtype=np.float32)
    mask = _as_mask(depth, mask)
    code = np.full(depth.shape, BACKGROUND_CODE, dtype=np.float32)
    if not mask.any():
        return code
    lo, hi = np.quantile(depth[mask], QUANTILES)
    unit = np.clip(unit_depth(depth[mask], span=(float(lo), float(hi))), 0.0, 1.0)  # 0 = near, 1 = far
    code[mask] = -1.0 + unit * (FOREGROUND_MAX + 1.0)
    return code


def code_to_depth(code: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Depth code ``[H, W]`` -> (relative depth in [0, 1] with NaN outside the mask, mask).

    Without a given mask the face is where ``code < MASK_THRESHOLD``.
    """
    code = np.asarray(code, dtype=np.float32)
    if mask is None:
        mask = code < MASK_THRESHOLD
    mask = np.asarray(mask, dtype=bool)
    depth = np.clip((code + 1.0) / (FOREGROUND_MAX + 1.0), 0.0, 1.0).astype(np.float32)
    depth[~mask] = np.nan
    return depth, mask


def align_scale_shift(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Least-squares ``scale, shift`` so that ``scale * pred + shift ~= target`` over the mask."""
    m = _as_mask(pred, mask) & np.isfinite(target)
    p, t = pred[m].astype(np.float64), target[m].astype(np.float64)
    if p.size < 2:
        return 1.0, 0.0
    a = np.stack([p, np.ones_like(p)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(a, t, rcond=None)
    return float(scale), float(shift)


@dataclass
class EnsembleResult:
    depth: np.ndarray  # [H, W] median of the aligned members, NaN outside the mask
    uncertainty: np.ndarray  # [H, W] standard deviation of the aligned members, NaN outside the mask
    scales: np.ndarray  # [E] scale applied to each member
    shifts: np.ndarray  # [E] shift applied to each member


def ensemble_depths(members: np.ndarray, mask: np.ndarray | None = None) -> EnsembleResult:
    """Merge ``[E, H, W]`` depth predictions (Marigold's recipe).

    Each member is aligned to the first by least-squares scale and shift inside the mask, the aligned
    members are merged by their median, and their spread (standard deviation) is the uncertainty. The
    result is then renormalised to [0, 1] over the mask so it keeps the relative-depth convention.
    """
    members = np.asarray(members, dtype=np.float32)
    if members.ndim != 3:
        raise ValueError(f"members must be [E, H, W], got shape {members.shape}")
    mask = _as_mask(members[0], mask)
    ref = members[0]
    scales, shifts, aligned = [], [], []
    for member in members:
        s, b = align_scale_shift(member, ref, mask)
        scales.append(s)
        shifts.append(b)
        aligned.append(s * member + b)
    aligned = np.stack(aligned)
    depth = np.median(aligned, axis=0)
    std = aligned.std(axis=0)
    if mask.any():
        lo, hi = depth_span(depth, mask)
        depth = unit_depth(depth, span=(lo, hi))
        std = std / max(hi - lo, 1e-12)
    depth = depth.astype(np.float32)
    std = std.astype(np.float32)
    depth[~mask] = np.nan
    std[~mask] = np.nan
    return EnsembleResult(depth, std, np.asarray(scales, np.float32), np.asarray(shifts, np.float32))


def complete_depth(partial: np.ndarray, estimate: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Fill the gaps of ``partial`` ``[H, W]`` (NaN = unknown) inside ``mask`` from a full ``estimate``.

    The estimate is aligned to ``partial`` by least-squares scale and shift where both are known, so the
    result keeps ``partial`` exactly and continues it with the estimate's shape (e.g. a face-mesh depth
    continued over hair, ears and neck). NaN outside the mask (default: where the estimate is finite).
    """
    partial = np.asarray(partial, dtype=np.float32)
    estimate = np.asarray(estimate, dtype=np.float32)
    mask = np.isfinite(estimate) if mask is None else np.asarray(mask, dtype=bool)
    known = mask & np.isfinite(partial)
    fill = mask & ~known & np.isfinite(estimate)
    scale, shift = align_scale_shift(estimate, partial, known)
    out = np.full(partial.shape, np.nan, dtype=np.float32)
    out[known] = partial[known]
    out[fill] = scale * estimate[fill] + shift
    return out


def blend_depth(estimate: np.ndarray, prior: np.ndarray, weight: float = 0.5, feather: int | None = None) -> np.ndarray:
    """Mix a partial ``prior`` ``[H, W]`` (NaN = unknown) into a full ``estimate`` where both exist.

    The prior is aligned to the estimate by least-squares scale and shift, then averaged in with ``weight``
    (0 = the estimate, 1 = the prior) that ramps up from the prior's edge over ``feather`` pixels (default
    1/32 of the image) so no seam appears. Two estimates with partly independent errors (the face mesh and
    the model's depth) average to a smaller error than either. Renormalised to [0, 1] where the estimate is.
    """
    estimate = np.asarray(estimate, dtype=np.float32)
    prior = np.asarray(prior, dtype=np.float32)
    region = np.isfinite(estimate) & np.isfinite(prior)
    valid = np.isfinite(estimate)
    if weight <= 0 or region.sum() < 2:
        return estimate
    feather = max(1, round(min(estimate.shape) / 32) if feather is None else feather)
    # how deep inside the region each pixel is, in (city-block) pixels up to the feather, by repeated erosion
    inside = np.zeros(estimate.shape, np.float32)
    core = region
    for _ in range(feather):
        inside += core
        p = np.pad(core, 1)
        core = core & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    w = weight * inside / feather
    scale, shift = align_scale_shift(prior, estimate, region)
    out = np.where(region, (1 - w) * estimate + w * (scale * np.nan_to_num(prior) + shift), estimate)
    out = unit_depth(out, valid)
    out[~valid] = np.nan
    return out


def resize_depth(depth: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Depth ``[H, W]`` (NaN = none) area-averaged to ``size`` (int = square, or ``(width, height)``); NaN where
    under half of a pixel's area is known. Units kept."""
    import cv2

    size = (size, size) if np.isscalar(size) else tuple(size)
    depth = np.asarray(depth, dtype=np.float32)
    known = np.isfinite(depth).astype(np.float32)
    total = cv2.resize(np.where(known > 0, depth, 0).astype(np.float32), size, interpolation=cv2.INTER_AREA)
    cover = cv2.resize(known, size, interpolation=cv2.INTER_AREA)
    return np.where(cover >= 0.5, total / np.maximum(cover, 1e-6), np.nan).astype(np.float32)


def fill_nearest(depth: np.ndarray) -> np.ndarray:
    """Depth ``[H, W]`` with every NaN replaced by the value of the nearest known pixel (unchanged if none is known)."""
    from scipy import ndimage

    depth = np.asarray(depth, dtype=np.float32)
    known = np.isfinite(depth)
    if known.all() or not known.any():
        return depth
    nearest = ndimage.distance_transform_edt(~known, return_distances=False, return_indices=True)
    return depth[tuple(nearest)]


def on_mask(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Depth ``[H, W]`` on exactly ``mask``: NaN outside, and where the mask holds pixels the depth does not (e.g.
    hair a cleaned silhouette added), the nearest known depth inside the mask."""
    mask = np.asarray(mask, dtype=bool)
    return np.where(mask, fill_nearest(np.where(mask, depth, np.nan)), np.nan).astype(np.float32)


def upsample_depth(
    depth: np.ndarray, guide: np.ndarray, radius: int | None = None, eps: tuple[float, float] = (1e-2, 1e-4),
    transform: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Depth ``[h, w]`` (NaN = none) -> ``(depth, mask)`` at the guide's ``[H, W]``, edges on the guide's edges.

    The one edge-aware upsampling of the project (a guided filter, He et al., guided by ``guide`` ``[H, W, 3]``
    uint8, e.g. the photo): the depth (its gaps first filled from the nearest known pixel) and the mask are
    resized bilinearly, then filtered with the photo as the guide, so a depth edge or the silhouette that the
    low resolution put a few pixels off moves onto the photo's own edge. ``radius`` defaults to the size of one
    low-resolution pixel (at least 2); ``eps`` (depth, mask) is the filter's regularisation: larger for the depth,
    so the photo's texture (hair, skin) does not print into it. The mask is where the filtered coverage is at
    least 1/2. Units kept.

    ``transform`` ``[2, 3]`` (optional) places the depth anywhere in the guide: ``guide_xy = A @ depth_xy + t`` in
    continuous pixel coordinates (e.g. an aligned crop's ``crop_to_photo``, scaled to the depth's size). The depth
    is then warped (bilinearly) into the guide's grid instead of resized to span it, and only the guide's region
    under the known depth is filtered (a large photo costs little more than a small one); NaN elsewhere.
    """
    import cv2

    depth = np.asarray(depth, dtype=np.float32)
    guide = np.asarray(guide, dtype=np.uint8)
    height, width = guide.shape[:2]
    out, mask = np.full((height, width), np.nan, np.float32), np.zeros((height, width), bool)
    known = np.isfinite(depth)
    if not known.any():
        return out, mask
    filled = fill_nearest(depth)
    lo, hi = depth_span(filled)
    unit = unit_depth(filled, span=(lo, hi))
    if transform is None:
        radius = radius or max(2, round(width / depth.shape[1]))
        up = [cv2.resize(a.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR) for a in (unit, known)]
        x0, y0, x1, y1 = 0, 0, width, height
    else:
        m = np.asarray(transform, dtype=np.float64)
        step = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))  # guide pixels per depth pixel
        radius = radius or max(2, round(step))
        # the guide's region under the known depth, grown by a depth pixel and the filter's radius
        rows, cols = np.flatnonzero(known.any(axis=1)), np.flatnonzero(known.any(axis=0))
        box = np.array([[cols[0], rows[0]], [cols[-1] + 1, rows[0]], [cols[0], rows[-1] + 1], [cols[-1] + 1, rows[-1] + 1]])
        corners = box @ m[:, :2].T + m[:, 2]
        grow = step + radius + 1
        x0, y0 = np.maximum(np.floor(corners.min(axis=0) - grow).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(corners.max(axis=0) + grow).astype(int), (width, height))
        if x1 <= x0 or y1 <= y0:
            return out, mask
        # region pixel (i, j) has its centre at guide (x0 + i + 0.5, y0 + j + 0.5); cv2 indexes pixel centres
        inv = cv2.invertAffineTransform(m)  # guide -> depth, continuous
        inv[:, 2] += inv[:, :2] @ (np.array([x0, y0]) + 0.5) - 0.5
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        up = [cv2.warpAffine(a.astype(np.float32), inv, (x1 - x0, y1 - y0), flags=flags, borderMode=border)
              for a, border in ((unit, cv2.BORDER_REPLICATE), (known, cv2.BORDER_CONSTANT))]
    gray = cv2.cvtColor(np.ascontiguousarray(guide[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    unit, coverage = (cv2.ximgproc.guidedFilter(gray, a, radius, e) for a, e in zip(up, eps))
    mask[y0:y1, x0:x1] = coverage >= 0.5
    out[y0:y1, x0:x1] = np.where(mask[y0:y1, x0:x1], lo + unit * (hi - lo), np.nan)
    return out, mask


# --- exchange formats -------------------------------------------------------------------------------------


def depth_to_png16(depth: np.ndarray) -> np.ndarray:
    """Relative depth (NaN = unknown) -> uint16 image: 1..65535 spans the face's near..far range, 0 = no depth."""
    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth)
    out = np.zeros(depth.shape, dtype=np.uint16)
    if valid.any():
        out[valid] = np.round(1 + unit_depth(depth, valid)[valid] * 65534).astype(np.uint16)
    return out


def png16_to_depth(png: np.ndarray) -> np.ndarray:
    """Inverse of :func:`depth_to_png16` up to scale: uint16 -> relative depth in [0, 1], NaN where 0."""
    png = np.asarray(png)
    depth = (png.astype(np.float32) - 1.0) / 65534.0
    depth[png == 0] = np.nan
    return depth


DEPTH_SUFFIXES = (".npy", ".png", ".exr")


def read_depth(path) -> np.ndarray:
    """The one depth-file reader: ``.npy`` (float, NaN = unknown), the project's 16-bit PNG (0 = unknown,
    :func:`depth_to_png16`) or a float ``.exr`` (0 / inf = unknown) -> float32 ``[H, W]`` relative depth, NaN where
    unknown. Raises ``InvalidImageError`` (a ``ValueError``) with a message for the user."""
    import os
    from pathlib import Path

    from PIL import Image

    from .errors import InvalidImageError

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in DEPTH_SUFFIXES:
        raise InvalidImageError(f"{path.name}: unknown depth format {suffix!r}; use one of {', '.join(DEPTH_SUFFIXES)}")
    if not path.is_file():
        raise InvalidImageError(f"depth file not found: '{path}'")
    try:
        if suffix == ".npy":
            depth = np.load(path, allow_pickle=False)
            if not np.issubdtype(depth.dtype, np.number):
                raise ValueError(f"a depth map must be numeric, got {depth.dtype}")
        elif suffix == ".png":
            with Image.open(path) as image:
                png = np.asarray(image)
            if png.dtype not in (np.uint16, np.int32) or png.ndim != 2:
                raise ValueError(f"not a 16-bit single-channel depth PNG ({png.dtype} {png.shape}); save depth as "
                                 ".npy or with portrait.depth.depth_to_png16")
            depth = png16_to_depth(png.astype(np.uint16))
        else:
            os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
            import cv2

            depth = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_UNCHANGED)
            if depth is None:
                raise ValueError("OpenCV could not read this EXR file")
            depth = np.asarray(depth, dtype=np.float32)
            depth = depth[..., 0] if depth.ndim == 3 else depth
            depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
    except (OSError, ValueError) as err:
        raise InvalidImageError(f"could not read the depth map '{path}': {err}") from err
    depth = np.squeeze(np.asarray(depth, dtype=np.float32))
    if depth.ndim != 2:
        raise InvalidImageError(f"a depth map must be 2-D, '{path}' has shape {depth.shape}")
    return depth


def colorize_depth(depth: np.ndarray, background=(255, 255, 255), span: tuple[float, float] | None = None) -> np.ndarray:
    """Relative depth -> ``[H, W, 3]`` uint8 with the perceptual 'magma' colour map.

    Direction: near = bright (yellow-white), far = dark (purple-black), normalised over the valid pixels or, with
    ``span`` ``(near, far)``, over that range (clipped; e.g. one range for every frame of a video); pixels
    without depth get ``background``.
    """
    from matplotlib import colormaps  # local import: matplotlib is only needed for pictures

    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth)
    rgb = np.empty(depth.shape + (3,), dtype=np.uint8)
    rgb[...] = np.asarray(background, dtype=np.uint8)
    if valid.any():
        near = np.clip(1.0 - unit_depth(depth, valid, span)[valid], 0.0, 1.0)
        rgb[valid] = (colormaps["magma"](near)[:, :3] * 255).round().astype(np.uint8)
    return rgb
