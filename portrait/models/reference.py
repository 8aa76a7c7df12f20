"""Reference network: identity from a reference photo, through self-attention (AnimateAnyone's ReferenceNet).

The reference network is a copy of the denoising UNet that reads the *clean* reference at timestep 0.
Every self-attention layer (``attn1``) of both networks gets a :class:`ReferenceAttnProcessor`:

- in the reference network it *writes*: it records the layer's input hidden states ``[B, L, C]``;
- in the denoiser it *reads*: the recorded states of the same-named layer are appended to the keys and
  values (the queries stay the denoiser's own).

What to read or write travels in ``cross_attention_kwargs={"reference": ReferenceState(...)}``, so the
models hold no per-call state. Without a ``ReferenceState`` the processor is diffusers' stock
``AttnProcessor2_0``, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401  (diffusers' loader finds the base class here)


@dataclass
class ReferenceState:
    """Reference hidden states of one generation, keyed by attention-layer name.

    ``states[name]`` is ``[B_ref, L, C]``. ``keep`` (``[B]`` bool, optional) says which samples of the
    denoiser batch see the reference; the others attend only to themselves (reference dropped: the
    unconditional branch of classifier-free guidance, or reference drop-out in training).
    """

    states: dict[str, torch.Tensor] = field(default_factory=dict)
    writing: bool = False
    keep: torch.Tensor | None = None

    @classmethod
    def writer(cls) -> ReferenceState:
        return cls(writing=True)

    def reader(self, keep: torch.Tensor | None = None) -> ReferenceState:
        return ReferenceState(states=self.states, writing=False, keep=keep)


class ReferenceAttnProcessor(AttnProcessor2_0):
    """``AttnProcessor2_0`` whose self-attention can also attend to a reference network's hidden states."""

    def __init__(self, name: str, self_attention: bool):
        super().__init__()
        self.name = name
        self.self_attention = self_attention

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        reference: ReferenceState | None = None,
    ) -> torch.Tensor:
        if reference is None or not self.self_attention:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if reference.writing:
            reference.states[self.name] = hidden_states
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)

        ref = reference.states.get(self.name)
        if ref is None:
            raise KeyError(f"no reference hidden states for attention layer {self.name!r}")
        batch, length, _ = hidden_states.shape  # [B, L, C]
        if ref.shape[0] != batch:  # reference batch tiles the denoiser batch (CFG halves, ensembles)
            ref = ref.repeat(batch // ref.shape[0], 1, 1)
        context = torch.cat([hidden_states, ref.to(hidden_states.dtype)], dim=1)  # [B, L + L_ref, C]

        if reference.keep is not None and not bool(reference.keep.all()):
            # additive mask [B, 1, L + L_ref]: samples whose reference is dropped ignore the reference keys
            mask = torch.zeros(batch, 1, context.shape[1], dtype=hidden_states.dtype, device=hidden_states.device)
            dropped = ~reference.keep.to(hidden_states.device)
            mask[dropped, :, length:] = torch.finfo(hidden_states.dtype).min
            attention_mask = mask if attention_mask is None else attention_mask + mask
        return super().__call__(attn, hidden_states, context, attention_mask, temb)


def set_reference_processors(unet: UNet2DConditionModel) -> None:
    """Give every attention layer of ``unet`` a :class:`ReferenceAttnProcessor` (self-attention = ``attn1``).

    Idempotent: a UNet whose processors are already reference processors is left as it is.
    """
    if all(isinstance(p, ReferenceAttnProcessor) for p in unet.attn_processors.values()):
        return
    unet.set_attn_processor(
        {name: ReferenceAttnProcessor(name, self_attention=".attn1." in name) for name in unet.attn_processors}
    )


class ReferenceNet(UNet2DConditionModel):
    """A UNet that encodes the clean reference latent into per-layer self-attention hidden states.

    Same architecture and config as the denoiser it was built from (except its input channels: it reads
    the RGB representation only). Its output is never used, only the states its layers record.
    """

    @classmethod
    def from_unet(cls, unet: UNet2DConditionModel, in_channels: int | None = None) -> ReferenceNet:
        """Copy ``unet``'s weights into a new reference network reading ``in_channels`` channels.

        With ``in_channels`` equal to half of a widened UNet's input (see ``widen_unet``), ``conv_in`` is
        un-widened (the RGB half of the weights, times 2), so a reference built from a widened SD UNet
        sees RGB exactly as the original SD UNet did. Any other mismatch re-initialises ``conv_in``.
        """
        config = dict(unet.config)
        unet_in = config["in_channels"]
        in_channels = unet_in if in_channels is None else in_channels
        config["in_channels"] = in_channels
        net = cls.from_config(config)
        state = {k: v for k, v in unet.state_dict().items() if not k.startswith("conv_in.") or in_channels == unet_in}
        missing, unexpected = net.load_state_dict(state, strict=False)
        assert not unexpected and all(k.startswith("conv_in.") for k in missing), (missing, unexpected)
        if in_channels != unet_in:
            with torch.no_grad():
                net.conv_in.bias.copy_(unet.conv_in.bias)
                if unet_in == 2 * in_channels:
                    net.conv_in.weight.copy_(unet.conv_in.weight[:, :in_channels] * 2.0)
        if (net.device, net.dtype) != (unet.device, unet.dtype):
            net = net.to(unet.device, unet.dtype)
        return net

    def reference_states(self, latent: torch.Tensor, encoder_hidden_states: torch.Tensor) -> ReferenceState:
        """Run once on the clean reference ``latent`` ``[B, c, h, w]`` at timestep 0; return its states."""
        set_reference_processors(self)
        state = ReferenceState.writer()
        timestep = torch.zeros(latent.shape[0], dtype=torch.long, device=latent.device)
        self(latent, timestep, encoder_hidden_states, cross_attention_kwargs={"reference": state})
        return state
