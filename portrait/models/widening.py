"""Channel expansion: turn an RGB denoiser into a joint RGB + depth denoiser."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel


@torch.no_grad()
def widen_unet(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """Widen ``unet`` in place so its input and output carry RGB and depth side by side.

    ``conv_in`` ``[C, c, 3, 3]`` becomes ``[C, 2c, 3, 3]``: its weights are repeated for the depth channels
    and both halves scaled by 0.5, so an input whose RGB and depth halves are equal gives the original
    output (Marigold's initialisation). ``conv_out`` ``[c, C, 3, 3]`` becomes ``[2c, C, 3, 3]`` by repetition.
    The new channel counts are recorded with ``register_to_config`` so ``save_pretrained`` keeps them.
    """
    c_in, c_out = unet.config.in_channels, unet.config.out_channels
    old_in, old_out = unet.conv_in, unet.conv_out

    new_in = torch.nn.Conv2d(
        2 * c_in, old_in.out_channels, old_in.kernel_size, old_in.stride, old_in.padding,
        bias=old_in.bias is not None,
    ).to(old_in.weight.device, old_in.weight.dtype)
    new_in.weight.copy_(torch.cat([old_in.weight, old_in.weight], dim=1) * 0.5)
    if old_in.bias is not None:
        new_in.bias.copy_(old_in.bias)

    new_out = torch.nn.Conv2d(
        old_out.in_channels, 2 * c_out, old_out.kernel_size, old_out.stride, old_out.padding,
        bias=old_out.bias is not None,
    ).to(old_out.weight.device, old_out.weight.dtype)
    new_out.weight.copy_(torch.cat([old_out.weight, old_out.weight], dim=0))
    if old_out.bias is not None:
        new_out.bias.copy_(torch.cat([old_out.bias, old_out.bias]))

    unet.conv_in, unet.conv_out = new_in, new_out
    unet.register_to_config(in_channels=2 * c_in, out_channels=2 * c_out)
    return unet
