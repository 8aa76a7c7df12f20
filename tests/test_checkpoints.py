"""Checkpoint variants: CLIP image context, SD-1.x initialisation, schedulers, the default model's absence."""

import numpy as np
import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    UNet2DConditionModel,
)

from portrait.errors import ModelNotFoundError
from portrait.pipelines import build_from_stable_diffusion, load_pipeline, loading
from tests.conftest import random_image, square_depth, tiny_pipeline


def tiny_clip(dim=32):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=dim)
    return CLIPVisionModelWithProjection(config).eval()


@pytest.fixture(scope="module")
def clip_pipe():
    pipe = tiny_pipeline()
    pipe.register_modules(image_encoder=tiny_clip(), context_embedding=None)
    return pipe


def test_clip_context_depends_on_the_reference_and_is_zero_when_dropped(clip_pipe):
    model = clip_pipe.model
    a = model.context(torch.rand(1, 3, 32, 32) * 2 - 1)
    b = model.context(torch.rand(1, 3, 32, 32) * 2 - 1)
    assert a.shape == (1, 1, 32) and not torch.allclose(a, b)
    dropped = model.drop_context(torch.cat([a, b]), torch.tensor([False, True]))
    assert torch.all(dropped[0] == 0) and torch.equal(dropped[1], b[0])


def test_pipeline_with_clip_image_encoder_runs_and_round_trips(clip_pipe, tmp_path):
    kwargs = dict(num_inference_steps=2, guidance_scale=2.0)
    out = clip_pipe.generate(random_image(), generator=torch.Generator().manual_seed(0), **kwargs)
    clip_pipe.save_pretrained(tmp_path)
    loaded = load_pipeline(tmp_path)
    assert loaded.context_embedding is None and type(loaded.image_encoder).__name__ == "CLIPVisionModelWithProjection"
    again = loaded.generate(random_image(), generator=torch.Generator().manual_seed(0), **kwargs)
    np.testing.assert_array_equal(np.asarray(out.images[0]), np.asarray(again.images[0]))


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    """A tiny folder laid out like a Stable Diffusion 1.x checkpoint (unet/, vae/, scheduler/)."""
    path = tmp_path_factory.mktemp("sd")
    torch.manual_seed(0)
    UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8,
    ).save_pretrained(path / "unet")
    AutoencoderKL(block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=16,
                  sample_size=16).save_pretrained(path / "vae")
    DDPMScheduler(beta_schedule="scaled_linear").save_pretrained(path / "scheduler")
    return path


def test_build_from_stable_diffusion_widens_the_unet_and_copies_it_as_reference(sd_folder, tmp_path):
    pipe = build_from_stable_diffusion(str(sd_folder))
    sd_unet = UNet2DConditionModel.from_pretrained(sd_folder, subfolder="unet")
    assert (pipe.unet.config.in_channels, pipe.unet.config.out_channels) == (8, 8)
    assert pipe.reference_net.config.in_channels == 4
    torch.testing.assert_close(pipe.reference_net.conv_in.weight, sd_unet.conv_in.weight)
    torch.testing.assert_close(pipe.unet.conv_in.weight[:, 4:], sd_unet.conv_in.weight * 0.5)
    assert pipe.resolution == 16  # UNet sample size 8 x VAE factor 2
    pipe.set_progress_bar_config(disable=True)
    out = pipe.edit(random_image(16), square_depth(16), num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.depth.shape == (1, 16, 16)
    pipe.save_pretrained(tmp_path)
    assert load_pipeline(tmp_path).unet.config.in_channels == 8


@pytest.mark.parametrize("scheduler_cls", [DDPMScheduler, DPMSolverMultistepScheduler])
def test_the_scheduler_can_be_swapped(pixel_pipe, scheduler_cls):
    pipe = tiny_pipeline()
    pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
    steps = []
    out = pipe.estimate_depth(random_image(), num_inference_steps=3, generator=torch.Generator().manual_seed(0),
                              callback=lambda i, n: steps.append((i, n)))
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert np.isfinite(out.depth[out.mask]).all()


def test_no_default_model_installed_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(loading, "DEFAULT_MODEL_DIR", tmp_path / "default")
    with pytest.raises(ModelNotFoundError, match="no default model is installed"):
        load_pipeline()


def test_the_embedded_default_loads_offline_and_runs():
    """What `python app.py` starts on: shipped in the package, small, loadable with HF_HUB_OFFLINE=1."""
    size = sum(p.stat().st_size for p in loading.DEFAULT_MODEL_DIR.rglob("*") if p.is_file())
    assert size <= 50 * 2**20
    pipe = load_pipeline()
    assert pipe.resolution >= 96 and pipe.vae is not None
    out = pipe.estimate_depth(random_image(pipe.resolution), num_inference_steps=1,
                              generator=torch.Generator().manual_seed(0))
    assert out.depth.shape == (1, pipe.resolution, pipe.resolution)
