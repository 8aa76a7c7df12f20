"""Neural parts: channel widening, the reference network and its attention processor, the joint model."""

from .context import LearnedContext
from .joint import JointDiffusion
from .reference import ReferenceAttnProcessor, ReferenceNet, ReferenceState, set_reference_processors
from .widening import widen_unet

__all__ = [
    "JointDiffusion",
    "LearnedContext",
    "ReferenceAttnProcessor",
    "ReferenceNet",
    "ReferenceState",
    "set_reference_processors",
    "widen_unet",
]
