"""``python -m portrait animate PHOTO --driving VIDEO --out DIR`` and ``python -m portrait clip PHOTO --out FILE``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("animate", help="move the photo's person by a driving video: RGB and depth videos out",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("photo", type=Path)
    p.add_argument("--driving", required=True, type=Path, help="driving video (mp4, webm, mov, gif) of a face")
    p.add_argument("--out", required=True, type=Path,
                   help="output folder: animation.mp4, depth.mp4, depth.npz, preview.mp4, motion.json")
    p.add_argument("--output", choices=("crop", "photo"), default="crop",
                   help="crop: the face crop; photo: the whole photo (at most 1280 px)")
    p.add_argument("--max-seconds", type=_positive, default=30.0, help="longer clips are cut here")
    p.add_argument("--no-smoothing", action="store_true", help="the driver's motion as tracked (no One Euro filter)")
    p.add_argument("--model", help="model folder or hub id (default: the embedded default model)")
    p.set_defaults(func=cmd_animate)

    p = subparsers.add_parser("clip", help="a driving clip made from a photo by the scripted turn, nod, smile and "
                                           "blink of portrait.animation.script (the example clip)")
    p.add_argument("photo", type=Path)
    p.add_argument("--out", required=True, type=Path, help="the clip (.mp4)")
    p.add_argument("--model", help="model folder or hub id (default: the embedded default model)")
    p.set_defaults(func=cmd_clip)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def cmd_animate(args) -> None:
    import sys

    from ..studio import Studio
    from . import SMOOTHING

    studio = Studio.load(args.model)
    photo = studio.prepare(args.photo)

    def progress(frame: int, total: int) -> None:
        if frame == total or frame % 25 == 0:
            print(f"frame {frame}/{total}", file=sys.stderr)

    anim = studio.animate(photo, args.driving, args.out, output=args.output, max_seconds=args.max_seconds,
                          smoothing=None if args.no_smoothing else SMOOTHING, progress=progress)
    print(f"wrote {args.out}: {anim.frames} frames at {anim.fps:g} fps" + (f". {anim.message}" if anim.message else ""))


def cmd_clip(args) -> None:
    from ..studio import Studio
    from .script import write_clip

    studio = Studio.load(args.model)
    path = write_clip(studio, studio.prepare(args.photo), args.out)
    print(f"wrote {path}")
