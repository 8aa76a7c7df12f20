"""Pipelines: generation, depth estimation, editing and inpainting on one joint model; building and loading."""

from .build import ModelConfig, build_from_stable_diffusion, build_pipeline
from .loading import DEFAULT_MODEL_DIR, load_pipeline
from .pipeline_portrait import PortraitPipeline, PortraitPipelineOutput, ReferenceFeatures

__all__ = [
    "DEFAULT_MODEL_DIR",
    "ModelConfig",
    "PortraitPipeline",
    "PortraitPipelineOutput",
    "ReferenceFeatures",
    "build_from_stable_diffusion",
    "build_pipeline",
    "load_pipeline",
]
