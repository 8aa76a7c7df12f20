"""Portrait animation: a driving video moves the photo's person; an RGB video and a depth video come out.

1. :mod:`.driving`: the driver's face is tracked through the clip and every frame becomes the project's face
   controls, relative to the driver's first frame and smoothed.
2. Every frame goes through the editing engine (:mod:`portrait.scene`): the photo's head layer, built once, is
   moved and re-rendered with the photo's own pixels. The background the head uncovers anywhere in the clip is
   filled once from the background around it (:meth:`portrait.studio.Studio.background_plate`) and shared by
   every frame; holes inside the head are continued from their surroundings. No frame calls the model, so
   nothing flickers.
3. Frames stream: the driving video is read twice (motion, then rendering) and never held; each frame is
   written as it is made.

Outputs in the folder given: ``animation.mp4`` (H.264, yuv420p, the driving video's frame rate; the face crop or
the whole photo), ``depth.mp4`` (the depth in colour, one fixed range for the whole clip), ``depth.npz``
(``frame_00000``... float16 camera depth per frame, NaN off the head; ``fps``), ``preview.mp4``
(driver | result | depth) and ``motion.json`` (the controls of every frame).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import PIL.Image

from ..depth import depth_span
from ..errors import PortraitError
from .driving import NAMES, SMOOTHING, DrivingMotion, OneEuro, motion_from_landmarks, one_euro, smooth, track

OUTPUTS = ("crop", "photo")  # the face crop (the output crop of the editing engine) or the whole photo
PHOTO_MAX_SIDE = 1280  # "photo" videos are at most this large (even sides)
MAX_SECONDS = 30.0  # longer clips are cut here (the app may set less)


@dataclass
class Animation:
    """What :func:`animate` made.

    Attributes:
        paths: ``video``, ``depth_video``, ``depth_npz``, ``preview``, ``motion`` -> files.
        frames: frames written; ``fps`` their rate.
        lost: driving frames without a face (they held the last good motion).
        message: a sentence for the user (frames lost, the clip cut, several faces), or None.
        motion: the driving motion (controls per frame).
    """

    paths: dict[str, Path]
    frames: int
    fps: float
    lost: int
    message: str | None = None
    motion: DrivingMotion | None = field(default=None, repr=False)


def _extreme_poses_of(controls: list) -> list:
    """The controls at the extremes of yaw, pitch and roll: together they uncover what the clip uncovers."""
    pose = np.array([[c.yaw, c.pitch, c.roll] for c in controls])
    frames = {int(f) for axis in range(3) for f in (np.argmin(pose[:, axis]), np.argmax(pose[:, axis]))}
    return [controls[i] for i in sorted(frames)]


def _fit(rgb: np.ndarray, size: int) -> np.ndarray:
    """``rgb`` scaled to fit a black ``size`` x ``size`` square, centred."""
    image = PIL.Image.fromarray(rgb)
    scale = size / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         PIL.Image.Resampling.BILINEAR)
    out = np.zeros((size, size, 3), np.uint8)
    top, left = (size - image.height) // 2, (size - image.width) // 2
    out[top: top + image.height, left: left + image.width] = np.asarray(image)
    return out


class _DepthArchive:
    """``depth.npz`` written one frame at a time (``np.load`` reads it like ``np.savez_compressed``'s)."""

    def __init__(self, path: Path):
        self._zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1)

    def add(self, name: str, array: np.ndarray) -> None:
        with self._zip.open(f"{name}.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)

    def close(self) -> None:
        self._zip.close()


def animate(
    studio, photo, driving: str | Path, out_dir: str | Path, *, output: str = "crop",
    max_seconds: float = MAX_SECONDS, smoothing: OneEuro | None = SMOOTHING,
    progress: Callable[[int, int], None] | None = None,
) -> Animation:
    """The photo's person moved by the driving video (see the module's docstring); ``studio`` a
    :class:`~portrait.studio.Studio`, ``photo`` its prepared photo. ``progress(frame, total)`` after each frame.

    Raises ``InvalidVideoError`` (not a video), ``NoFaceError`` (no face in the clip) or ``PortraitError``.
    """
    from .. import video as vid
    from ..depth import colorize_depth
    from ..scene import render
    from ..studio import dilate

    if output not in OUTPUTS:
        raise PortraitError(f"unknown output {output!r}; choose one of {', '.join(OUTPUTS)}")
    if photo.face is None:
        raise PortraitError("animation moves the face found in the photo: prepare the photo with align=True")
    info = vid.probe(driving)
    if info.frames < 2:  # FFmpeg reads a still image as a one-frame video
        from ..errors import InvalidVideoError

        raise InvalidVideoError(f"{Path(driving).name} has a single frame: the animation needs a video of a moving face")
    limit = max(1, int(round(max_seconds * info.fps)))
    notes = []
    if info.frames > limit:
        notes.append(f"the clip is {info.duration:.1f} s long; its first {max_seconds:g} s were animated")

    # 1. The driver's motion, relative to its first face
    motion = track(vid.frames(driving, limit), info.fps, photo.mesh, smoothing)
    if not motion.found.any():
        from ..errors import NoFaceError

        raise NoFaceError("no face was found in the driving video; use a clip with one face seen from the front")
    total = len(motion)
    if motion.lost:
        notes.append(f"the driver's face was lost in {motion.lost} of {total} frames (they hold the last motion)")

    # 2. Shared by every frame: the head layer, the background it uncovers, the depth colours
    layer = studio.head_layer(photo)
    plate = studio.background_plate(photo, _extreme_poses_of([motion.controls(i) for i in range(len(motion))]))
    size = layer.size
    lo, hi = depth_span(layer.depth)
    span = (lo - 0.25 * (hi - lo), hi + 0.25 * (hi - lo))  # room for a head turned nearer or farther
    if output == "photo":
        scale = min(1.0, PHOTO_MAX_SIDE / max(photo.image.size))
        full_size = vid.even_size(round(photo.image.width * scale), round(photo.image.height * scale))
        full = photo.image.resize(full_size, PIL.Image.Resampling.LANCZOS)
        face = replace(photo.face, crop_to_photo=photo.face.crop_to_photo * [[full_size[0] / photo.image.width],
                                                                              [full_size[1] / photo.image.height]],
                       photo_size=full_size)

    # 3. Every frame: moved, filled, written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"video": out / "animation.mp4", "depth_video": out / "depth.mp4", "depth_npz": out / "depth.npz",
             "preview": out / "preview.mp4", "motion": out / "motion.json"}
    archive = _DepthArchive(paths["depth_npz"])

    with vid.VideoWriter(paths["video"], info.fps) as video, vid.VideoWriter(paths["depth_video"], info.fps) as \
            depth_video, vid.VideoWriter(paths["preview"], info.fps) as preview:
        for index, driver in enumerate(vid.frames(driving, total)):
            view = render(layer, motion.controls(index))
            image = studio.fill_holes(photo, view, plate=plate)
            coloured = colorize_depth(view.depth, span=span)
            if output == "photo":
                grow = max(1, size // 256)
                changed = dilate(view.changed, grow) if view.changed.any() else view.changed
                video.write(np.asarray(face.paste_back(full, image, changed, feather=grow / 256)))
            else:
                video.write(image)
            depth_video.write(coloured)
            preview.write(np.concatenate([_fit(driver, size), image, coloured], axis=1))
            archive.add(f"frame_{index:05d}", view.depth.astype(np.float16))
            if progress is not None:
                progress(index + 1, total)
        written = video.count
    archive.add("fps", np.float32(info.fps))
    archive.close()
    paths["motion"].write_text(json.dumps({
        "fps": info.fps, "controls": NAMES, "lost": (~motion.found).nonzero()[0].tolist(),
        "values": np.round(motion.values, 4).tolist(),
    }))
    message = "; ".join(notes).capitalize() + "." if notes else None
    return Animation(paths=paths, frames=written, fps=info.fps, lost=motion.lost, message=message, motion=motion)


__all__ = ["OUTPUTS", "SMOOTHING", "Animation", "DrivingMotion", "OneEuro", "animate", "motion_from_landmarks",
           "one_euro", "smooth", "track"]
