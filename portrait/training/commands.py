"""``python -m portrait train --config CONFIG.yaml``: the same command on a CPU, a GPU or ``accelerate launch``;
``python -m portrait holes --data DIR --out DIR/holes.npz``: the training's bank of real hole masks."""

from __future__ import annotations

import argparse
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
                   "have finished already. Default: every stage of the config (with diffusion.init_pipeline: the "
                   "diffusion stage; add --stage decoder to fine-tune the pipeline's decoder first)")
    p.set_defaults(func=cmd_train)

    h = subparsers.add_parser(
        "holes", help="render a bank of real disocclusion masks from a data folder (for the hole-fill task)",
        description="Lift samples of a data folder (with depth; those without a face are skipped) into 3-D with "
        "the editing engine, render them under random pose and expression controls (yaw +-30, pitch +-15, "
        "roll +-10 degrees, some smile and jaw) and keep the holes each render opens, at the data's resolution. "
        "Training takes half of its hole masks from this bank (diffusion.hole_masks, default DATA/holes.npz).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    h.add_argument("--data", required=True, type=Path, help="data folder (see portrait.data.folder)")
    h.add_argument("--out", required=True, type=Path, help="the bank to write (.npz)")
    h.add_argument("--count", type=int, default=2000, help="number of masks")
    h.add_argument("--per-sample", type=int, default=4, help="renders (random controls) per sample")
    h.add_argument("--split", default="train", help="the data split to take samples from ('' = every sample)")
    h.add_argument("--size", type=int, help="mask side in pixels (default: the data's resolution)")
    h.add_argument("--seed", type=int, default=0)
    h.set_defaults(func=cmd_holes)


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

    from .train import train

    train(cfg, tuple(args.stage) if args.stage else None)


def cmd_holes(args) -> None:
    import numpy as np

    from ..errors import PortraitError
    from .holes import make_hole_bank

    if args.count < 1 or args.per_sample < 1:
        raise PortraitError(f"--count and --per-sample must be at least 1, got {args.count} and {args.per_sample}")
    if args.size is not None and not 8 <= args.size <= 4096:
        raise PortraitError(f"--size must be in [8, 4096], got {args.size}")
    bank = make_hole_bank(args.data, args.count, seed=args.seed, split=args.split or None, size=args.size,
                          per_sample=args.per_sample, progress=True)
    path = bank.save(args.out)
    cover = float(np.mean(bank.holes))
    print(f"wrote {len(bank.holes)} hole masks of {bank.holes.shape[1]}x{bank.holes.shape[2]} from "
          f"{len(set(bank.ids.tolist()))} samples to {path} (holes cover {cover:.1%} of the pixels)")
