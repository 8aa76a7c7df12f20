"""The depth convention: codes, 16-bit PNG, scale/shift alignment and ensembling."""

import numpy as np

from portrait.depth import (
    BACKGROUND_CODE,
    MASK_THRESHOLD,
    align_scale_shift,
    blend_depth,
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


def test_blend_depth_averages_an_aligned_prior_in_where_it_exists_and_feathers_its_edge():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    truth = np.sin(xx / 9.0) + 0.5 * np.cos(yy / 7.0)
    estimate = truth + rng.normal(0, 0.1, truth.shape).astype(np.float32)
    estimate[:2] = np.nan  # no estimate there: stays NaN
    region = (xx - 32) ** 2 + (yy - 32) ** 2 < 20**2
    prior = np.where(region, 4.0 * (truth + rng.normal(0, 0.1, truth.shape)) - 7.0, np.nan).astype(np.float32)

    np.testing.assert_array_equal(blend_depth(estimate, prior, 0.0), estimate)  # weight 0: the estimate itself
    out = blend_depth(estimate, prior, 0.5, feather=4)
    valid = np.isfinite(estimate)
    assert np.array_equal(np.isfinite(out), valid) and np.nanmin(out) == 0.0 and np.nanmax(out) == 1.0

    def error(d, where):
        s, b = align_scale_shift(d, truth, where)
        return np.sqrt(np.mean((s * d[where] + b - truth[where]) ** 2))

    core = (xx - 32) ** 2 + (yy - 32) ** 2 < 15**2  # deeper than the feather
    # two independent errors of the same size, averaged: sqrt(1/2) of either
    np.testing.assert_allclose(error(out, core) / error(estimate, core), np.sqrt(0.5), rtol=0.1)
    outside = valid & ~region
    s, b = align_scale_shift(out, estimate, outside)
    np.testing.assert_allclose(s * out[outside] + b, estimate[outside], atol=1e-5)  # untouched (up to the renormalising)
    # the edge ramps in: the prior's weight there is weight / feather, so the blend moves less than in the core
    s, b = align_scale_shift(out, estimate, outside)
    moved = np.abs(s * out + b - estimate)
    edge = region & ~((xx - 32) ** 2 + (yy - 32) ** 2 < 19**2)
    assert np.mean(moved[edge]) < 0.5 * np.mean(moved[core])
