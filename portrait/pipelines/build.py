"""Build a fresh :class:`PortraitPipeline`: from scratch (any size) or from a Stable Diffusion 1.x folder."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel

from ..models import LearnedContext, ReferenceNet, widen_unet
from .pipeline_portrait import PortraitPipeline


@dataclass
class ModelConfig:
    """Architecture of a from-scratch model. ``latent=False`` = pixel mode (RGB 3 + depth 1 channels)."""

    resolution: int = 128
    latent: bool = True
    block_out_channels: tuple[int, ...] = (64, 128, 256)
    layers_per_block: int = 1
    attention_head_dim: int = 8
    cross_attention_dim: int = 128
    context_tokens: int = 1
    down_attention: tuple[bool, ...] = field(default_factory=lambda: (False, True, True))
    vae_block_out_channels: tuple[int, ...] = (32, 64, 128)
    latent_channels: int = 4
    prediction_type: str = "epsilon"
    num_train_timesteps: int = 1000


def build_vae(cfg: ModelConfig) -> AutoencoderKL:
    n = len(cfg.vae_block_out_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=cfg.latent_channels,
        block_out_channels=tuple(cfg.vae_block_out_channels), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        norm_num_groups=min(32, cfg.vae_block_out_channels[0]), sample_size=cfg.resolution,
    )


def build_pipeline(cfg: ModelConfig, vae: AutoencoderKL | None = None, seed: int = 0) -> PortraitPipeline:
    """A randomly initialised pipeline of the given architecture (``vae``: reuse a trained one)."""
    torch.manual_seed(seed)
    if cfg.latent and vae is None:
        vae = build_vae(cfg)
    factor = 2 ** (len(vae.config.block_out_channels) - 1) if cfg.latent else 1
    c_rgb, c_depth = (cfg.latent_channels, cfg.latent_channels) if cfg.latent else (3, 1)
    blocks = tuple(cfg.block_out_channels)
    attn = tuple(cfg.down_attention)
    unet = UNet2DConditionModel(
        sample_size=cfg.resolution // factor, in_channels=c_rgb + c_depth, out_channels=c_rgb + c_depth,
        block_out_channels=blocks, layers_per_block=cfg.layers_per_block,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        cross_attention_dim=cfg.cross_attention_dim, attention_head_dim=cfg.attention_head_dim,
        norm_num_groups=min(32, blocks[0]),
    )
    reference_net = ReferenceNet.from_unet(unet, in_channels=c_rgb)
    scheduler = DDIMScheduler(
        num_train_timesteps=cfg.num_train_timesteps, beta_schedule="scaled_linear", beta_start=0.00085,
        beta_end=0.012, clip_sample=False, prediction_type=cfg.prediction_type, timestep_spacing="trailing",
        set_alpha_to_one=False,
    )
    return PortraitPipeline(
        unet=unet, reference_net=reference_net, scheduler=scheduler, vae=vae if cfg.latent else None,
        context_embedding=LearnedContext(num_tokens=cfg.context_tokens, dim=cfg.cross_attention_dim),
        resolution=cfg.resolution,
    )


def build_from_stable_diffusion(path: str, image_encoder_path: str | None = None) -> PortraitPipeline:
    """A joint pipeline initialised from an SD-1.x folder (``unet/``, ``vae/``, ``scheduler/``).

    The denoiser is the SD UNet widened to RGB + depth (``widen_unet``); the reference network is a copy of
    the original SD UNet. With ``image_encoder_path`` (a ``CLIPVisionModelWithProjection`` folder, as in
    SD image variations) the reference's CLIP embedding is the cross-attention context; otherwise a learned
    context of the UNet's cross-attention width.
    """
    unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae")
    scheduler = DDIMScheduler.from_config(DDPMScheduler.load_config(path, subfolder="scheduler"))
    reference_net = ReferenceNet.from_unet(unet)
    unet = widen_unet(unet)
    image_encoder, context = None, None
    if image_encoder_path is not None:
        from transformers import CLIPVisionModelWithProjection

        image_encoder = CLIPVisionModelWithProjection.from_pretrained(image_encoder_path)
    else:
        context = LearnedContext(num_tokens=1, dim=unet.config.cross_attention_dim)
    return PortraitPipeline(
        unet=unet, reference_net=reference_net, scheduler=scheduler, vae=vae,
        image_encoder=image_encoder, context_embedding=context,
    )
