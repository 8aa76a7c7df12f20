"""Training configuration: small dataclasses loaded from YAML (no torch here).

A config file has the sections below; every key is optional except ``output_dir`` and ``data.path``.
Unknown keys are errors, so a typo never silently trains the wrong thing. Relative paths are taken from
the current directory (run from the repository root).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..data.spec import SyntheticSpec
from ..errors import PortraitError


@dataclass
class DataConfig:
    path: str = "data/synthetic"
    split: str | None = "train"  # None = every sample
    flip: bool = True  # random horizontal mirroring
    synthetic: SyntheticSpec | None = None  # render the synthetic set into ``path`` first if it has no manifest.json
    workers: int = 0  # data-loader processes drawing batches beside the training step (0: the loop draws them)


@dataclass
class VAEStageConfig:
    """Stage 1 (latent mode from scratch only): train the small ``AutoencoderKL`` on RGB and depth codes."""

    steps: int = 0
    batch_size: int = 8
    learning_rate: float = 1e-3
    crop: int | None = None  # train on random square crops of this side (the VAE is convolutional)
    kl_weight: float = 1e-6
    depth_fraction: float = 0.5  # share of the batch that is depth codes (replicated to 3 channels)
    check_max_depth_rmse: float | None = None  # fail before stage 2 if the depth reconstruction is worse


@dataclass
class DecoderStageConfig:
    """Optional stage after the VAE stage: fine-tune the VAE decoder alone on latents of the frozen encoder.

    The latent space does not change, so a diffusion model trained on the stage-1 VAE stays valid with the
    fine-tuned decoder (the stages may run in either order).
    """

    steps: int = 0
    batch_size: int = 8
    learning_rate: float = 1e-4
    crop: int | None = None  # random square crops of this side (a multiple of the VAE's downsampling)
    depth_fraction: float = 0.5


@dataclass
class DiffusionStageConfig:
    """Stage 2: the joint denoiser, reference network and context."""

    steps: int = 1000
    batch_size: int = 16
    learning_rate: float = 2e-4
    warmup_steps: int = 100
    lr_schedule: str = "constant_with_warmup"  # any diffusers.optimization schedule name
    reference_dropout: float = 0.1
    depth_weight: float = 1.0
    ema_decay: float = 0.999
    max_grad_norm: float = 1.0
    gradient_accumulation_steps: int = 1
    cache_latents: bool = True  # encode the data set once with the frozen VAE (latent mode)
    # share of samples per job (joint, depth from RGB, RGB from depth[, hole fill]); 3 weights = no hole task;
    # see JointDiffusion.training_loss
    task_mix: list = field(default_factory=lambda: [1.0, 0.0, 0.0])
    # the hole task's bank of real disocclusion masks (`python -m portrait holes`), half of its masks, the other
    # half random; None = DATA/holes.npz if that exists, else random masks only
    hole_masks: str | None = None
    # start from this pipeline folder (its unet, reference_net, context and frozen VAE; e.g. the embedded
    # default, portrait/weights/default) instead of a new model: the config's model section and the vae stage
    # are then not used, the decoder stage only if asked (train --stage decoder --stage diffusion)
    init_pipeline: str | None = None

    @property
    def hole_task(self) -> bool:
        """Whether the task mix trains the hole-fill job (a 4th weight > 0)."""
        return len(self.task_mix) > 3 and self.task_mix[3] > 0


@dataclass
class TrainConfig:
    output_dir: str = "runs/model"
    seed: int = 0
    init_from: str | None = None  # a Stable Diffusion 1.x folder; None = from scratch with `model`
    model: dict = field(default_factory=dict)  # portrait.pipelines.ModelConfig fields
    data: DataConfig = field(default_factory=DataConfig)
    vae: VAEStageConfig = field(default_factory=VAEStageConfig)
    decoder: DecoderStageConfig = field(default_factory=DecoderStageConfig)
    diffusion: DiffusionStageConfig = field(default_factory=DiffusionStageConfig)
    mixed_precision: str = "auto"  # "auto" (fp16 on a GPU, none on a CPU), "no", "fp16", "bf16"
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10  # a loss.csv row (the mean loss since the last) every this many steps
    threads: int | None = None  # torch CPU threads (None = torch's default)
    save_dtype: str = "float32"  # dtype of the saved pipeline weights ("float16" halves the size)

    def to_dict(self) -> dict:
        return asdict(self)


def _build(cls, values: dict | None, where: str):
    values = dict(values or {})
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise PortraitError(f"unknown key(s) {unknown} in {where}; known: {sorted(known)}")
    nested = {"data": DataConfig, "vae": VAEStageConfig, "decoder": DecoderStageConfig, "diffusion": DiffusionStageConfig,
              "synthetic": SyntheticSpec}
    for name, sub in nested.items():
        if name in values and name in known and values[name] is not None:
            values[name] = _build(sub, values[name], f"{where}.{name}" if where != "config" else name)
    return cls(**values)


def config_from_dict(values: dict) -> TrainConfig:
    cfg = _build(TrainConfig, values, "config")
    # the model section is checked against ModelConfig lazily (it lives with the pipelines, next to torch)
    model_keys = {
        "resolution", "latent", "block_out_channels", "layers_per_block", "attention_head_dim",
        "cross_attention_dim", "context_tokens", "down_attention", "vae_block_out_channels", "latent_channels",
        "prediction_type", "num_train_timesteps",
    }
    unknown = sorted(set(cfg.model) - model_keys)
    if unknown:
        raise PortraitError(f"unknown key(s) {unknown} in model; known: {sorted(model_keys)}")
    if cfg.mixed_precision not in ("auto", "no", "fp16", "bf16"):
        raise PortraitError(f"mixed_precision must be auto, no, fp16 or bf16, got {cfg.mixed_precision!r}")
    mix = cfg.diffusion.task_mix
    if (not isinstance(mix, (list, tuple)) or len(mix) not in (3, 4)
            or any(isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0 for w in mix) or sum(mix) <= 0):
        raise PortraitError(
            "diffusion.task_mix must be 3 or 4 weights >= 0 (joint, depth, rgb[, holes]) with a positive sum, "
            f"got {mix!r}"
        )
    for key in ("hole_masks", "init_pipeline"):
        value = getattr(cfg.diffusion, key)
        if value is not None and (not isinstance(value, str) or not value):
            raise PortraitError(f"diffusion.{key} must be a path, got {value!r}")
    if cfg.diffusion.init_pipeline and cfg.init_from:
        raise PortraitError("give either init_from (a Stable Diffusion folder) or diffusion.init_pipeline "
                            "(a portrait pipeline folder), not both")
    if cfg.save_dtype not in ("float32", "float16"):
        raise PortraitError(f"save_dtype must be float32 or float16, got {cfg.save_dtype!r}")
    for key, value, least in (("data.workers", cfg.data.workers, 0), ("log_every", cfg.log_every, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise PortraitError(f"{key} must be a whole number >= {least}, got {value!r}")
    return cfg


def load_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """Read a YAML config; ``overrides`` (``{"diffusion.steps": 3, ...}``) replace single keys."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise PortraitError(f"config file {str(path)!r} does not exist")
    values = yaml.safe_load(path.read_text()) or {}
    for dotted, value in (overrides or {}).items():
        node = values
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {}) or {}
        node[last] = value
    return config_from_dict(values)
