"""One diffusers pipeline, four jobs: joint generation, depth estimation, depth-driven editing and inpainting.

All four sample the same joint RGB + depth representation (see ``JointDiffusion``) in one sampler; they
differ only in which pixels of which modality are *known*: nothing (generation), all of the RGB (depth
estimation), the depth inside a mask (editing), or any per-pixel mix (inpainting, e.g. hole filling: RGB
known outside the holes, depth known everywhere). Known parts are blended in at every step (Blended Latent
Diffusion / RePaint); see ``PortraitPipeline._sample`` for how they are held.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ..compositing import composite, prefill
from ..depth import blend_depth, code_to_depth, complete_depth, depth_to_code, ensemble_depths, resize_depth
from ..models import JointDiffusion, LearnedContext, ReferenceNet, ReferenceState
from ..models.joint import known_cells  # the one pixel -> cell rule, shared with training

FEATHER, RING = 1 / 64, 1 / 16  # inpainting's composite: feather and colour-match ring, x the resolution


@dataclass
class PortraitPipelineOutput(BaseOutput):
    """Output of every job of :class:`PortraitPipeline`, at the pipeline's working resolution ``R``.

    Args:
        images: ``N`` RGB ``PIL.Image`` of size ``R x R`` (for depth estimation: the input, unchanged).
        depth: ``[N, R, R]`` float32 relative depth in [0, 1] over the face (larger = farther), NaN outside
            ``mask``.
        mask: ``[N, R, R]`` bool, where the depth is defined (the face).
        uncertainty: ``[N, R, R]`` float32 spread of the ensemble members, in the units of ``depth``
            (depth estimation only, else ``None``).
    """

    images: list[PIL.Image.Image]
    depth: np.ndarray
    mask: np.ndarray
    uncertainty: np.ndarray | None = None


@dataclass
class ReferenceFeatures:
    """What the model takes from a reference image, computed once and reusable across calls and steps.

    Args:
        context: ``[1, T, D]`` cross-attention context (CLIP image embedding or the learned context).
        states: the reference network's self-attention hidden states, ``[1, L, C]`` per layer.
    """

    context: torch.Tensor
    states: ReferenceState


StepCallback = Callable[[int, int], None]  # (steps done, total steps)


class PortraitPipeline(DiffusionPipeline):
    """Joint RGB + depth portrait diffusion with a reference network for identity.

    Components: ``unet`` (the channel-expanded denoiser), ``reference_net``, ``scheduler``, and optionally
    ``vae`` (latent mode; without it the model works on pixels), and exactly one of ``image_encoder`` (CLIP
    image embedding of the reference as cross-attention context) or ``context_embedding`` (learned).

    How known parts are held while sampling follows how the model was trained (see
    ``JointDiffusion.training_loss`` and :meth:`holds_clean`): ``clean_known`` for a modality known
    *everywhere*, ``clean_partial`` for one known only *in part*. False (RePaint): replaced at every step by
    its clean value noised to the current timestep. True: given clean at every step: ``clean_known`` for a
    model trained with conditional jobs in its task mix, ``clean_partial`` for one trained with the hole task
    (RGB given clean outside holes).
    """

    _optional_components = ["vae", "image_encoder", "context_embedding"]

    def __init__(
        self,
        unet: UNet2DConditionModel,
        reference_net: ReferenceNet,
        scheduler: DDIMScheduler,
        vae: AutoencoderKL | None = None,
        image_encoder=None,
        context_embedding: LearnedContext | None = None,
        resolution: int | None = None,
        clean_known: bool = False,
        clean_partial: bool = False,
    ):
        super().__init__()
        self.register_modules(
            unet=unet, reference_net=reference_net, scheduler=scheduler, vae=vae,
            image_encoder=image_encoder, context_embedding=context_embedding,
        )
        if resolution is None:
            resolution = unet.config.sample_size * self.model.scale_factor
        self.register_to_config(resolution=int(resolution), clean_known=bool(clean_known),
                                clean_partial=bool(clean_partial))

    @property
    def model(self) -> JointDiffusion:
        """The components as one :class:`JointDiffusion` (a view: no weights are copied), built once and again
        only when a component is replaced."""
        parts = (self.unet, self.reference_net, self.vae, self.image_encoder, self.context_embedding)
        cached = self.__dict__.get("_joint")
        if cached is None or any(a is not b for a, b in zip(cached[0], parts)):
            cached = self.__dict__["_joint"] = (parts, JointDiffusion(*parts))
        return cached[1]

    @property
    def resolution(self) -> int:
        """Working resolution in pixels (square)."""
        return self.config.resolution

    def holds_clean(self, everywhere: bool, modality: str = "rgb") -> bool:
        """Whether a known modality (``"rgb"`` or ``"depth"``) is given clean at every step while sampling (else
        re-noised to each step's timestep, RePaint): known ``everywhere``, if the config's ``clean_known``; RGB
        known only in part, if its ``clean_partial`` (the model learned half-clean RGB: the hole task; it never
        saw half-clean depth). The one place of this rule."""
        if everywhere:
            return bool(self.config.clean_known)
        return modality == "rgb" and bool(self.config.get("clean_partial", False))

    # --- input checking and conversion ----------------------------------------------------------------------

    def check_inputs(
        self,
        image=None,
        image_name: str = "image",
        num_inference_steps: int = 20,
        guidance_scale: float = 1.0,
        strength: float = 1.0,
        count: int = 1,
        count_name: str = "num_images",
        target_depth: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        init_image=None,
        rgb=None,
        rgb_known: np.ndarray | None = None,
        depth: np.ndarray | None = None,
        depth_known: np.ndarray | None = None,
    ) -> None:
        """Raise ``ValueError`` naming the argument for anything the pipeline cannot use."""
        if isinstance(rgb, np.ndarray):
            if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
                raise ValueError(f"`rgb` must be a PIL.Image or uint8 [H, W, 3] array, got {rgb.dtype} {rgb.shape}")
            rgb = PIL.Image.fromarray(rgb)
        for name, img in ((image_name, image), ("init_image", init_image), ("rgb", rgb)):
            if img is None:
                continue
            if not isinstance(img, PIL.Image.Image):
                raise ValueError(f"`{name}` must be a PIL.Image, got {type(img).__name__}")
            if img.mode != "RGB":
                raise ValueError(f"`{name}` must be an RGB image, got mode {img.mode!r}; convert it with .convert('RGB')")
            if img.width != img.height:
                raise ValueError(
                    f"`{name}` must be a square face crop, got {img.width}x{img.height}; "
                    "crop it with portrait.face.align_face first"
                )
            if img.width < 8:
                raise ValueError(f"`{name}` is {img.width}x{img.height}; at least 8x8 pixels are needed")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be an integer >= 1, got {num_inference_steps!r}")
        if not np.isfinite(guidance_scale) or guidance_scale < 0:
            raise ValueError(f"`guidance_scale` must be >= 0, got {guidance_scale!r}")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"`strength` must be in [0, 1], got {strength!r}")
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"`{count_name}` must be an integer >= 1, got {count!r}")
        for name, d in (("target_depth", target_depth), ("depth", depth)):
            if d is None:
                continue
            d = np.asarray(d)
            if d.ndim != 2 or d.shape[0] != d.shape[1]:
                raise ValueError(f"`{name}` must be a square [H, W] array, got shape {d.shape}")
            if not np.isfinite(d).any():
                raise ValueError(f"`{name}` has no finite value: nothing is known")
        if rgb is not None and depth is not None and np.shape(depth) != (rgb.height, rgb.width):
            raise ValueError(f"`depth` has shape {np.shape(depth)} but `rgb` is {rgb.height}x{rgb.width}")
        # each known mask: 2-D, over the pixels of what it masks
        for name, known, of, data in (
            ("mask", mask, "target_depth", target_depth), ("rgb_known", rgb_known, "rgb", rgb),
            ("depth_known", depth_known, "depth", depth),
        ):
            if known is None:
                continue
            if data is None:
                raise ValueError(f"`{name}` was given without `{of}`")
            shape = (data.height, data.width) if isinstance(data, PIL.Image.Image) else np.shape(data)
            if np.ndim(known) != 2:
                raise ValueError(f"`{name}` must be a 2-D [H, W] mask, got shape {np.shape(known)}")
            if np.shape(known) != shape:
                raise ValueError(f"`{name}` has shape {np.shape(known)} but `{of}` has shape {shape}")

    def _at_resolution(self, image: PIL.Image.Image) -> PIL.Image.Image:
        """``image`` resized to ``R x R`` (Lanczos), unchanged if it is already."""
        r = self.resolution
        return image if image.size == (r, r) else image.resize((r, r), PIL.Image.Resampling.LANCZOS)

    def _image_tensor(self, image: PIL.Image.Image) -> torch.Tensor:
        """PIL RGB -> ``[1, 3, R, R]`` in [-1, 1] on the pipeline's device."""
        x = np.asarray(self._at_resolution(image), dtype=np.float32) / 127.5 - 1.0
        return torch.from_numpy(x).permute(2, 0, 1)[None].to(self.device, self.unet.dtype)

    def _depth_tensor(self, depth: np.ndarray, mask: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Relative depth ``[H, W]`` + where it is known (default: where finite) -> depth code ``[1, 1, R, R]`` and
        known mask ``[1, 1, R, R]`` (float; see :meth:`_resize_known`). A NaN where the depth is known is known
        to be *no head*: the background code."""
        depth = np.asarray(depth, dtype=np.float32)
        mask = np.isfinite(depth) if mask is None else np.asarray(mask, dtype=bool)
        code = torch.from_numpy(depth_to_code(depth, mask & np.isfinite(depth)))[None, None]
        r = self.resolution
        if code.shape[-1] != r:
            code = F.interpolate(code, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
            mask = self._resize_known(mask)
            code = torch.where(torch.from_numpy(mask), code, torch.ones_like(code))
        m = torch.from_numpy(mask.astype(np.float32))[None, None]
        return code.to(self.device, self.unet.dtype), m.to(self.device, self.unet.dtype)

    @staticmethod
    def _to_pil(rgb: torch.Tensor) -> list[PIL.Image.Image]:
        arr = ((rgb.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        return [PIL.Image.fromarray(a) for a in arr]

    # --- the sampler shared by all jobs --------------------------------------------------------------------

    @torch.no_grad()
    def encode_reference(self, reference: PIL.Image.Image) -> ReferenceFeatures:
        """Run the reference network once on ``reference``; pass the result to any job as ``reference_features``
        to reuse it (e.g. once per uploaded photo, for every slider move)."""
        self.check_inputs(reference, "reference")
        ref = self._image_tensor(reference)  # [1, 3, R, R]
        model = self.model
        return ReferenceFeatures(context=model.context(ref), states=model.reference_states(ref))

    def _features(self, image: PIL.Image.Image, features: ReferenceFeatures | None) -> ReferenceFeatures:
        return features if features is not None else self.encode_reference(image)

    @torch.no_grad()
    def _sample(
        self,
        reference: ReferenceFeatures,
        count: int,
        num_inference_steps: int,
        guidance_scale: float,
        generator: torch.Generator | None,
        rgb: torch.Tensor | None = None,
        rgb_known: torch.Tensor | None = None,
        depth: torch.Tensor | None = None,
        depth_known: torch.Tensor | None = None,
        init: tuple[torch.Tensor, torch.Tensor] | None = None,
        strength: float = 1.0,
        callback: StepCallback | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``count`` joint representations; return (RGB ``[N, 3, R, R]``, depth code ``[N, 1, R, R]``).

        The one sampler of every job. ``reference``: identity (the reference network's output, computed once).
        Known parts, per modality and per pixel: ``rgb`` ``[1, 3, R, R]`` in [-1, 1] with ``rgb_known``
        ``[1, 1, R, R]`` (1 = known, 0 = sampled; ``None`` = known everywhere), ``depth`` code ``[1, 1, R, R]``
        with ``depth_known`` likewise; a modality not given is sampled everywhere. In latent mode a pixel mask
        goes to the latent grid by :func:`known_cells` (a cell with any unknown pixel is unknown). After every
        step the known part is blended in, ``x = known * target_t + (1 - known) * x`` (Blended Latent
        Diffusion / RePaint), with the target held by this rule:

        - its clean value if the model was trained so (:meth:`holds_clean`: ``clean_known`` for a modality
          known everywhere, ``clean_partial`` for RGB known only in part; see ``JointDiffusion.training_loss``),
          else its clean value noised to the sample's timestep (``scheduler.add_noise``, fresh noise every step);
        - after the last step: the clean value.

        ``init`` (RGB, depth code), each ``[1, C, R, R]``: start from this pre-fill noised to ``strength``
        (SDEdit, skipping the first ``1 - strength`` of the steps); ``strength`` 1 = from pure noise.
        """
        model = self.model
        # a scheduler of this call's own: set_timesteps changes its state, and calls may run at the same time
        scheduler = type(self.scheduler).from_config(self.scheduler.config)
        n, f = count, model.scale_factor
        shape = (n, model.rgb_channels + model.depth_channels, self.resolution // f, self.resolution // f)
        do_cfg = guidance_scale > 1.0

        # 1. Reference network: its states from one pass on the clean reference serve every step  [1, L, C]
        context, states = reference.context, reference.states  # [1, T, D]
        if do_cfg:  # batch = [unconditional (reference dropped) | conditional]
            keep = torch.tensor([False] * n + [True] * n, device=self.device)
            context = model.drop_context(context.repeat(2 * n, 1, 1), keep)
        else:
            keep = None
            context = context.repeat(n, 1, 1)

        # 2. Timesteps (SDEdit: skip the first 1 - strength of them)
        scheduler.set_timesteps(num_inference_steps, device=self.device)
        timesteps = scheduler.timesteps
        if init is not None and strength < 1.0:
            skip = min(int(round(num_inference_steps * (1.0 - strength))), num_inference_steps - 1)
            timesteps = timesteps[skip:]
        else:
            init = None

        # 3. Known parts on the representation grid: x0_known [1, C, h, w], known [1, C, h, w] in {0, 1},
        #    noised [C]: the channels whose target is re-noised to each step's timestep
        encoded: dict[int, torch.Tensor] = {}  # each given tensor through the VAE once (known part and init alike)

        def encode(value: torch.Tensor, encoder) -> torch.Tensor:
            if id(value) not in encoded:
                encoded[id(value)] = encoder(value)
            return encoded[id(value)]

        known, x0_known, everywhere = None, None, {}
        if rgb is not None or depth is not None:
            x0_known = torch.zeros((1,) + shape[1:], device=self.device, dtype=self.unet.dtype)
            known = torch.zeros_like(x0_known)
            noised = torch.zeros(shape[1], dtype=torch.bool, device=self.device)
            c = model.rgb_channels
            for name, value, mask, encoder, channels in (
                ("rgb", rgb, rgb_known, model.encode_rgb, slice(None, c)),
                ("depth", depth, depth_known, model.encode_depth, slice(c, None)),
            ):
                if value is None:
                    continue
                cells = known_cells(mask, f) if mask is not None else 1.0  # [1, 1, h, w]
                everywhere[name] = mask is None or bool((cells == 1).all())
                x0_known[:, channels] = encode(value, encoder)
                known[:, channels] = cells
                noised[channels] = not self.holds_clean(everywhere[name], name)

        def impose_known(x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
            if known is None:
                return x
            target = x0_known.expand(n, -1, -1, -1)
            if t is not None and noised.any():  # the known value noised to t, fresh noise
                noise = randn_tensor(x.shape, generator=generator, device=self.device, dtype=x.dtype)
                noisy = scheduler.add_noise(target, noise, t.expand(n))
                target = torch.where(noised.view(1, -1, 1, 1), noisy, target)
            return known * target + (1 - known) * x

        # 4. Initial sample  [N, C, h, w]
        noise = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        if init is not None:
            x0_init = torch.cat([encode(init[0], model.encode_rgb), encode(init[1], model.encode_depth)], dim=1)
            x0_init = x0_init.expand(n, -1, -1, -1)
            x = scheduler.add_noise(x0_init, noise, timesteps[:1].expand(n))
        else:
            x = noise * scheduler.init_noise_sigma
        x = impose_known(x, timesteps[0])

        # 5. Denoising loop
        total = len(timesteps)
        for i, t in enumerate(self.progress_bar(timesteps)):
            x_in = torch.cat([x, x]) if do_cfg else x
            x_in = scheduler.scale_model_input(x_in, t)
            pred = model.denoise(x_in, t.expand(x_in.shape[0]), context, states, keep)  # [N or 2N, C, h, w]
            if do_cfg:
                uncond, cond = pred.chunk(2)
                pred = uncond + guidance_scale * (cond - uncond)
            x = scheduler.step(pred, t, x, generator=generator).prev_sample
            x = impose_known(x, timesteps[i + 1] if i + 1 < total else None)
            if callback is not None:
                callback(i + 1, total)

        # 6. Decode  [N, 3, R, R], [N, 1, R, R]; a modality known everywhere is its given value
        z_rgb, z_depth = x.split([model.rgb_channels, model.depth_channels], dim=1)
        out_rgb = rgb.expand(n, -1, -1, -1) if everywhere.get("rgb") else model.decode_rgb(z_rgb)
        out_depth = depth.expand(n, -1, -1, -1) if everywhere.get("depth") else model.decode_depth(z_depth)
        return out_rgb, out_depth

    # --- the four jobs: one sampler, different known parts -------------------------------------------------

    def generate(
        self,
        reference: PIL.Image.Image,
        num_images: int = 1,
        num_inference_steps: int = 20,
        guidance_scale: float = 2.0,
        generator: torch.Generator | None = None,
        callback: StepCallback | None = None,
        reference_features: ReferenceFeatures | None = None,
    ) -> PortraitPipelineOutput:
        """Joint generation: new portraits of the reference's person, with their depth.

        ``reference_features`` (from :meth:`encode_reference`) skips the reference network's pass; every job
        takes it.
        """
        # 1. Check inputs
        self.check_inputs(reference, "reference", num_inference_steps, guidance_scale, count=num_images)
        # 2. Sample all channels from noise: nothing known
        features = self._features(reference, reference_features)
        return self._inpaint(reference, features, num_images, num_inference_steps, guidance_scale, generator, callback)

    def estimate_depth(
        self,
        image: PIL.Image.Image,
        ensemble_size: int = 1,
        num_inference_steps: int = 20,
        mask: np.ndarray | None = None,
        depth_prior: np.ndarray | None = None,
        prior_strength: float = 0.6,
        prior_weight: float = 0.5,
        guidance_scale: float = 1.0,
        generator: torch.Generator | None = None,
        callback: StepCallback | None = None,
        reference_features: ReferenceFeatures | None = None,
    ) -> PortraitPipelineOutput:
        """Facial depth of ``image`` by channel-wise inpainting (RGB known, depth sampled).

        ``ensemble_size`` samples are aligned by least-squares scale and shift, merged by their median, and
        their spread is the uncertainty. ``mask`` ``[H, W]`` (optional) restricts the result to a known face
        region; otherwise the model's own depth code says where the face is. ``depth_prior`` ``[H, W]``
        (optional, e.g. the face-mesh depth) starts the depth channels from this depth noised to
        ``prior_strength`` instead of pure noise (SDEdit). A prior that covers only part of the face (a face
        mesh has no hair, ears or neck) is first completed by one sample from pure noise, aligned to it. The
        result is then averaged with the prior where the prior exists, by ``prior_weight`` (0 = the model's
        depth alone; see :func:`portrait.depth.blend_depth`).
        """
        # 1. Check inputs
        self.check_inputs(image, "image", num_inference_steps, guidance_scale, prior_strength, ensemble_size, "ensemble_size")
        if mask is not None and np.shape(mask)[:2] != (image.height, image.width):
            raise ValueError(f"`mask` has shape {np.shape(mask)} but `image` is {image.height}x{image.width}")
        if not 0.0 <= prior_weight <= 1.0:
            raise ValueError(f"`prior_weight` must be in [0, 1], got {prior_weight!r}")
        prior = None
        if depth_prior is not None:
            self.check_inputs(target_depth=depth_prior)
            prior = self._resize_depth(depth_prior)  # [R, R], NaN where unknown
        # 2. Sample depth with the RGB held to the image
        rgb = self._image_tensor(image)  # [1, 3, R, R]
        features = self._features(image, reference_features)
        init = None
        if prior is not None:
            init = (rgb, self._prior_code(prior, mask, features, rgb, num_inference_steps, guidance_scale, generator))
        _, code = self._sample(
            features, ensemble_size, num_inference_steps, guidance_scale, generator,
            rgb=rgb, init=init, strength=prior_strength if init else 1.0, callback=callback,
        )
        # 3. Face mask: the given one, else the members' majority
        code = code[:, 0].float().cpu().numpy()  # [E, R, R]
        if mask is not None:
            face = self._resize_mask(mask)
        else:
            face = np.mean([code_to_depth(c)[1] for c in code], axis=0) >= 0.5
        # 4. Ensemble: align members by scale and shift, median, spread
        members = np.stack([code_to_depth(c, np.ones_like(face))[0] for c in code])  # [E, R, R]
        merged = ensemble_depths(members, face)
        # 5. Where the prior exists, the average of the two
        depth = merged.depth if prior is None else blend_depth(merged.depth, np.where(face, prior, np.nan), prior_weight)
        return PortraitPipelineOutput(
            images=[self._at_resolution(image)],
            depth=depth[None], mask=face[None], uncertainty=merged.uncertainty[None],
        )

    def _prior_code(self, prior, mask, features, rgb, steps, guidance_scale, generator) -> torch.Tensor:
        """The depth code ``[1, 1, R, R]`` of ``prior`` ``[R, R]``; its gaps inside the face first filled by one sample."""
        held = np.isfinite(prior)
        face = self._resize_mask(mask) if mask is not None else None
        if face is None or not held[face].all():
            _, first = self._sample(features, 1, steps, guidance_scale, generator, rgb=rgb)
            estimate, own = code_to_depth(first[0, 0].float().cpu().numpy(), face)
            prior = complete_depth(prior, estimate, own | held)
        return self._depth_tensor(prior, None)[0]

    def edit(
        self,
        reference: PIL.Image.Image,
        target_depth: np.ndarray,
        mask: np.ndarray | None = None,
        strength: float = 1.0,
        init_image: PIL.Image.Image | None = None,
        num_images: int = 1,
        num_inference_steps: int = 20,
        guidance_scale: float = 2.0,
        generator: torch.Generator | None = None,
        callback: StepCallback | None = None,
        reference_features: ReferenceFeatures | None = None,
    ) -> PortraitPipelineOutput:
        """Depth-driven editing: the reference's person rendered to match ``target_depth`` inside ``mask``.

        ``target_depth`` ``[H, W]``: relative depth (larger = farther), NaN where free. ``mask`` (default:
        where ``target_depth`` is finite) is where the depth is held; outside it RGB and depth are free.
        ``strength`` < 1 starts from ``init_image`` (default: the reference) and the target depth, noised to
        that level (SDEdit); 1.0 generates from pure noise.
        """
        # 1. Check inputs
        self.check_inputs(
            reference, "reference", num_inference_steps, guidance_scale, strength, num_images,
            target_depth=target_depth, mask=mask, init_image=init_image,
        )
        # 2. Sample RGB with the depth known inside the mask
        features = self._features(reference, reference_features)
        return self._inpaint(
            reference, features, num_images, num_inference_steps, guidance_scale, generator, callback,
            depth=target_depth, depth_known=mask, init_image=init_image, strength=strength,
        )

    def inpaint(
        self,
        reference: PIL.Image.Image,
        rgb: PIL.Image.Image | np.ndarray | None = None,
        rgb_known: np.ndarray | None = None,
        depth: np.ndarray | None = None,
        depth_known: np.ndarray | None = None,
        init_image: PIL.Image.Image | None = None,
        strength: float = 1.0,
        num_images: int = 1,
        num_inference_steps: int = 20,
        guidance_scale: float = 2.0,
        generator: torch.Generator | None = None,
        callback: StepCallback | None = None,
        reference_features: ReferenceFeatures | None = None,
    ) -> PortraitPipelineOutput:
        """Inpainting: the reference's person sampled where RGB or depth is unknown, held where it is known.

        ``rgb`` (PIL RGB or uint8 ``[H, W, 3]``, square) with ``rgb_known`` ``[H, W]`` bool (default: known
        everywhere); ``depth`` ``[H, W]`` relative depth (larger = farther) with ``depth_known`` ``[H, W]`` bool
        (default: where finite; a NaN inside ``depth_known`` is known to be background, no head); either may be
        left out (sampled everywhere). At the working resolution a pixel is known only if all the input pixels
        under it are. ``init_image`` pre-fills the
        holes (default: ``rgb``'s known pixels continued into them by ``cv2.inpaint``; without ``rgb``, the
        reference); with ``strength`` < 1 sampling starts from the pre-fill and the known depth noised to that
        level (SDEdit), 1.0 = from pure noise.

        The output comes back at the working resolution ``R``: known RGB pixels exactly as given (composited in
        pixel space: generated pixels fill the holes, colour-matched to a ring of known pixels around each hole
        and feathered into it, see :func:`portrait.compositing.composite`), and the known depth exactly as given
        in the output's normalisation (``depth_to_code`` then ``code_to_depth``). E.g. filling the holes a 3D
        edit opened in a photo, whose warped depth is known everywhere::

            out = pipe.inpaint(face_crop, rgb=warped, rgb_known=~holes, depth=warped_depth, strength=0.5)
            out.images[0]  # warped outside the holes, bit for bit
        """
        # 1. Check inputs
        self.check_inputs(
            reference, "reference", num_inference_steps, guidance_scale, strength, num_images,
            init_image=init_image, rgb=rgb, rgb_known=rgb_known, depth=depth, depth_known=depth_known,
        )
        if isinstance(rgb, np.ndarray):
            rgb = PIL.Image.fromarray(rgb)
        # 2. Sample with the given parts known, put them back exactly
        features = self._features(reference, reference_features)
        return self._inpaint(
            reference, features, num_images, num_inference_steps, guidance_scale, generator, callback,
            rgb=rgb, rgb_known=rgb_known, depth=depth, depth_known=depth_known, init_image=init_image,
            strength=strength,
        )

    def _inpaint(
        self,
        reference: PIL.Image.Image,
        features: ReferenceFeatures,
        count: int,
        num_inference_steps: int,
        guidance_scale: float,
        generator: torch.Generator | None,
        callback: StepCallback | None,
        rgb: PIL.Image.Image | None = None,
        rgb_known: np.ndarray | None = None,
        depth: np.ndarray | None = None,
        depth_known: np.ndarray | None = None,
        init_image: PIL.Image.Image | None = None,
        strength: float = 1.0,
    ) -> PortraitPipelineOutput:
        """Generation, editing and inpainting (checked inputs as :meth:`inpaint` takes them): sample with the
        given parts known, then put them back exactly."""
        r = self.resolution
        # 1. Known RGB at the working resolution: the image [R, R, 3] uint8, its holes [R, R] bool; as tensors
        #    [1, 3, R, R] with the holes pre-filled (nothing unknown is encoded) and [1, 1, R, R]
        rgb_t = known_t = None
        if rgb is not None:
            known_rgb = np.asarray(self._at_resolution(rgb))
            hole = np.zeros((r, r), bool) if rgb_known is None else ~self._resize_known(rgb_known)
            if init_image is not None:
                fill = np.asarray(self._at_resolution(init_image))
            else:
                fill = prefill(known_rgb, hole)
            rgb_t = self._image_tensor(PIL.Image.fromarray(np.where(hole[..., None], fill, known_rgb)))
            known_t = None if rgb_known is None else torch.from_numpy(~hole)[None, None].to(rgb_t)
        # 2. Known depth: code and where it is known  [1, 1, R, R]
        code, held = self._depth_tensor(depth, depth_known) if depth is not None else (None, None)
        # 3. SDEdit start: the pre-filled RGB (else the init image, else the reference), the depth code (else 0)
        init = None
        if strength < 1.0:
            if rgb_t is not None:
                init_rgb = rgb_t
            else:
                init_rgb = self._image_tensor(reference if init_image is None else init_image)
            init = (init_rgb, code if code is not None else torch.zeros_like(init_rgb[:, :1]))
        # 4. Sample the rest  [N, 3, R, R], [N, 1, R, R]
        out_rgb, out_code = self._sample(
            features, count, num_inference_steps, guidance_scale, generator, rgb=rgb_t, rgb_known=known_t,
            depth=code, depth_known=held, init=init, strength=strength, callback=callback,
        )
        # 5. The known parts back exactly: RGB composited in pixel space, the depth code where known
        images = self._to_pil(out_rgb)
        if rgb is not None:
            pasted = (composite(known_rgb, np.asarray(im), hole, FEATHER * r, RING * r) for im in images)
            images = [PIL.Image.fromarray(a) for a in pasted]
        if code is not None:
            out_code = torch.where(held > 0, code, out_code)
        # 6. Depth code -> relative depth + mask
        depths, masks = zip(*(code_to_depth(c) for c in out_code[:, 0].float().cpu().numpy()))
        return PortraitPipelineOutput(images=images, depth=np.stack(depths), mask=np.stack(masks))

    __call__ = generate

    # --- outputs --------------------------------------------------------------------------------------------

    def _resize_depth(self, depth: np.ndarray) -> np.ndarray:
        """Relative depth ``[H, W]`` (NaN = unknown) at the working resolution; NaN where under half is known."""
        depth = np.asarray(depth, dtype=np.float32)
        return depth if depth.shape == (self.resolution,) * 2 else resize_depth(depth, self.resolution)

    def _resize_mask(self, mask: np.ndarray) -> np.ndarray:
        """``[H, W]`` bool -> ``[R, R]`` bool: true where at least half of the pixels under it are."""
        m = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]
        return (F.interpolate(m, size=(self.resolution,) * 2, mode="area")[0, 0] >= 0.5).numpy()

    def _resize_known(self, known: np.ndarray) -> np.ndarray:
        """Known mask ``[H, W]`` bool -> ``[R, R]`` bool: known only where every pixel under it is known."""
        unknown = torch.from_numpy(~np.asarray(known, dtype=bool))[None, None].float()
        return (F.interpolate(unknown, size=(self.resolution,) * 2, mode="area")[0, 0] == 0).numpy()
