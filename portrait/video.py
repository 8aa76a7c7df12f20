"""Reading and writing video, one frame at a time (PyAV: FFmpeg's decoders and libx264, bundled in its wheel).

- :func:`probe` tells a video's size, frame rate and frame count without decoding it, and refuses what is not
  a video with a message for the user (:class:`~portrait.errors.InvalidVideoError`).
- :func:`frames` decodes upright RGB frames lazily (mp4, webm, mov, gif, ...), so a long clip never sits in
  memory.
- :class:`VideoWriter` encodes RGB frames to H.264 in yuv420p, which browsers and phones play.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InvalidVideoError

CRF = 20  # libx264's constant quality (0 = lossless, 23 = its default; lower = better and larger)


@dataclass(frozen=True)
class VideoInfo:
    """``size`` ``(width, height)``; ``fps`` frames per second; ``frames`` the count (estimated from the
    duration when the container does not say); ``duration`` in seconds."""

    size: tuple[int, int]
    fps: float
    frames: int
    duration: float


def _open(path: str | os.PathLike):
    import av

    path = Path(path)
    if not path.is_file():
        raise InvalidVideoError(f"no video file at {path}")
    if path.stat().st_size == 0:
        raise InvalidVideoError(f"{path.name} is empty")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as err:
        raise InvalidVideoError(f"{path.name} is not a video that can be read ({err.__class__.__name__})") from err
    if not container.streams.video:
        container.close()
        raise InvalidVideoError(f"{path.name} has no video stream")
    return container


def probe(path: str | os.PathLike) -> VideoInfo:
    """A video's size, frame rate and length; raises ``InvalidVideoError`` for anything that is not a video."""
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 25.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000  # microseconds
        else:
            duration = 0.0
        count = stream.frames or round(duration * fps)
        if count <= 0:  # neither says: count them (packets, not decoding)
            count = sum(1 for p in container.demux(stream) if p.size)
        if stream.codec_context.width <= 0 or stream.codec_context.height <= 0:
            raise InvalidVideoError(f"{Path(path).name} has a video stream without frames")
        return VideoInfo((stream.codec_context.width, stream.codec_context.height), fps, int(count),
                         duration or count / fps)


def frames(path: str | os.PathLike, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """The video's frames as ``[H, W, 3]`` uint8 RGB, decoded one at a time (at most ``max_frames``).

    Raises ``InvalidVideoError`` when the file is not a video or breaks off before its first frame; a video
    corrupt later on ends where it breaks.
    """
    import av

    count = 0
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                yield _upright(frame.to_ndarray(format="rgb24"), frame.rotation)
                count += 1
                if max_frames is not None and count >= max_frames:
                    return
        except (av.error.FFmpegError, ValueError) as err:
            if count == 0:
                raise InvalidVideoError(f"{Path(path).name} could not be decoded ({err.__class__.__name__})") from err
    if count == 0:
        raise InvalidVideoError(f"{Path(path).name} has no frames")


def _upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """A frame turned as its display matrix says (phones record sideways and tag the rotation)."""
    turns = round((rotation or 0) / 90) % 4  # counter-clockwise quarter turns
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def even_size(width: int, height: int) -> tuple[int, int]:
    """The largest even size within ``(width, height)`` (yuv420p halves the colour planes)."""
    return max(2, width - width % 2), max(2, height - height % 2)


class VideoWriter:
    """H.264 (libx264, yuv420p, ``+faststart``) at ``fps``; frames of any size are cropped to an even size.

    ::

        with VideoWriter("out.mp4", fps=25) as video:
            for rgb in frames_to_write:
                video.write(rgb)
    """

    def __init__(self, path: str | os.PathLike, fps: float, crf: int = CRF):
        self.path = Path(path)
        self.fps = fps
        self.crf = crf
        self.count = 0
        self._container = None
        self._stream = None

    def write(self, rgb: np.ndarray) -> None:
        import av

        rgb = np.asarray(rgb, dtype=np.uint8)
        if self._stream is None:
            from fractions import Fraction

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self.path), mode="w", options={"movflags": "+faststart"})
            self._stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            self._stream.width, self._stream.height = even_size(rgb.shape[1], rgb.shape[0])
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(self.crf), "preset": "veryfast"}
        rgb = np.ascontiguousarray(rgb[: self._stream.height, : self._stream.width])
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
            self._container.mux(packet)
        self.count += 1

    def close(self) -> None:
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
