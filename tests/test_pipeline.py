"""The three jobs of PortraitPipeline on tiny models: caching, inpainting, determinism, errors, save/load."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from portrait.depth import blend_depth, code_to_depth, depth_to_code
from portrait.errors import ModelNotFoundError
from portrait.pipelines import load_pipeline
from tests.conftest import random_image, square_depth, tiny_pipeline


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


class CountCalls:
    def __init__(self, module):
        self.count = 0
        module.register_forward_hook(self)

    def __call__(self, *_):
        self.count += 1


@pytest.mark.parametrize("steps,guidance", [(2, 1.0), (6, 1.0), (4, 3.0)])
def test_one_reference_pass_per_generation_whatever_the_steps(steps, guidance):
    pipe = tiny_pipeline()
    ref_calls, unet_calls = CountCalls(pipe.reference_net), CountCalls(pipe.unet)
    pipe.generate(random_image(), num_images=2, num_inference_steps=steps, guidance_scale=guidance, generator=seeded())
    assert ref_calls.count == 1
    assert unet_calls.count == steps  # CFG batches both branches into one forward


@pytest.mark.parametrize("latent", [False, True])
def test_outputs_have_documented_shapes_and_conventions(latent, pixel_pipe, latent_pipe):
    pipe = latent_pipe if latent else pixel_pipe
    out = pipe.generate(random_image(), num_images=2, num_inference_steps=2, generator=seeded())
    assert len(out.images) == 2 and out.images[0].size == (32, 32) and out.images[0].mode == "RGB"
    assert out.depth.shape == out.mask.shape == (2, 32, 32) and out.depth.dtype == np.float32
    assert np.isnan(out.depth[~out.mask]).all()
    valid = out.depth[out.mask]
    assert valid.size == 0 or (valid.min() >= 0 and valid.max() <= 1)


def test_depth_estimation_keeps_the_image_exactly_and_reports_uncertainty(pixel_pipe):
    image = random_image(seed=3)
    out = pixel_pipe.estimate_depth(image, ensemble_size=3, num_inference_steps=3, generator=seeded())
    np.testing.assert_array_equal(np.asarray(out.images[0]), np.asarray(image))
    assert out.depth.shape == out.uncertainty.shape == (1, 32, 32)
    assert np.all(np.isnan(out.uncertainty[~out.mask])) and np.all(np.isfinite(out.uncertainty[out.mask]))


def test_depth_estimation_with_a_given_mask_and_a_prior(pixel_pipe):
    prior = square_depth()
    mask = np.isfinite(prior)
    out = pixel_pipe.estimate_depth(
        random_image(), num_inference_steps=4, mask=mask, depth_prior=prior, prior_strength=0.5, generator=seeded()
    )
    np.testing.assert_array_equal(out.mask[0], mask)


def test_depth_estimation_averages_the_prior_in_where_it_exists(pixel_pipe):
    """The sampled depth is the same at any ``prior_weight``; the weight only mixes the prior into it, in its region."""
    image, mask = random_image(seed=5), np.ones((32, 32), bool)
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    prior = np.where((xx - 32) ** 2 + (yy - 32) ** 2 < 24**2, (xx - 32) ** 2 + (yy - 32) ** 2, np.nan)  # a bowl, 64x64
    run = lambda w: pixel_pipe.estimate_depth(image, num_inference_steps=4, mask=mask, depth_prior=prior,  # noqa: E731
                                              prior_strength=0.5, prior_weight=w, generator=seeded()).depth[0]
    alone, blended = run(0.0), run(0.5)
    small = pixel_pipe._resize_depth(prior)  # the prior at the working resolution (32x32), NaN off it
    assert small.shape == (32, 32) and np.isfinite(small[16, 16]) and np.isnan(small[0, 0])
    np.testing.assert_allclose(blended, blend_depth(alone, small, 0.5), atol=1e-6)
    assert not np.allclose(blended, alone)
    with pytest.raises(ValueError, match="prior_weight"):
        pixel_pipe.estimate_depth(image, depth_prior=prior, prior_weight=1.5)


@pytest.mark.parametrize("latent", [False, True])
def test_edit_returns_the_held_depth_exactly_inside_the_mask(latent, pixel_pipe, latent_pipe):
    pipe = latent_pipe if latent else pixel_pipe
    target = square_depth()
    held = np.isfinite(target)
    out = pipe.edit(random_image(), target, strength=1.0, num_inference_steps=3, generator=seeded())
    expected, _ = code_to_depth(depth_to_code(target), held)
    np.testing.assert_array_equal(out.depth[0][held], expected[held])


def test_pixel_mode_known_channels_are_exact_in_the_sampled_representation(pixel_pipe):
    """RePaint replacement: after the last step the known channels hold the clean value, bit for bit."""
    image = random_image(seed=5)
    rgb = pixel_pipe._image_tensor(image)
    got_rgb, _ = pixel_pipe._sample(pixel_pipe.encode_reference(image), 2, 3, 1.0, seeded(), rgb=rgb)
    torch.testing.assert_close(got_rgb, rgb.expand(2, -1, -1, -1).clamp(-1, 1), rtol=0, atol=0)


def test_seeded_runs_are_identical_and_seeds_differ(pixel_pipe):
    a = pixel_pipe.generate(random_image(), num_inference_steps=3, generator=seeded(7))
    b = pixel_pipe.generate(random_image(), num_inference_steps=3, generator=seeded(7))
    c = pixel_pipe.generate(random_image(), num_inference_steps=3, generator=seeded(8))
    np.testing.assert_array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    np.testing.assert_array_equal(a.depth, b.depth)
    assert not np.array_equal(np.asarray(a.images[0]), np.asarray(c.images[0]))


@pytest.mark.parametrize("latent", [False, True])
def test_save_load_round_trip_gives_the_same_samples(latent, tmp_path, pixel_pipe, latent_pipe):
    pipe = latent_pipe if latent else pixel_pipe
    pipe.save_pretrained(tmp_path)
    assert any(p.suffix == ".safetensors" for p in tmp_path.rglob("*"))
    loaded = load_pipeline(tmp_path)
    assert type(loaded.reference_net).__name__ == "ReferenceNet" and (loaded.vae is None) == (not latent)
    a = pipe.edit(random_image(), square_depth(), strength=0.7, num_inference_steps=3, generator=seeded())
    b = loaded.edit(random_image(), square_depth(), strength=0.7, num_inference_steps=3, generator=seeded())
    np.testing.assert_array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))


def test_the_reference_conditions_generation_and_guidance_scales_its_effect(pixel_pipe):
    """Same seed, two references: their portraits differ, and more with stronger guidance (classifier-free
    guidance multiplies the reference's part of each step)."""

    def gap(guidance: float) -> float:
        a, b = (np.asarray(pixel_pipe.generate(random_image(seed=s), num_inference_steps=2, guidance_scale=guidance,
                                                generator=seeded()).images[0], float) for s in (1, 2))
        return float(np.abs(a - b).mean())

    assert 0.0 < gap(1.0) < gap(4.0)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda p: p.generate(random_image().convert("L")), "mode 'L'"),
        (lambda p: p.generate(random_image().crop((0, 0, 32, 20))), "square"),
        (lambda p: p.generate(np.zeros((32, 32, 3))), "PIL.Image"),
        (lambda p: p.generate(random_image(), num_inference_steps=0), "num_inference_steps"),
        (lambda p: p.generate(random_image(), num_images=0), "num_images"),
        (lambda p: p.edit(random_image(), square_depth(), strength=1.5), "strength"),
        (lambda p: p.edit(random_image(), square_depth(), strength=-0.1), "strength"),
        (lambda p: p.edit(random_image(), square_depth(), mask=np.ones((16, 16), bool)), "mask"),
        (lambda p: p.edit(random_image(), np.full((32, 32), np.nan)), "target_depth"),
        (lambda p: p.estimate_depth(random_image(), ensemble_size=0), "ensemble_size"),
        (lambda p: p.estimate_depth(random_image(), mask=np.ones((8, 8), bool)), "mask"),
    ],
)
def test_bad_arguments_raise_errors_naming_them(pixel_pipe, call, match):
    with pytest.raises(ValueError, match=match):
        call(pixel_pipe)


