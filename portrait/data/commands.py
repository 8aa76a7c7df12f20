"""``python -m portrait synth``: render a synthetic RGB-D portrait data set into the folder format."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth", help="render synthetic RGB-D portraits (identity groups) into a data folder",
        description="Render identities x views synthetic portraits with exact depth and a face mask, "
        "into the folder format of portrait.data.folder, with a contact sheet.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--identities", type=int, default=64, help="number of synthetic people")
    p.add_argument("--views", type=int, default=4, help="views (pose / expression / light) per person")
    p.add_argument("--size", type=int, default=128, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="fraction of source faces held out: their identities form the test split")
    p.set_defaults(func=cmd_synth)


def cmd_synth(args) -> None:
    from ..errors import PortraitError
    from .synthetic import SyntheticSpec, write_dataset

    if args.identities < 1 or args.views < 1:
        raise PortraitError("--identities and --views must be at least 1")
    if args.size < 16 or args.size > 1024:
        raise PortraitError(f"--size must be in [16, 1024], got {args.size}")
    if not 0.0 <= args.test_fraction < 1.0:
        raise PortraitError(f"--test-fraction must be in [0, 1), got {args.test_fraction}")
    spec = SyntheticSpec(args.identities, args.views, args.size, args.seed, args.test_fraction)
    manifest = write_dataset(args.out, spec, progress=True)
    print(f"wrote {spec.identities * spec.views} samples to {args.out} ({manifest.name}, contact_sheet.png)")
