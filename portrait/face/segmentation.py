"""The head's silhouette: the model's head-and-neck mask made clean with a person segmentation (mediapipe's
bundled selfie segmentation; no download, no torch).

The model's own mask (where its depth is) cuts hats and hair oddly on real photos, strays into the background
beside the neck and leaves specks; the person segmentation finds hair and hats but covers the body and clothes
too. :func:`head_silhouette` keeps the model's mask where it lies on the person and adds the person's hair and
hat above the chin that the model missed, as one piece.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

CONTEXT = 1.5  # the segmentation sees the crop zoomed out this much: on the crop alone it misses a hat cut by the
# crop's top edge (examples/grace_hopper.jpg)
SEGMENT_SIDE = 384  # ... at this many pixels (the model itself works at 256); the crop is its middle 256
REACH = 1 / 8  # hair and hats are added up to this share of the crop's side beyond the model's mask
TRUST = 0.5  # the segmentation is used only where the person covers at least this share of the model's head


def segment_person(photo: Image.Image, crop_to_photo: np.ndarray, size: int) -> np.ndarray:
    """``[size, size]`` float32 in [0, 1]: how likely each pixel of a square crop of ``photo`` shows a person.

    ``crop_to_photo`` ``[2, 3]`` maps the crop's pixels at ``size`` into the photo (continuous coordinates, e.g.
    :attr:`~portrait.face.AlignedFace.crop_to_photo` scaled to ``size``). The segmentation runs once on the crop
    zoomed out by ``CONTEXT`` (black outside the photo), under the lock of :mod:`portrait.face.landmarks`.
    """
    import cv2

    from .landmarks import _LOCK, _process
    from .warp import warp_to_square

    m = np.asarray(crop_to_photo, dtype=np.float64)
    inner = round(SEGMENT_SIDE / CONTEXT)
    margin = (SEGMENT_SIDE - inner) // 2
    scale = size / inner  # crop pixels per view pixel: crop_xy = (view_xy - margin) * scale
    view_to_photo = np.column_stack([m[:, :2] * scale, m[:, 2] - m[:, :2] @ np.full(2, margin * scale)])
    view = np.asarray(warp_to_square(photo.convert("RGB"), view_to_photo, SEGMENT_SIDE, mirror=False))
    with _LOCK:
        chance = _process("selfie", 0.0, view).segmentation_mask
    inside = np.ascontiguousarray(chance[margin : margin + inner, margin : margin + inner], dtype=np.float32)
    return np.clip(cv2.resize(inside, (size, size), interpolation=cv2.INTER_AREA), 0.0, 1.0)


def head_silhouette(
    model: np.ndarray, person: np.ndarray, chin: float | None = None, sure: np.ndarray | None = None
) -> np.ndarray:
    """The model's head-and-neck mask ``model`` ``[r, r]`` made clean with the ``person`` chance ``[r, r]`` of
    the same crop (:func:`segment_person`):

    1. the model's mask where it lies on the person (``sure`` pixels, e.g. the face mesh's, count as the person),
       its largest piece: specks and strays into the background go;
    2. plus the person's pixels above the ``chin`` row and within ``REACH`` of that, touching it: hair and hats
       the model missed, not the shoulders;
    3. one piece, holes filled (:func:`clean_mask`).

    Where the person covers under ``TRUST`` of the model's head (the segmentation found no one there: a drawing,
    a synthetic face), the model's mask alone is cleaned.
    """
    from scipy import ndimage

    model = np.asarray(model, dtype=bool)
    on_person = np.asarray(person) >= 0.5
    if sure is not None:
        on_person |= np.asarray(sure, dtype=bool) & model
    head = clean_mask(model)
    core = clean_mask(model & on_person)
    if core.sum() < TRUST * head.sum():
        return head
    extra = on_person & ~core & (ndimage.distance_transform_edt(~core) <= REACH * model.shape[0])
    if chin is not None:
        extra[max(0, int(np.ceil(chin))) :] = False
    return clean_mask(core | extra)


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """The largest connected piece of a mask, holes filled (no specks, no islands); worked on its bounding box."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    out = np.zeros_like(mask)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return out
    box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    part = mask[box]
    labels, count = ndimage.label(part)
    if count > 1:
        sizes = ndimage.sum(part, labels, index=np.arange(1, count + 1))
        part = labels == 1 + int(np.argmax(sizes))
    out[box] = ndimage.binary_fill_holes(part)
    return out
