"""The depth convention: codes, 16-bit PNG, scale/shift alignment and ensembling."""

import numpy as np

from portrait.depth import (
    BACKGROUND_CODE,
    MASK_THRESHOLD,
    align_scale_shift,
    code_to_depth,
    colorize_depth,
    complete_depth,
    depth_to_code,
    depth_to_png16,
    ensemble_depths,
    png16_to_depth,
)
from tests.conftest import square_depth


def test_code_round_trip_keeps_relative_depth_and_mask():
    depth = square_depth(64) * 3.0 + 10.0  # any units and offset
    code = depth_to_code(depth)
    mask = np.isfinite(depth)
    assert code.min() >= -1 and code.max() <= 1
    assert np.all(code[~mask] == BACKGROUND_CODE) and np.all(code[mask] < MASK_THRESHOLD)
    back, back_mask = code_to_depth(code)
    np.testing.assert_array_equal(back_mask, mask)
    s, b = align_scale_shift(back, depth, mask)
    np.testing.assert_allclose(s * back[mask] + b, depth[mask], atol=0.05 * 3.0)  # up to 2/98 % clipping


def test_png16_round_trip_and_colour_direction():
    depth = square_depth(32)
    png = depth_to_png16(depth)
    assert png.dtype == np.uint16 and png[0, 0] == 0
    back = png16_to_depth(png)
    np.testing.assert_allclose(back[np.isfinite(depth)], depth[np.isfinite(depth)], atol=1e-4)
    rgb = colorize_depth(depth)
    near, far = rgb[16, 8].astype(int).sum(), rgb[16, 23].astype(int).sum()
    assert near > far  # near = bright
    assert tuple(rgb[0, 0]) == (255, 255, 255)


def test_ensemble_recovers_depth_from_members_with_known_scale_and_shift():
    rng = np.random.default_rng(0)
    truth = square_depth(32)
    mask = np.isfinite(truth)
    truth = np.where(mask, truth, 0.0)
    members = np.stack([s * truth + b for s, b in [(1.0, 0.0), (2.0, 0.5), (0.5, -1.0), (3.0, 2.0)]])
    members += rng.normal(0, 1e-3, members.shape).astype(np.float32)
    result = ensemble_depths(members, mask)
    np.testing.assert_allclose(result.scales, [1.0, 0.5, 2.0, 1 / 3], rtol=1e-2)
    np.testing.assert_allclose(result.shifts, [0.0, -0.25, 2.0, -2 / 3], atol=1e-2)
    np.testing.assert_allclose(result.depth[mask], truth[mask], atol=0.01)
    assert np.nanmax(result.uncertainty) < 0.01
    assert np.isnan(result.depth[~mask]).all() and np.isnan(result.uncertainty[~mask]).all()


def test_complete_depth_keeps_the_known_part_and_continues_it():
    yy, xx = np.mgrid[0:16, 0:16].astype(np.float32)
    truth = 0.1 * xx + 0.05 * yy  # a tilted plane
    partial = np.where(xx < 8, truth, np.nan).astype(np.float32)  # only the left half is known
    estimate = 3.0 * truth - 2.0  # the right shape, in other units
    mask = np.ones((16, 16), bool)
    mask[:, -2:] = False
    out = complete_depth(partial, estimate, mask)
    np.testing.assert_array_equal(out[:, :8], truth[:, :8])  # kept exactly
    np.testing.assert_allclose(out[:, 8:-2], truth[:, 8:-2], atol=1e-5)  # continued in the same units
    assert np.isnan(out[:, -2:]).all()  # nothing outside the mask
