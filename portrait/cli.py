"""The model's subcommands: ``generate``, ``depth`` and ``edit`` (face crop -> model -> files)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model folder or hub id (default: the embedded default model)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=20, help="denoising steps")
    p.add_argument("--no-align", action="store_true", help="the input is already a square face crop: skip face finding")


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help="new portraits of the person in a reference photo, with depth")
    p.add_argument("reference", type=Path)
    p.add_argument("--num", type=int, default=1, help="how many portraits")
    p.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance on the reference")
    _common(p)
    p.set_defaults(func=cmd_generate)

    p = subparsers.add_parser("depth", help="facial depth of a photo (+ uncertainty and a 3D mesh)")
    p.add_argument("image", type=Path)
    p.add_argument("--ensemble", type=int, default=4, help="ensemble size (members are aligned and merged)")
    _common(p)
    p.set_defaults(func=cmd_depth)

    p = subparsers.add_parser("edit", help="re-render the person to a target depth or new pose / expression")
    p.add_argument("reference", type=Path)
    p.add_argument("--target-depth", type=Path, help="target depth (.npy or 16-bit .png) of the face crop")
    p.add_argument("--strength", type=float, default=0.8, help="1 = from noise; < 1 starts from the photo")
    p.add_argument("--guidance", type=float, default=2.0)
    from .face.commands import add_control_arguments

    add_control_arguments(p)
    _common(p)
    p.set_defaults(func=cmd_edit)


def _studio(args):
    from .studio import Studio

    return Studio.load(args.model)


def cmd_generate(args) -> None:
    studio = _studio(args)
    photo = studio.prepare(args.reference, align=not args.no_align)
    results = studio.generate(photo, num_images=args.num, steps=args.steps, guidance=args.guidance, seed=args.seed)
    for i, result in enumerate(results):
        out = args.out / f"{i:03d}" if len(results) > 1 else args.out
        result.save(out)
        print(f"wrote {out}")


def cmd_depth(args) -> None:
    studio = _studio(args)
    photo = studio.prepare(args.image, align=not args.no_align)
    result = studio.estimate_depth(photo, ensemble_size=args.ensemble, steps=args.steps, seed=args.seed)
    result.save(args.out)
    print(f"wrote {args.out}")


def cmd_edit(args) -> None:
    from .face.commands import controls_from_args

    controls = controls_from_args(args)
    studio = _studio(args)
    photo = studio.prepare(args.reference, align=not args.no_align)
    target = None
    if args.target_depth is not None:
        from .studio import read_depth

        target = read_depth(args.target_depth)
    result = studio.edit(photo, controls=controls, target_depth=target, strength=args.strength,
                         steps=args.steps, guidance=args.guidance, seed=args.seed)
    result.save(args.out)
    print(f"wrote {args.out}")
