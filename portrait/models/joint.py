"""The joint RGB + depth diffusion model: one module used by the pipelines and by training alike."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel

from .context import LearnedContext, clip_image_context
from .reference import ReferenceNet, ReferenceState, set_reference_processors

TASKS = ("joint", "depth", "rgb", "holes")  # the jobs of ``JointDiffusion.training_loss``'s ``task_mix``, in order


def known_cells(known: torch.Tensor, factor: int) -> torch.Tensor:
    """Pixel known mask ``[B, 1, H, W]`` (1 = known) -> the representation grid ``[B, 1, H / f, W / f]``: a cell
    is known only if all of its ``f x f`` pixels are (max-pooling of the unknown mask)."""
    return 1 - F.max_pool2d(1 - known, factor)


def vae_encode(vae: AutoencoderKL, x: torch.Tensor) -> torch.Tensor:
    """RGB ``[B, 3, H, W]`` or a depth code ``[B, 1, H, W]`` (replicated to 3 channels), in [-1, 1] -> the
    scaled latent mode ``[B, latent_channels, h, w]``."""
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    z = vae.encode(x.to(vae.dtype)).latent_dist.mode()
    return (z * vae.config.scaling_factor).to(x.dtype)


class JointDiffusion(torch.nn.Module):
    """Denoiser + reference network + context, over a joint RGB + depth representation.

    The representation ``x`` ``[B, c_rgb + c_depth, h, w]`` holds RGB and depth side by side:

    - latent mode (``vae`` given): RGB in [-1, 1] and the depth code (see ``portrait.depth``) replicated to
      3 channels are each encoded by the same frozen VAE, ``c_rgb = c_depth = latent_channels``;
    - pixel mode (no VAE): RGB (3 channels) and the depth code (1 channel) themselves.

    Exactly one of ``image_encoder`` (a ``CLIPVisionModelWithProjection``) and ``context_embedding``
    (:class:`LearnedContext`) provides the cross-attention context.
    """

    def __init__(
        self,
        unet: UNet2DConditionModel,
        reference_net: ReferenceNet,
        vae: AutoencoderKL | None = None,
        image_encoder=None,
        context_embedding: LearnedContext | None = None,
    ):
        super().__init__()
        if (image_encoder is None) == (context_embedding is None):
            raise ValueError("give exactly one of `image_encoder` and `context_embedding`")
        self.unet, self.reference_net, self.vae = unet, reference_net, vae
        self.image_encoder, self.context_embedding = image_encoder, context_embedding
        for frozen in (vae, image_encoder):  # the VAE and the CLIP encoder stay as they were trained
            if frozen is not None:
                frozen.requires_grad_(False)
        set_reference_processors(unet)
        set_reference_processors(reference_net)
        expected = self.rgb_channels + self.depth_channels
        if unet.config.in_channels != expected or unet.config.out_channels != expected:
            raise ValueError(
                f"unet must have {expected} input and output channels for this representation, "
                f"got {unet.config.in_channels} -> {unet.config.out_channels}"
            )
        if reference_net.config.in_channels != self.rgb_channels:
            raise ValueError(f"reference_net must read {self.rgb_channels} channels, got {reference_net.config.in_channels}")

    # --- representation ---------------------------------------------------------------------------------

    @property
    def rgb_channels(self) -> int:
        return self.vae.config.latent_channels if self.vae is not None else 3

    @property
    def depth_channels(self) -> int:
        return self.vae.config.latent_channels if self.vae is not None else 1

    @property
    def scale_factor(self) -> int:
        """Pixels per representation cell along each side."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae is not None else 1

    def encode_rgb(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB ``[B, 3, H, W]`` in [-1, 1] -> ``[B, c_rgb, h, w]``."""
        return vae_encode(self.vae, rgb) if self.vae is not None else rgb

    def encode_depth(self, code: torch.Tensor) -> torch.Tensor:
        """Depth code ``[B, 1, H, W]`` in [-1, 1] -> ``[B, c_depth, h, w]``."""
        return vae_encode(self.vae, code) if self.vae is not None else code

    def encode(self, rgb: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.encode_rgb(rgb), self.encode_depth(code)], dim=1)

    def _vae_decode(self, z: torch.Tensor) -> torch.Tensor:
        sf = self.vae.config.scaling_factor
        return self.vae.decode((z / sf).to(self.vae.dtype)).sample.to(z.dtype)

    def decode_rgb(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, c_rgb, h, w]`` -> RGB ``[B, 3, H, W]``, clamped to [-1, 1]."""
        return (self._vae_decode(z) if self.vae is not None else z).clamp(-1, 1)

    def decode_depth(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, c_depth, h, w]`` -> depth code ``[B, 1, H, W]`` (the mean of the VAE's three channels), in [-1, 1]."""
        return (self._vae_decode(z).mean(dim=1, keepdim=True) if self.vae is not None else z).clamp(-1, 1)

    def decode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, c_rgb + c_depth, h, w]`` -> (RGB ``[B, 3, H, W]``, depth code ``[B, 1, H, W]``), clamped to [-1, 1]."""
        rgb, depth = x.split([self.rgb_channels, self.depth_channels], dim=1)
        return self.decode_rgb(rgb), self.decode_depth(depth)

    # --- conditioning ---------------------------------------------------------------------------------------

    def context(self, reference_rgb: torch.Tensor) -> torch.Tensor:
        """Cross-attention context ``[B, T, D]`` of the reference."""
        if self.context_embedding is not None:
            return self.context_embedding(reference_rgb.shape[0]).to(reference_rgb.dtype)
        return clip_image_context(self.image_encoder, reference_rgb).to(reference_rgb.dtype)

    def drop_context(self, context: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The unconditional context for samples whose ``keep`` is False (a zero CLIP embedding)."""
        if self.context_embedding is not None:
            return context  # a learned context carries no identity: nothing to drop
        return context * keep.to(context.dtype).view(-1, 1, 1)

    def reference_states(self, reference_rgb: torch.Tensor) -> ReferenceState:
        """One reference-network pass on the clean reference ``[B, 3, H, W]``; cache it for all steps."""
        return self.reference_net.reference_states(self.encode_rgb(reference_rgb), self.context(reference_rgb))

    def denoise(
        self,
        x_t: torch.Tensor,
        timestep: torch.Tensor,
        context: torch.Tensor,
        reference: ReferenceState | None = None,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The denoiser's prediction ``[B, C, h, w]`` for ``x_t``; ``reference=None`` = no reference at all."""
        kwargs = {"reference": reference.reader(keep)} if reference is not None else None
        return self.unet(x_t, timestep, context, cross_attention_kwargs=kwargs).sample

    # --- training -------------------------------------------------------------------------------------------

    def training_loss(
        self,
        batch: dict[str, torch.Tensor],
        noise_scheduler,
        reference_dropout: float = 0.1,
        depth_weight: float = 1.0,
        generator: torch.Generator | None = None,
        task_mix: tuple[float, ...] = (1.0, 0.0, 0.0),
    ) -> torch.Tensor:
        """Denoising loss over the sampled cells (RGB and depth) of one batch.

        ``batch``: ``rgb`` ``[B, 3, H, W]`` in [-1, 1], ``depth`` ``[B, 1, H, W]`` depth code in [-1, 1],
        ``reference`` ``[B, 3, H, W]`` in [-1, 1] (another view of the same person), and for the hole task
        ``holes`` ``[B, 1, H, W]`` (1 = a hole, at pixel resolution, also when ``rgb`` and ``depth`` are already
        latents). A fraction ``reference_dropout`` of the samples is trained without the reference (and with
        the unconditional context) so classifier-free guidance on identity works.

        ``task_mix`` (joint, depth from RGB, RGB from depth[, hole fill]; 3 weights = no hole task): the share
        of samples trained for each job. *Joint* samples noise every channel. For the two conditional jobs the
        known modality is given clean (not noised) and only the other one is noised and scored, which is how
        the pipeline then holds known channels (``PortraitPipeline(clean_known=True)``): the conditional jobs
        get their own training signal instead of relying on RePaint-style replacement alone. *Hole fill* (the
        editing engine's job, :mod:`portrait.scene`): the depth is given clean everywhere and the RGB clean
        outside the sample's ``holes``, noised inside them; on the latent grid a cell with any hole pixel is a
        hole (:func:`known_cells`, the pipeline's rule), and the pipeline then holds a partly known modality
        clean too (``PortraitPipeline(clean_partial=True)``).

        Each channel of each sample is scored by its mean error over its noised cells, so a hole sample counts
        as much as an editing sample whatever its holes' size; the loss is the mean over the scored channels
        (depth channels weighted by ``depth_weight``).
        """
        rgb, code, reference = batch["rgb"], batch["depth"], batch["reference"]
        bsz, device = rgb.shape[0], rgb.device
        mix = tuple(float(w) for w in task_mix) + (0.0,) * (len(TASKS) - len(task_mix))
        if len(mix) != len(TASKS):
            raise ValueError(f"task_mix must have 3 or 4 weights {TASKS}, got {tuple(task_mix)}")
        with torch.no_grad():
            x0 = self.encode(rgb, code)  # [B, C, h, w]
        noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
        timesteps = torch.randint(
            0, noise_scheduler.config.num_train_timesteps, (bsz,), generator=generator, device=device
        )
        x_t = noise_scheduler.add_noise(x0, noise, timesteps)

        # which cells are given clean: task 0 none (joint), 1 the RGB (depth estimation), 2 the depth (editing),
        # 3 the depth and the RGB outside the holes (hole fill)
        weights = torch.tensor(mix, dtype=torch.float32, device=device)
        task = torch.multinomial(weights / weights.sum(), bsz, replacement=True, generator=generator)  # [B]
        rgb_given = (task == 1).to(x0.dtype).view(-1, 1, 1, 1)  # [B, 1, 1, 1]
        depth_given = ((task == 2) | (task == 3)).to(x0.dtype).view(-1, 1, 1, 1)
        if mix[3] > 0:
            if "holes" not in batch:
                raise ValueError("the hole task (task_mix[3] > 0) needs `holes` [B, 1, H, W] in the batch")
            holes = batch["holes"].to(device=device, dtype=x0.dtype)
            if holes.shape != (bsz, 1, x0.shape[2] * self.scale_factor, x0.shape[3] * self.scale_factor):
                raise ValueError(f"`holes` must be [B, 1, H, W] at pixel resolution, got {tuple(holes.shape)}")
            outside = known_cells(1 - holes, self.scale_factor)  # [B, 1, h, w]
            rgb_given = torch.where((task == 3).view(-1, 1, 1, 1), outside, rgb_given)  # [B, 1, h or 1, w or 1]
        channel_rgb = (torch.arange(x0.shape[1], device=device) < self.rgb_channels).view(1, -1, 1, 1)  # [1, C, 1, 1]
        clean = torch.where(channel_rgb, rgb_given, depth_given).expand_as(x0) > 0.5  # [B, C, h, w]
        x_t = torch.where(clean, x0, x_t)
        keep = torch.rand(bsz, generator=generator, device=device) >= reference_dropout  # [B]

        context = self.context(reference)  # [B, T, D]
        with torch.no_grad():
            ref_latent = self.encode_rgb(reference)
        states = self.reference_net.reference_states(ref_latent, context)
        pred = self.denoise(x_t, timesteps, self.drop_context(context, keep), states, keep)

        if noise_scheduler.config.prediction_type == "epsilon":
            target = noise
        elif noise_scheduler.config.prediction_type == "v_prediction":
            target = noise_scheduler.get_velocity(x0, noise, timesteps)
        else:
            target = x0
        noised = (~clean).float()  # [B, C, h, w]
        err = F.mse_loss(pred.float(), target.float(), reduction="none") * noised  # [B, C, h, w]: noised cells only
        cells = noised.sum(dim=(2, 3))  # [B, C]
        err = err.sum(dim=(2, 3)) / cells.clamp_min(1.0)  # [B, C]: mean over each channel's noised cells
        weight = torch.where(channel_rgb.view(1, -1), 1.0, depth_weight) * (cells > 0).float()  # [B, C]
        return (err * weight).sum() / weight.sum().clamp_min(1e-8)
