"""Cross-attention context for the denoiser: a CLIP image embedding of the reference, or a learned one."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class LearnedContext(ModelMixin, ConfigMixin):
    """A learned cross-attention context ``[num_tokens, dim]`` for checkpoints without an image encoder."""

    @register_to_config
    def __init__(self, num_tokens: int = 1, dim: int = 768):
        super().__init__()
        self.tokens = torch.nn.Parameter(torch.randn(num_tokens, dim) * 0.02)

    def forward(self, batch_size: int) -> torch.Tensor:
        return self.tokens.unsqueeze(0).expand(batch_size, -1, -1)  # [B, T, D]


def clip_image_context(image_encoder, rgb: torch.Tensor) -> torch.Tensor:
    """CLIP image embedding of ``rgb`` ``[B, 3, H, W]`` in [-1, 1] -> context ``[B, 1, D]`` (SD image variations)."""
    size = image_encoder.config.image_size
    x = F.interpolate((rgb + 1) / 2, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    mean = torch.tensor(CLIP_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    x = ((x - mean) / std).to(image_encoder.dtype)
    return image_encoder(pixel_values=x).image_embeds.unsqueeze(1)
