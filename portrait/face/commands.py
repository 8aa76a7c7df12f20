"""CLI subcommands of the face-geometry part: ``mesh``, ``landmarks`` and ``pose`` (no diffusion model).

``portrait/__main__.py`` calls :func:`register` on its subparsers. Each subcommand prints the files it
wrote; a :class:`~portrait.errors.PortraitError` (bad image, no face, ...) prints ``error: <message>``
to stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import PortraitError
from ..imageio import load_image
from ..mesh import (
    DEFAULT_DEPTH_RANGE,
    DEFAULT_EDGE_THRESHOLD,
    DEFAULT_FOV_DEG,
    export_glb,
    export_obj,
    export_ply,
    write_depth_outputs,
)
from .align import DEFAULT_CROP_SIZE, align_face
from .controls import CONTROL_SPECS, FaceControls, apply_controls
from .landmarks import draw_landmarks
from .mesh import face_mask, face_mesh_from_landmarks
from .render import render_depth, shade


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``mesh``, ``landmarks`` and ``pose`` subcommands (each sets ``func``)."""
    # mesh
    p = subparsers.add_parser(
        "mesh",
        help="depth map (+ RGB) -> GLB / PLY / OBJ mesh, 16-bit PNG and colour-mapped depth",
        description="Turn a depth map (.npy float32, NaN = unknown, or the project's 16-bit PNG) into meshes.",
    )
    p.add_argument("depth", type=Path, help="depth map: .npy (float, larger = farther) or 16-bit .png")
    p.add_argument("--rgb", type=Path, help="image for the vertex colours (resized to the depth map)")
    p.add_argument("--mask", type=Path, help="optional mask image: white = keep")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--fov", type=float, default=DEFAULT_FOV_DEG, help="horizontal field of view in degrees")
    p.add_argument(
        "--edge-threshold",
        type=float,
        default=DEFAULT_EDGE_THRESHOLD,
        help="drop triangles whose depth jumps by more than this fraction of the depth range",
    )
    p.add_argument(
        "--depth-range",
        type=float,
        default=None,
        help=f"near-to-far extent of relative depth, in image widths (default {DEFAULT_DEPTH_RANGE})",
    )
    p.add_argument(
        "--metric", action="store_true", help="the depth is camera z (e.g. a face render), not relative"
    )
    p.set_defaults(func=_cli(_run_mesh))

    # landmarks
    p = subparsers.add_parser(
        "landmarks",
        help="find the face: aligned crop, landmark overlay, landmarks and the 3D face mesh",
    )
    p.add_argument("image", type=Path, help="photo (any common format)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--size", type=int, default=DEFAULT_CROP_SIZE, help="crop side in pixels")
    p.set_defaults(func=_cli(_run_landmarks))

    # pose
    p = subparsers.add_parser(
        "pose",
        help="turn pose / expression values into a target depth and a shaded preview of the face mesh",
    )
    p.add_argument("image", type=Path, help="photo (any common format)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--size", type=int, default=DEFAULT_CROP_SIZE, help="crop and depth side in pixels")
    add_control_arguments(p)
    p.set_defaults(func=_cli(_run_pose))


def in_range(limits, kind: type = float):
    """An argparse ``type=``: ``kind(text)`` if it lies within ``limits.minimum`` .. ``limits.maximum`` (a
    ``ControlSpec`` or a :class:`~portrait.demo.Limits`), else an argparse error naming the range, so that
    a bad number is refused while the arguments are parsed."""
    span = f"between {limits.minimum:.10g} and {limits.maximum:.10g}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be a {'whole ' if kind is int else ''}number {span}, got {text!r}"
            ) from None
        if not limits.minimum <= value <= limits.maximum:
            raise argparse.ArgumentTypeError(f"must be {span}, got {text}")
        return value

    return parse


def add_control_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--name`` flag per pose / expression control, from ``CONTROL_SPECS`` (used by ``pose`` and ``edit``)."""
    for spec in CONTROL_SPECS:
        parser.add_argument(
            f"--{spec.name.replace('_', '-')}",
            dest=spec.name,
            type=in_range(spec),
            default=spec.default,
            help=f"{spec.label}: {spec.minimum:g} to {spec.maximum:g}{' ' + spec.unit if spec.unit else ''}, "
            f"default {spec.default:g}; {spec.help}",
        )


def controls_from_args(args: argparse.Namespace) -> FaceControls:
    """The controls given by :func:`add_control_arguments`' flags (their ranges checked by the parser)."""
    return FaceControls(**{spec.name: getattr(args, spec.name) for spec in CONTROL_SPECS})


