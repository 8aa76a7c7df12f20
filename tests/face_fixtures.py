"""Shared inputs for the face-geometry and mesh tests: real photos from packages, made once per process.

Plain functions (``from .face_fixtures import astronaut_crop``); the expensive results (mediapipe
detection, crops, meshes) are cached with ``lru_cache``, so every test module shares them.
"""

from __future__ import annotations

import os
from functools import lru_cache

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

CROP_SIZE = 256  # crops in the tests: large enough for 1-pixel checks, small enough to stay fast


@lru_cache(maxsize=1)
def astronaut_image() -> Image.Image:
    """skimage's astronaut photo (public-domain NASA portrait), 512x512 RGB."""
    from skimage import data

    return Image.fromarray(data.astronaut())


@lru_cache(maxsize=1)
def astronaut_landmarks():
    from portrait.face import detect_landmarks

    return detect_landmarks(astronaut_image())


@lru_cache(maxsize=4)
def astronaut_crop(size: int = CROP_SIZE):
    from portrait.face import crop_face

    return crop_face(astronaut_image(), astronaut_landmarks(), size)


@lru_cache(maxsize=2)
def astronaut_mesh(size: int = CROP_SIZE):
    from portrait.face import face_mesh_from_landmarks

    aligned = astronaut_crop(size)
    return face_mesh_from_landmarks(aligned.landmarks, aligned.size, image=aligned.image)


def gradient_image(width: int = 192, height: int = 160) -> Image.Image:
    """A smooth colour gradient: no face in it."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack(
        [
            np.broadcast_to(x, (height, width)),
            np.broadcast_to(y, (height, width)),
            np.full((height, width), 128.0),
        ],
        -1,
    )
    return Image.fromarray(rgb.astype(np.uint8))


def two_faces_image() -> Image.Image:
    """Two copies of the astronaut side by side on grey: a large one (left) and a smaller one (right)."""
    big = astronaut_image().resize((320, 320), Image.Resampling.LANCZOS)
    small = astronaut_image().resize((224, 224), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (560, 320), (128, 128, 128))
    canvas.paste(big, (0, 0))
    canvas.paste(small, (336, 48))
    return canvas
