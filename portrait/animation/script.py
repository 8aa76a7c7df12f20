"""Driving clips made from a photo by scripted controls, with this project's editing engine.

No real face video ships with any package the project can install, so its example driving clip
(``examples/driving.mp4``) is one of the example photos moved through :data:`SCRIPT`: a turn, a nod, a smile,
an opened jaw and a blink. The same clip is the ground truth of the self-reenactment check: a photo driven by a
clip made from itself should give the clip back (``python -m portrait eval --animation``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..face import FaceControls

# keyframes: (seconds, {control: value}); controls move smoothly (cosine ease) between them and hold after
SCRIPT: tuple[tuple[float, dict[str, float]], ...] = (
    (0.0, {}),
    (0.9, {"yaw": 15.0}),
    (1.8, {"yaw": -15.0}),
    (2.4, {"pitch": 8.0}),
    (3.0, {"pitch": -6.0, "smile": 0.7}),
    (3.6, {"smile": 0.7, "jaw_open": 0.4, "brow_raise": 0.5}),
    (4.1, {"eye_close": 1.0}),
    (4.3, {}),
    (5.0, {}),
)
FPS = 25.0
CLIP_SIZE = 384  # the example clip's side in pixels (it stays under 1 MB)


def scripted_controls(script=SCRIPT, fps: float = FPS) -> list[FaceControls]:
    """The script's controls at every frame (``fps``), from its first keyframe to its last."""
    times = np.array([t for t, _ in script])
    frames = int(round(times[-1] * fps)) + 1
    out = []
    for i in range(frames):
        t = i / fps
        k = int(np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2))
        u = np.clip((t - times[k]) / (times[k + 1] - times[k]), 0.0, 1.0)
        ease = (1 - np.cos(np.pi * u)) / 2
        a, b = FaceControls(**script[k][1]).to_dict(), FaceControls(**script[k + 1][1]).to_dict()
        out.append(FaceControls(**{n: (1 - ease) * a[n] + ease * b[n] for n in a}))
    return out


def write_clip(studio, photo, path: str | Path, controls: list[FaceControls] | None = None, fps: float = FPS,
               size: int = CLIP_SIZE) -> Path:
    """An H.264 clip of ``photo``'s face crop moved through ``controls`` (default: :data:`SCRIPT`) by the editing
    engine, as an animation renders its frames (one background filled for all), scaled to ``size``."""
    import PIL.Image

    from ..scene import render
    from ..video import VideoWriter
    from . import _extreme_poses_of

    controls = controls if controls is not None else scripted_controls(fps=fps)
    layer = studio.head_layer(photo)
    plate = studio.background_plate(photo, _extreme_poses_of(controls))
    with VideoWriter(path, fps) as video:
        for c in controls:
            frame = studio.fill_holes(photo, render(layer, c), plate=plate)
            video.write(np.asarray(PIL.Image.fromarray(frame).resize((size, size), PIL.Image.Resampling.LANCZOS)))
    return Path(path)
