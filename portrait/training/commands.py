"""``python -m portrait train --config CONFIG.yaml``: the same command on a CPU, a GPU or ``accelerate launch``."""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a model from a YAML config (VAE stage, then the joint diffusion stage)",
        description="Train a joint RGB + depth portrait model. Resumes from the latest checkpoint in the "
        "output folder. For several GPUs or nodes: accelerate launch -m portrait train --config CONFIG.yaml",
    )
    p.add_argument("--config", required=True, type=Path, help="YAML config (see configs/)")
    p.add_argument("--output-dir", help="override the config's output_dir")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set diffusion.steps=100 (YAML value syntax)")
    p.add_argument("--stage", action="append", choices=["vae", "decoder", "diffusion"], metavar="STAGE",
                   help="run only this stage (repeatable: vae, decoder, diffusion); the stages it needs must "
                   "have finished already. Default: every stage of the config")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> None:
    import yaml

    from ..errors import PortraitError
    from .config import load_config

    overrides = {}
    for item in args.set:
        if "=" not in item:
            raise PortraitError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(value)
    if args.output_dir:
        overrides["output_dir"] = args.output_dir
    cfg = load_config(args.config, overrides)

    from .train import STAGES, train

    train(cfg, tuple(args.stage) if args.stage else STAGES)
