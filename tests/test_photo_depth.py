"""Depth in the photo's own pixels: a crop's depth carried through the alignment and upsampled guided by the photo
(``portrait.depth.upsample_depth(transform=...)``, ``Photo.in_photo``). No diffusion model here: a face mesh's
rendered depth stands in for the model's estimate, and held-out renders of the same face placed anywhere in a
larger photo give the exact ground truth in the photo's frame."""

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from portrait.depth import upsample_depth
from portrait.face import render_depth, shade
from portrait.face.segmentation import clean_mask
from portrait.studio import Photo

from .face_fixtures import astronaut_crop, astronaut_image, astronaut_mesh

R = 128  # the crop's working resolution


def held_out_render(side: int, angle: float, offset: tuple[int, int], canvas=(900, 700)):
    """The face mesh rendered ``side`` pixels wide, turned by ``angle`` degrees in the image plane and placed with its
    top-left corner at ``offset`` in a noisy canvas (cut where it leaves it): ``(photo, ground-truth depth, the
    crop -> photo transform of the R-pixel crop)``. Turning the mesh about the camera's axis turns its image about the
    crop's centre, so the transform is exact."""
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    turned = astronaut_mesh().copy()
    turned.vertices[:, :2] = turned.vertices[:, :2] @ np.array([[c, s], [-s, c]])
    render = render_depth(turned, side)
    width, height = canvas
    photo = np.clip(np.random.default_rng(0).normal(0, 12, (height, width, 3)) + (60, 110, 170), 0, 255).astype(np.uint8)
    truth = np.full((height, width), np.nan, np.float32)
    x0, y0 = max(offset[0], 0), max(offset[1], 0)
    x1, y1 = min(offset[0] + side, width), min(offset[1] + side, height)
    inside = slice(y0 - offset[1], y1 - offset[1]), slice(x0 - offset[0], x1 - offset[0])
    truth[y0:y1, x0:x1] = render.depth[inside]
    on = render.mask[inside]
    photo[y0:y1, x0:x1][on] = shade(render)[inside][on]
    a = side / R * np.array([[c, -s], [s, c]])
    t = np.asarray(offset) + side / 2 - a @ np.full(2, R / 2)
    return photo, truth, np.column_stack([a, t])


def in_photo(depth, photo, transform):
    depth, mask = upsample_depth(depth, photo, transform=transform)
    mask = clean_mask(mask)
    return np.where(mask, depth, np.nan)


def interior_rmse(pred, truth, span, grow=2):
    """RMSE over both masks shrunk by ``grow`` pixels (the silhouette itself is scored by the mask), in units of
    the ground truth's depth range ``span``."""
    inner = ndimage.binary_erosion(np.isfinite(pred) & np.isfinite(truth), iterations=grow)
    return float(np.sqrt(np.mean((pred[inner] - truth[inner]) ** 2)) / span)


@pytest.mark.parametrize("side,angle,offset", [(192, 0, (37, 20)), (400, 15, (333, 201)), (1000, -8, (-150, -260))])
def test_photo_frame_depth_lines_up_with_the_ground_truth(side, angle, offset):
    truth_crop = render_depth(astronaut_mesh(), R).depth
    span = float(np.nanmax(truth_crop) - np.nanmin(truth_crop))
    y, x = np.mgrid[0:R, 0:R] / R  # the estimate's own error: smooth, 3 % of the depth range
    estimate = truth_crop + 0.03 * span * np.sin(2 * np.pi * (1.5 * x + 0.7 * y)).astype(np.float32)
    photo, truth, transform = held_out_render(side, angle, offset)
    grow = max(2, round(2 * side / R))  # two crop pixels

    # the error in the photo frame is the crop frame's error, within noise (measured 0.0218-0.0227 vs 0.0212)
    crop_error = interior_rmse(estimate, truth_crop, span)
    photo_error = interior_rmse(in_photo(estimate, photo, transform), truth, span, grow)
    assert 0.9 * crop_error < photo_error < 1.1 * crop_error

    # pixel for pixel: the exact depth lands on the ground truth (measured 0.0054-0.0083 of the range: what 128
    # pixels cannot hold), the silhouette on the photo's; half a crop pixel off (0.75-3.9 photo pixels here) makes
    # the depth's error 1.5-2 times larger
    exact = in_photo(truth_crop, photo, transform)
    assert interior_rmse(exact, truth, span, grow) < 0.01
    shifted = transform + np.array([[0, 0, side / R / 2], [0, 0, 0]])
    assert interior_rmse(in_photo(truth_crop, photo, shifted), truth, span, grow) > 1.4 * interior_rmse(exact, truth, span, grow)
    got, want = np.isfinite(exact), np.isfinite(truth)
    assert (got & want).sum() / (got | want).sum() > 0.99
    centre = [np.argwhere(m).mean(axis=0) for m in (got, want)]
    assert np.abs(centre[0] - centre[1]).max() < max(0.3, 0.05 * side / R)  # photo pixels


def test_photo_carries_crop_depth_into_its_own_pixels():
    # an unaligned photo: its crop is the centred square
    photo, truth, transform = held_out_render(384, 0, (0, 0), canvas=(384, 384))
    prepared = Photo(image=Image.fromarray(photo), crop=Image.fromarray(photo).resize((R, R)))
    np.testing.assert_allclose(prepared.crop_to_photo(R), transform, atol=1e-9)
    depth, mask = prepared.in_photo(render_depth(astronaut_mesh(), R).depth)
    assert depth.shape == mask.shape == truth.shape and depth.dtype == np.float32
    np.testing.assert_array_equal(np.isfinite(depth), mask)
    assert ndimage.label(mask)[1] == 1 and (mask & np.isfinite(truth)).sum() / (mask | np.isfinite(truth)).sum() > 0.99

    # an aligned one: the crop's landmarks at R land on the photo's
    face = astronaut_crop()
    aligned = Photo(image=astronaut_image(), crop=face.image.resize((R, R)), face=face)
    m = aligned.crop_to_photo(R)
    at_r = face.landmarks_at(R)[:, :2]
    np.testing.assert_allclose(at_r @ m[:, :2].T + m[:, 2], face.to_photo(face.landmarks[:, :2]), atol=1e-6)