def test_missing_model_path_and_uncached_hub_id_are_clear_errors(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_pipeline(tmp_path / "nope")
    with pytest.raises(ModelNotFoundError, match="no-such-org/no-such-model"):
        load_pipeline("no-such-org/no-such-model")


def test_training_loss_goes_down_on_a_fixed_batch():
    pipe = tiny_pipeline(seed=1)
    model = pipe.model.train()
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    g = torch.Generator().manual_seed(0)
    batch = {
        "rgb": torch.rand(4, 3, 32, 32, generator=g) * 2 - 1,
        "depth": torch.rand(4, 1, 32, 32, generator=g) * 2 - 1,
        "reference": torch.rand(4, 3, 32, 32, generator=g) * 2 - 1,
    }
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def loss_at(seed):
        with torch.no_grad():
            return model.training_loss(batch, scheduler, generator=torch.Generator().manual_seed(seed)).item()

    before = np.mean([loss_at(s) for s in range(4)])
    for step in range(15):
        loss = model.training_loss(batch, scheduler, generator=torch.Generator().manual_seed(100 + step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = np.mean([loss_at(s) for s in range(4)])
    assert after < 0.8 * before
    # the reference network learns too (its self-attention states feed the denoiser)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in pipe.reference_net.parameters())


def test_reference_features_computed_once_are_reused_with_the_same_result():
    pipe = tiny_pipeline()
    image = random_image(seed=2)
    features = pipe.encode_reference(image)
    calls = CountCalls(pipe.reference_net)
    a = pipe.edit(image, square_depth(), num_inference_steps=2, generator=seeded(), reference_features=features)
    b = pipe.edit(image, square_depth(), num_inference_steps=2, generator=seeded(), reference_features=features)
    assert calls.count == 0
    c = pipe.edit(image, square_depth(), num_inference_steps=2, generator=seeded())
    assert calls.count == 1
    np.testing.assert_array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    np.testing.assert_array_equal(np.asarray(a.images[0]), np.asarray(c.images[0]))


def test_conditional_jobs_score_only_the_noised_modality():
    pipe = tiny_pipeline(seed=1)
    model = pipe.model.train()
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    g = torch.Generator().manual_seed(0)
    batch = {k: torch.rand(4, c, 32, 32, generator=g) * 2 - 1 for k, c in (("rgb", 3), ("depth", 1), ("reference", 3))}
    rows = pipe.unet.conv_out.weight  # [C_out, ...]: row c predicts output channel c
    c_rgb = model.rgb_channels
    for mix, scored in (((0, 1, 0), "depth"), ((0, 0, 1), "rgb"), ((1, 0, 0), "both")):
        pipe.unet.zero_grad()
        model.training_loss(batch, scheduler, generator=seeded(), task_mix=mix).backward()
        grad = rows.grad.abs().flatten(1).sum(1)  # [C_out]
        assert (grad[:c_rgb].sum() > 0) == (scored in ("rgb", "both"))
        assert (grad[c_rgb:].sum() > 0) == (scored in ("depth", "both"))


@pytest.mark.parametrize("clean_known", [False, True])
def test_known_rgb_is_given_clean_or_noised_as_the_model_was_trained(clean_known, tmp_path):
    pipe = tiny_pipeline()
    pipe.register_to_config(clean_known=clean_known)
    pipe.save_pretrained(tmp_path)
    pipe = load_pipeline(tmp_path)
    assert pipe.config.clean_known is clean_known
    pipe.set_progress_bar_config(disable=True)
    image = random_image(seed=3)
    seen = []
    pipe.unet.register_forward_pre_hook(lambda _m, args: seen.append(args[0][:, :3].clone()))
    pipe.estimate_depth(image, num_inference_steps=3, generator=seeded())
    clean = pipe._image_tensor(image)
    assert len(seen) == 3
    assert all(torch.allclose(x, clean) for x in seen) is clean_known


def test_a_partial_prior_is_completed_by_one_sample_first():
    pipe = tiny_pipeline()
    calls = CountCalls(pipe.unet)
    image, prior = random_image(seed=4), square_depth()  # the prior covers the centre square only
    out = pipe.estimate_depth(image, num_inference_steps=4, depth_prior=prior, prior_strength=0.5, generator=seeded())
    assert calls.count == 4 + 2  # one full sample to complete the prior, then half the steps from it
    calls.count = 0
    pipe.estimate_depth(image, num_inference_steps=4, depth_prior=prior, prior_strength=0.5,
                        mask=np.isfinite(prior), generator=seeded())
    assert calls.count == 2  # the prior covers the whole mask: nothing to complete
    assert out.depth.shape == (1, 32, 32)


def test_jobs_running_at_once_in_two_threads_give_what_they_give_one_after_another(pixel_pipe):
    """The pipeline is shared by every user of the app: a job's scheduler state is its own, so two jobs with
    different step counts on two threads give exactly their results run alone."""
    from concurrent.futures import ThreadPoolExecutor

    ref = random_image(seed=5)

    def job(steps: int):
        out = pixel_pipe.generate(ref, num_inference_steps=steps, guidance_scale=2.0,
                                  generator=torch.Generator().manual_seed(steps))
        return np.asarray(out.images[0]), out.depth[0]

    jobs = [3, 7, 3, 7, 5, 2]
    alone = [job(steps) for steps in jobs]
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(job, jobs))
    for (image_a, depth_a), (image_b, depth_b) in zip(alone, together):
        assert np.array_equal(image_a, image_b)
        assert np.array_equal(depth_a, depth_b, equal_nan=True)


def test_the_joint_model_view_is_built_once_and_follows_a_replaced_component(pixel_pipe):
    from portrait.pipelines import load_pipeline  # noqa: F401  (the pipeline class's module is loaded)

    assert pixel_pipe.model is pixel_pipe.model
    unet = pixel_pipe.unet
    model = pixel_pipe.model
    try:
        pixel_pipe.unet = type(unet).from_config(unet.config)
        assert pixel_pipe.model is not model and pixel_pipe.model.unet is pixel_pipe.unet
    finally:
        pixel_pipe.unet = unet
    assert pixel_pipe.model.unet is unet
