"""``python -m portrait synth`` and ``python -m portrait real-texture``: render an RGB-D portrait data set (synthetic,
or real photos re-rendered at new poses) into the folder format."""

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

    p = subparsers.add_parser(
        "real-texture", help="re-render the held-out source photos at new poses with exact depth (real pixels)",
        description="Lift each source photo held out of the synthetic set (and, as a separate 'examples' split, the two "
        "colour portraits that are synthetic training sources) onto a head of known geometry (its face mesh, the "
        "synthetic renderer's head, ears and neck) and re-render its own pixels at seeded poses and expressions, "
        "into the folder format with a contact sheet. Held-out faces are split by face into 'tune' (for choosing "
        "settings: python -m portrait eval --split tune --sweep-prior) and 'test' (reported). See "
        "portrait.data.real_texture.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--views", type=int, default=4, help="views per photo (view 0: the photo itself)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0, help="seeds the poses and the tune / test split")
    p.add_argument("--tune-fraction", type=float, default=1 / 3, help="fraction of held-out faces in the tune split")
    p.add_argument("--no-examples", dest="examples", action="store_false",
                   help="leave out the 'examples' split (astronaut, Grace Hopper: synthetic training sources)")
    p.set_defaults(func=cmd_real_texture)


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


def cmd_real_texture(args) -> None:
    import json
    from collections import Counter

    from ..errors import PortraitError
    from .real_texture import RealTextureSpec, write_dataset

    if args.views < 1:
        raise PortraitError("--views must be at least 1")
    if args.size < 16 or args.size > 1024:
        raise PortraitError(f"--size must be in [16, 1024], got {args.size}")
    if not 0.0 < args.tune_fraction < 1.0:
        raise PortraitError(f"--tune-fraction must be in (0, 1), got {args.tune_fraction}")
    spec = RealTextureSpec(args.views, args.size, args.seed, args.tune_fraction, args.examples)
    manifest = write_dataset(args.out, spec, progress=True)
    counts = Counter(entry["split"] for entry in json.loads(manifest.read_text())["samples"])
    splits = ", ".join(f"{n} {split}" for split, n in counts.items())
    print(f"wrote {sum(counts.values())} samples ({splits}) to {args.out} ({manifest.name}, contact_sheet.png)")
