"""Joint depth + appearance portraits: one diffusion model for generation, depth estimation and editing.

The public API is imported lazily, so ``import portrait.face`` or ``portrait.mesh`` never loads torch.
"""

from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "load_pipeline": "portrait.pipelines",
    "build_pipeline": "portrait.pipelines",
    "ModelConfig": "portrait.pipelines",
    "PortraitPipeline": "portrait.pipelines",
    "PortraitPipelineOutput": "portrait.pipelines",
    "JointDiffusion": "portrait.models",
    "ReferenceNet": "portrait.models",
    "LearnedContext": "portrait.models",
    "widen_unet": "portrait.models",
    "PortraitError": "portrait.errors",
    "InvalidImageError": "portrait.errors",
    "ImageSizeError": "portrait.errors",
    "NoFaceError": "portrait.errors",
    "ModelNotFoundError": "portrait.errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'portrait' has no attribute {name!r}")
