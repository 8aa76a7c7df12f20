"""Inpainting with per-pixel, per-modality known masks: one sampler for all jobs, exact known parts, composites."""

import inspect

import numpy as np
import pytest
import torch

from portrait.compositing import composite, feather, match_colours
from portrait.depth import code_to_depth, depth_to_code
from portrait.pipelines import PortraitPipeline
from portrait.pipelines.pipeline_portrait import known_cells
from tests.conftest import random_image, square_depth, tiny_pipeline


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def holes(size=32):
    """A square hole and a one-pixel hole: ``[size, size]`` bool, true = unknown."""
    hole = np.zeros((size, size), bool)
    hole[8:18, 10:22] = True
    hole[26, 5] = True
    return hole


def full_depth(size=32):
    """A depth known everywhere: a tilted plane."""
    return np.tile(np.linspace(0.0, 1.0, size, dtype=np.float32), (size, 1))


# --- one sampler: the four jobs differ only in what they pass as known ---------------------------------------


def test_the_four_jobs_are_settings_of_one_sampler(pixel_pipe, monkeypatch):
    calls, sample = [], pixel_pipe._sample
    signature = inspect.signature(PortraitPipeline._sample)

    def spy(*args, **kwargs):
        calls.append(signature.bind(pixel_pipe, *args, **kwargs).arguments)
        return sample(*args, **kwargs)

    monkeypatch.setattr(pixel_pipe, "_sample", spy)
    image, target, hole = random_image(seed=1), square_depth(), holes()
    run = dict(num_inference_steps=2, generator=seeded())
    pixel_pipe.generate(image, **run)
    pixel_pipe.estimate_depth(image, **run)
    pixel_pipe.edit(image, target, **run)
    pixel_pipe.inpaint(image, rgb=image, rgb_known=~hole, depth=full_depth(), **run)
    generate, estimate, edit, fill = calls
    mask = lambda m: m[0, 0].numpy().astype(bool)  # noqa: E731  [1, 1, R, R] float -> [R, R] bool

    assert all(generate.get(k) is None for k in ("rgb", "rgb_known", "depth", "depth_known"))  # nothing known
    assert estimate["rgb"] is not None and estimate.get("rgb_known") is None and estimate.get("depth") is None
    assert edit.get("rgb") is None and np.array_equal(mask(edit["depth_known"]), np.isfinite(target))
    assert np.array_equal(mask(fill["rgb_known"]), ~hole) and mask(fill["depth_known"]).all()


# --- known parts come back exactly; unknown ones are sampled ---------------------------------------------------


@pytest.mark.parametrize("latent", [False, True])
def test_inpaint_returns_known_pixels_exactly_and_fills_the_holes(latent, pixel_pipe, latent_pipe):
    pipe = latent_pipe if latent else pixel_pipe
    hole, depth = holes(), full_depth()
    rgb = np.asarray(random_image(seed=2)).copy()
    rgb[hole] = 0  # what a warp leaves in its holes
    out = pipe.inpaint(random_image(), rgb=rgb, rgb_known=~hole, depth=depth, num_images=2,
                       num_inference_steps=3, generator=seeded())
    assert len(out.images) == 2 and out.depth.shape == (2, 32, 32)
    expected, _ = code_to_depth(depth_to_code(depth))
    for image, d in zip(out.images, out.depth):
        image = np.asarray(image)
        np.testing.assert_array_equal(image[~hole], rgb[~hole])  # bit for bit, never through the VAE
        assert (image[hole] != 0).any(axis=-1).mean() > 0.9  # the holes were filled
        np.testing.assert_array_equal(d, expected)  # depth known everywhere: exactly as given


