"""The command line: ``python -m portrait COMMAND ...``. Every subcommand calls the functions the app calls."""

from __future__ import annotations

import argparse
import sys

from .errors import PortraitError


def build_parser() -> argparse.ArgumentParser:
    from . import cli, evaluation
    from .animation import commands as animation_commands
    from .data import commands as data_commands
    from .face import commands as face_commands
    from .training import commands as training_commands

    parser = argparse.ArgumentParser(prog="python -m portrait", description="Joint depth + appearance portraits.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (cli, animation_commands, face_commands, data_commands, training_commands, evaluation):
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except PortraitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