def _cli(handler):
    """Wrap a handler: user errors become ``error: <message>`` on stderr and exit status 2."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args) or 0
        except PortraitError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    return run


def _check_size(size: int) -> None:
    if not 32 <= size <= 4096:
        raise PortraitError(f"--size must be between 32 and 4096 pixels, got {size}")


def _report(title: str, paths) -> None:
    print(title)
    for path in paths:
        print(f"  {path}")


# --- handlers ---------------------------------------------------------------------------------------------


def _run_mesh(args: argparse.Namespace) -> int:
    from ..depth import read_depth

    depth = read_depth(args.depth)
    if not np.isfinite(depth).any():
        raise PortraitError(f"the depth map '{args.depth}' has no known values (all NaN or 0)")
    rgb = load_image(args.rgb, min_size=1) if args.rgb else None
    mask = None
    if args.mask:
        mask_image = (
            load_image(args.mask, min_size=1).convert("L").resize(depth.shape[::-1], Image.Resampling.NEAREST)
        )
        mask = np.asarray(mask_image) >= 128
    if args.metric and args.depth_range is not None:
        raise PortraitError("--metric and --depth-range exclude each other")
    depth_range = (
        None if args.metric else (args.depth_range if args.depth_range is not None else DEFAULT_DEPTH_RANGE)
    )
    outputs = write_depth_outputs(
        depth,
        args.out,
        rgb=rgb,
        mask=mask,
        fov_deg=args.fov,
        edge_threshold=args.edge_threshold,
        depth_range=depth_range,
    )
    _report(f"wrote {len(outputs.as_dict())} files:", outputs.as_dict().values())
    return 0


def _run_landmarks(args: argparse.Namespace) -> int:
    _check_size(args.size)
    photo = load_image(args.image)
    aligned = align_face(photo, size=args.size)
    if aligned.message:
        print(aligned.message)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mesh = face_mesh_from_landmarks(aligned.landmarks, aligned.size, image=aligned.image)
    surface = mesh.to_trimesh()
    paths = [
        _save(aligned.image, out / "crop.png"),
        _save(draw_landmarks(aligned.image, aligned.landmarks), out / "landmarks.png"),
        _save(Image.fromarray(face_mask(mesh, aligned.size).astype(np.uint8) * 255), out / "face_mask.png"),
        _save_npy(aligned.landmarks.astype(np.float32), out / "landmarks.npy"),
        export_ply(surface, out / "face_mesh.ply"),
        export_obj(surface, out / "face_mesh.obj"),
        export_glb(surface, out / "face_mesh.glb"),
    ]
    info = {
        "num_faces": aligned.num_faces,
        "crop_size": aligned.size,
        "crop_to_photo": aligned.crop_to_photo.tolist(),
        "photo_size": list(aligned.photo_size),
        "fov_deg": mesh.camera.fov_deg,
    }
    (out / "face.json").write_text(json.dumps(info, indent=2))
    paths.append(out / "face.json")
    _report(f"face found ({aligned.num_faces} in the photo); wrote:", paths)
    return 0


def _run_pose(args: argparse.Namespace) -> int:
    controls = controls_from_args(args)
    _check_size(args.size)
    photo = load_image(args.image)
    aligned = align_face(photo, size=args.size)
    if aligned.message:
        print(aligned.message)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    mesh = face_mesh_from_landmarks(aligned.landmarks, aligned.size)
    target = render_depth(apply_controls(mesh, controls), aligned.size)
    outputs = write_depth_outputs(target.depth, out, prefix="target_", depth_range=None)
    paths = [
        _save(aligned.image, out / "crop.png"),
        _save(Image.fromarray(shade(target)), out / "preview.png"),
        _save(Image.fromarray(shade(render_depth(mesh, aligned.size))), out / "preview_original.png"),
        _save(Image.fromarray(target.mask.astype(np.uint8) * 255), out / "target_mask.png"),
        *outputs.as_dict().values(),
    ]
    (out / "controls.json").write_text(json.dumps(controls.to_dict(), indent=2))
    paths.append(out / "controls.json")
    _report("wrote:", paths)
    return 0


# --- file helpers -----------------------------------------------------------------------------------------


def _save(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


def _save_npy(array: np.ndarray, path: Path) -> Path:
    np.save(path, array)
    return path
