"""Face landmarks through a video (mediapipe's face mesh in its video mode: the face found once, then tracked).

Landmarks follow :mod:`portrait.face.landmarks`' convention: ``[478, 3]`` in the frame's pixels, z in x's
pixel scale. One :class:`LandmarkTracker` per video: it keeps the face from frame to frame (tracking is
steadier and faster than finding the face in every frame), so it is not shared between videos or threads.
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image

from .landmarks import _muted_stderr
from .regions import NUM_LANDMARKS

TRACK_MAX_SIDE = 720  # frames are downscaled to this before tracking (the face mesh works at 192 px)


class LandmarkTracker:
    """``tracker(rgb)`` -> ``[478, 3]`` float32 landmarks of the largest tracked face, or None when it is lost.

    ::

        with LandmarkTracker() as tracker:
            points = [tracker(frame) for frame in frames]
    """

    def __init__(self, min_confidence: float = 0.5):
        from mediapipe.python.solutions import face_mesh

        with _muted_stderr():
            self._mesh = face_mesh.FaceMesh(
                static_image_mode=False, max_num_faces=1, refine_landmarks=True,
                min_detection_confidence=min_confidence, min_tracking_confidence=min_confidence,
            )

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        rgb = np.asarray(rgb, dtype=np.uint8)
        height, width = rgb.shape[:2]
        scale = min(1.0, TRACK_MAX_SIDE / max(height, width))
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
        with _muted_stderr(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*GetPrototype.*")
            result = self._mesh.process(np.ascontiguousarray(rgb))
        if not result.multi_face_landmarks:
            return None
        points = np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark], dtype=np.float32)
        if len(points) != NUM_LANDMARKS:
            return None
        return points * np.array([width, height, width], dtype=np.float32)

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> LandmarkTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track_landmarks(frames) -> np.ndarray:
    """``[N, 478, 3]`` float32 landmarks of the face through ``frames`` (RGB ``[H, W, 3]`` uint8, any iterable),
    NaN in the frames where it is lost."""
    with LandmarkTracker() as tracker:
        return np.stack([p if (p := tracker(f)) is not None else np.full((NUM_LANDMARKS, 3), np.nan, np.float32)
                         for f in frames])