def test_inpaint_rgb_alone_and_from_a_prefill(pixel_pipe):
    """Depth left out is sampled; ``strength`` < 1 starts from the pre-fill and runs only the last steps."""
    hole, image = holes(), random_image(seed=3)
    steps = []
    out = pixel_pipe.inpaint(image, rgb=image, rgb_known=~hole, strength=0.5, num_inference_steps=4,
                             generator=seeded(), callback=lambda i, n: steps.append(n))
    assert steps == [2, 2]
    np.testing.assert_array_equal(np.asarray(out.images[0])[~hole], np.asarray(image)[~hole])
    assert not np.array_equal(np.asarray(out.images[0])[hole], np.asarray(image)[hole])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(rgb=random_image(), rgb_known=np.ones((16, 16), bool)), "rgb_known"),
        (dict(rgb=random_image(), rgb_known=np.ones((32, 32, 1), bool)), "rgb_known"),
        (dict(rgb_known=np.ones((32, 32), bool)), "rgb_known"),
        (dict(depth_known=np.ones((32, 32), bool)), "depth_known"),
        (dict(depth=full_depth(), depth_known=np.ones((16, 16), bool)), "depth_known"),
        (dict(rgb=random_image(), depth=full_depth(16)), "depth"),
        (dict(depth=np.full((32, 32), np.nan)), "depth"),
        (dict(rgb=np.zeros((32, 32, 3), np.float32)), "rgb"),
        (dict(rgb=random_image().crop((0, 0, 32, 20))), "rgb"),
    ],
)
def test_bad_inpaint_arguments_raise_errors_naming_them(pixel_pipe, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pixel_pipe.inpaint(random_image(), **kwargs)


# --- how known parts are held while sampling -------------------------------------------------------------------


def test_latent_cells_are_known_only_if_all_their_pixels_are(latent_pipe, monkeypatch):
    known = torch.ones(1, 1, 8, 8)
    known[0, 0, 5, 2] = 0  # one unknown pixel
    cells = known_cells(known, 4)[0, 0]
    assert cells.tolist() == [[1, 1], [0, 1]]
    assert known_cells(torch.ones(1, 1, 8, 8), 4).eq(1).all()

    # in the sampler: after the last step every known cell holds the encoded known RGB exactly, and only those
    pipe, f = latent_pipe, latent_pipe.model.scale_factor
    seen, decode = [], pipe.vae.decode
    monkeypatch.setattr(pipe.vae, "decode", lambda z, *a, **k: seen.append(z) or decode(z, *a, **k))
    image = random_image(seed=4)
    rgb = pipe._image_tensor(image)
    pixel_known = torch.ones(1, 1, 32, 32)
    pixel_known[0, 0, 13, 6] = 0
    pipe._sample(pipe.encode_reference(image), 1, 2, 1.0, seeded(), rgb=rgb, rgb_known=pixel_known)
    got = seen[0] * pipe.vae.config.scaling_factor  # the sampled RGB latent  [1, c, h, w]
    held = (got - pipe.model.encode_rgb(rgb)).abs().amax(dim=1)[0] < 1e-5  # [h, w]
    expected = torch.ones_like(held)
    expected[13 // f, 6 // f] = False
    assert torch.equal(held, expected)


@pytest.mark.parametrize(
    "clean_known,rgb_known,clean",
    [(True, None, True), (True, "ones", True), (True, "hole", False), (False, None, False)],
)
def test_known_rgb_is_clean_only_if_known_everywhere_and_so_trained(clean_known, rgb_known, clean):
    pipe = tiny_pipeline()
    pipe.register_to_config(clean_known=clean_known)
    image = random_image(seed=6)
    rgb = pipe._image_tensor(image)
    known = {None: None, "ones": torch.ones(1, 1, 32, 32), "hole": torch.from_numpy(~holes()).float()[None, None]}
    seen = []
    pipe.unet.register_forward_pre_hook(lambda _m, args: seen.append(args[0][:, :3].clone()))
    pipe._sample(pipe.encode_reference(image), 1, 3, 1.0, seeded(), rgb=rgb, rgb_known=known[rgb_known])
    inside = ~torch.from_numpy(holes()) if rgb_known == "hole" else torch.ones(32, 32, dtype=torch.bool)
    assert len(seen) == 3
    # held clean: the unet sees the clean RGB at every step; re-noised: it never does
    assert [torch.equal(x[..., inside], rgb[..., inside]) for x in seen] == [clean] * 3


# --- compositing (numpy + OpenCV) ------------------------------------------------------------------------------


def test_feather_grows_into_the_hole_only():
    hole = np.zeros((24, 24), bool)
    hole[4:20, 4:20] = True
    w = feather(hole, 4)
    assert w.dtype == np.float32 and (w[~hole] == 0).all() and (w[hole] > 0).all()
    assert w[4, 10] == pytest.approx(0.25) and w[12, 12] == 1  # 1 px in: 1 / radius; the centre: fully generated
    assert (np.diff(w[12, 4:12]) >= 0).all()  # rises with the distance into the hole
    np.testing.assert_array_equal(feather(hole, 0), hole.astype(np.float32))  # no radius: a hard edge


def two_holes():
    """A smooth known image (50..200), a hole in each half, far from the other half's."""
    yy, xx = np.mgrid[0:40, 0:60].astype(np.float32)
    known = np.stack([50 + 2.5 * xx, 50 + 3.5 * yy, 125 + 75 * np.sin(xx / 7 + yy / 5)], axis=-1)
    hole = np.zeros((40, 60), bool)
    hole[12:26, 8:20] = True
    hole[15:30, 40:52] = True
    return known, hole


def test_colour_matching_takes_each_hole_to_its_known_ring():
    known, hole = two_holes()
    left = np.arange(60) < 30
    # the generator got each hole's colours wrong in its own way: a gain and an offset per region
    generated = np.where(left[None, :, None], 0.6 * known + 30, 1.3 * known - 40)
    matched = match_colours(generated, known, hole, ring_px=4)
    np.testing.assert_array_equal(matched[~hole], generated[~hole].astype(np.float32))  # only holes change
    np.testing.assert_allclose(matched[hole], known[hole], atol=1e-3)  # each hole undone by its own ring
    # the gain is clamped: a flat generated ring is stretched at most max_gain times
    flat = match_colours(0.1 * known + 100, known, hole, ring_px=4, max_gain=2.0)
    one = hole & left  # per hole: gain 0.1 * 2
    ratio = flat[one].std(axis=0) / known[one].std(axis=0)
    np.testing.assert_allclose(ratio, 0.2, rtol=0.05)


def test_composite_is_bit_exact_outside_the_holes():
    known, hole = two_holes()
    known = known.round().astype(np.uint8)
    warped = known.copy()
    warped[hole] = 0  # junk in the holes: ignored
    generated = np.full_like(known, 255)  # wildly different everywhere
    out = composite(warped, generated, hole, feather_px=3, ring_px=4)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[~hole], known[~hole])
    w = feather(hole, 3)
    deep = hole & (w == 1)
    matched = match_colours(generated, warped, hole, 4)
    np.testing.assert_array_equal(out[deep], np.rint(matched[deep]).astype(np.uint8))  # fully generated
    assert (out[hole & (w < 1)] != 0).all()  # the seam fades from the nearest known colour, not the junk
    np.testing.assert_array_equal(composite(known, generated, np.zeros_like(hole), 3, 4), known)
    np.testing.assert_array_equal(composite(known, generated, np.ones_like(hole), 3, 4), generated)


def test_composite_of_many_holes_at_photo_resolution():
    rng = np.random.default_rng(0)
    known, generated = (rng.integers(0, 256, (512, 512, 3), dtype=np.uint8) for _ in range(2))
    hole = np.zeros((512, 512), bool)
    hole[100:220, 150:300] = True
    hole[rng.integers(0, 512, 200), rng.integers(0, 512, 200)] = True  # specks
    out = composite(known, generated, hole, feather_px=8, ring_px=16)
    np.testing.assert_array_equal(out[~hole], known[~hole])
    assert out.shape == known.shape and not np.array_equal(out[hole], known[hole])


def test_continue_from_fills_from_the_known_pixels_alone():
    """A hole in a smooth background is filled smoothly from it, nothing of what is left out of ``known`` (a head
    beside the hole) leaks in, and pixels outside the hole are untouched."""
    from portrait.compositing import continue_from

    y, x = np.mgrid[0:96, 0:96]
    rgb = np.stack([x * 2, y * 2, np.full_like(x, 90)], axis=-1).astype(np.uint8)  # a gentle gradient
    head = (x - 62) ** 2 + (y - 48) ** 2 < 15**2  # touching the hole
    rgb[head] = (255, 0, 255)
    hole = (np.abs(x - 35) < 10) & (np.abs(y - 48) < 20)
    out = continue_from(rgb, hole, ~head)
    assert np.array_equal(out[~hole], rgb[~hole])
    filled = out[hole].astype(int)
    assert np.abs(filled[:, 2] - 90).max() <= 5  # blue is 90 all over the background, 255 in the magenta head
    assert np.corrcoef(filled[:, 0], x[hole])[0, 1] > 0.8 and np.corrcoef(filled[:, 1], y[hole])[0, 1] > 0.8
    assert np.array_equal(continue_from(rgb, np.zeros_like(hole), ~head), rgb)


def test_soften_smooths_a_stair_edge_and_touches_nothing_else():
    """A hard diagonal edge drawn one sample per pixel (stairs): the pixels beside it get values between the two
    sides; every other pixel comes back bit for bit."""
    from portrait.compositing import soften

    y, x = np.mgrid[0:32, 0:32]
    rgb = np.where((x > y)[..., None], 200, 40).astype(np.uint8).repeat(3, axis=-1)
    edge = np.abs(x - y) <= 1
    out = soften(rgb, edge)
    assert np.array_equal(out[~edge], rgb[~edge])
    inner = edge[1:-1, 1:-1] & (np.abs(x - y)[1:-1, 1:-1] <= 1)
    values = out[1:-1, 1:-1][inner][:, 0].astype(int)
    assert ((values > 40) & (values < 200)).all()  # no pixel left at either side's value
    assert np.array_equal(soften(rgb, np.zeros_like(edge)), rgb)
