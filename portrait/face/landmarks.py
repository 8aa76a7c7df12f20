"""Face landmarks with mediapipe's bundled models (no download, no torch): the full-range face detector
finds every face, the face mesh gives 478 landmarks for each.

Coordinates are *image pixels* in the continuous convention used across ``portrait.face``: the image
spans ``[0, W] x [0, H]``, pixel ``(i, j)`` covers ``[i, i + 1] x [j, j + 1]`` and its centre is at
``(i + 0.5, j + 0.5)``; x goes right and y goes down. The third coordinate is mediapipe's relative depth
converted to the same pixel scale as x (``z * W``): smaller = nearer to the camera, zero near the
centre of the landmarks. Points 0..467 are the face mesh, 468..477 the two irises.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import NoFaceError
from .regions import REGIONS
from .warp import warp_to_square

MAX_FACES = 5
DETECTION_MAX_SIDE = 1280  # larger photos are downscaled for the face detector (it works at 192 px)
TILE_SIDE = 960  # when that finds no face: the detector again on tiles of this side (small faces in large photos)
CONTEXT = 2.0  # the face mesh sees a square of this many face-box sides around each detected face
MESH_INPUT = 384  # ... resampled to this many pixels

_LOCK = threading.Lock()
_SOLUTIONS: dict[tuple[str, float], object] = {}


@dataclass
class FaceLandmarks:
    """The landmarks of the largest face in a photo.

    Attributes:
        points: ``[478, 3]`` float32; x, y in image pixels (continuous, y down), z relative depth in the
            same pixel scale (smaller = nearer).
        image_size: ``(width, height)`` of the image the points refer to.
        num_faces: how many faces were found (the largest one is returned).
        message: a sentence for the user when several faces were found, else None.
        all_points: ``[M, 478, 3]`` landmarks of every face meshed (at most ``max_faces``), largest first.
    """

    points: np.ndarray
    image_size: tuple[int, int]
    num_faces: int = 1
    message: str | None = None
    all_points: np.ndarray | None = None

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` of the landmarks in image pixels."""
        x0, y0 = self.points[:, :2].min(axis=0)
        x1, y1 = self.points[:, :2].max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)


@contextlib.contextmanager
def _muted_stderr(active: bool = True):
    """Silence file descriptor 2 (native libraries' logging) while active."""
    if not active:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _solution(kind: str, min_confidence: float):
    """A mediapipe solution, created once per process and setting (importing mediapipe takes ~1 s).

    ``"detector"``: the full-range face detector (small and large faces); ``"mesh"``: the face mesh for
    one face per image, with the irises (478 points); ``"selfie"``: the person segmentation (the general,
    square model; ``min_confidence`` unused).
    """
    key = (kind, min_confidence)
    if key not in _SOLUTIONS:
        if kind == "detector":
            from mediapipe.python.solutions import face_detection

            _SOLUTIONS[key] = face_detection.FaceDetection(
                min_detection_confidence=min_confidence, model_selection=1
            )
        elif kind == "selfie":
            from mediapipe.python.solutions import selfie_segmentation

            _SOLUTIONS[key] = selfie_segmentation.SelfieSegmentation(model_selection=0)
        else:
            from mediapipe.python.solutions import face_mesh

            _SOLUTIONS[key] = face_mesh.FaceMesh(
                static_image_mode=True,
                max_num_faces=1,
                refine_landmarks=True,
                min_detection_confidence=min_confidence,
            )
    return _SOLUTIONS[key]


def _process(kind: str, min_confidence: float, rgb: np.ndarray):
    """Run a solution; call with ``_LOCK`` held (mediapipe graphs are not thread-safe)."""
    first = (kind, min_confidence) not in _SOLUTIONS
    # mediapipe's native start-up logging goes straight to file descriptor 2: mute it on first use
    with _muted_stderr(first), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*GetPrototype.*")
        return _solution(kind, min_confidence).process(np.ascontiguousarray(rgb))


def _face_boxes(rgb: np.ndarray, min_confidence: float) -> list[tuple[float, float, float, float]]:
    """Face boxes ``(x0, y0, x1, y1)`` in pixels of ``rgb``, largest first (full-range detector)."""
    height, width = rgb.shape[:2]
    scale = min(1.0, DETECTION_MAX_SIDE / max(height, width))
    small = rgb
    if scale < 1.0:  # the detector runs at 192 px anyway
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))
    result = _process("detector", min_confidence, small)
    boxes = []
    for detection in result.detections or []:
        b = detection.location_data.relative_bounding_box
        boxes.append(
            (b.xmin * width, b.ymin * height, (b.xmin + b.width) * width, (b.ymin + b.height) * height)
        )
    return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))


def _tiled_face_boxes(rgb: np.ndarray, min_confidence: float):
    """Face boxes (photo pixels, largest first) found on overlapping tiles, one list per scale, coarse to fine.

    The scales halve from full resolution while the photo stays larger than ``DETECTION_MAX_SIDE`` (what the
    first pass saw), and include full resolution whenever the photo is larger than a tile. Tiles are
    ``TILE_SIDE`` squares overlapping by half, so a face up to half a tile lies whole in one of them; the
    detector finds faces down to about a fifteenth of a tile (~60 pixels wide at full resolution). A face
    seen by several tiles is kept once (the largest box).
    """
    height, width = rgb.shape[:2]
    if max(height, width) <= TILE_SIDE:
        return
    scales = [1.0]
    while max(height, width) * scales[-1] / 2 > DETECTION_MAX_SIDE:
        scales.append(scales[-1] / 2)
    for scale in reversed(scales):
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        level = rgb if scale == 1.0 else np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))
        boxes = []
        for top in _tile_starts(size[1]):
            for left in _tile_starts(size[0]):
                tile = level[top : top + TILE_SIDE, left : left + TILE_SIDE]
                for box in _face_boxes(tile, min_confidence):  # tile pixels -> photo pixels
                    boxes.append(tuple((v + at) / scale for v, at in zip(box, (left, top, left, top))))
        yield _distinct(sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1])))


def _tile_starts(length: int) -> list[int]:
    """Offsets of ``TILE_SIDE`` tiles overlapping by half along a side of ``length`` pixels (the last flush)."""
    if length <= TILE_SIDE:
        return [0]
    return list(range(0, length - TILE_SIDE, TILE_SIDE // 2)) + [length - TILE_SIDE]


def _distinct(boxes: list) -> list:
    """``boxes`` (largest first) without those lying mostly (over half their area) inside a larger one kept."""
    kept = []
    for x0, y0, x1, y1 in boxes:
        area = max(x1 - x0, 1e-9) * max(y1 - y0, 1e-9)
        if all(
            max(0.0, min(x1, k[2]) - max(x0, k[0])) * max(0.0, min(y1, k[3]) - max(y0, k[1])) <= 0.5 * area
            for k in kept
        ):
            kept.append((x0, y0, x1, y1))
    return kept


def _mesh_in_box(rgb: np.ndarray, box, min_confidence: float, confirm: bool = False) -> np.ndarray | None:
    """``[478, 3]`` landmarks (image pixels) of the face in ``box``, from a square crop around it.

    The crop (``CONTEXT`` box sides, black outside the photo) is resampled to ``MESH_INPUT`` pixels. With
    ``confirm``, the detector must find the face again in the crop, where it is large (None if not): a box
    found on a tile, where a face is a few pixels wide, may be anything face-like.
    """
    x0, y0, x1, y1 = box
    side = CONTEXT * max(x1 - x0, y1 - y0)
    left, top = (x0 + x1 - side) / 2.0, (y0 + y1 - side) / 2.0
    step = side / MESH_INPUT
    to_photo = np.array([[step, 0.0, left], [0.0, step, top]])
    crop = np.asarray(warp_to_square(Image.fromarray(rgb), to_photo, MESH_INPUT, mirror=False))
    if confirm and not _face_boxes(crop, min_confidence):
        return None
    points = _mesh_points(crop, min_confidence)
    if points is None:
        return None
    points *= side  # normalised crop coordinates -> photo pixels; z has x's scale
    points[:, 0] += left
    points[:, 1] += top
    return points


def _whole_image_mesh(rgb: np.ndarray, min_confidence: float) -> np.ndarray | None:
    """The face mesh run on the whole photo (downscaled if large); landmarks in photo pixels or None."""
    height, width = rgb.shape[:2]
    scale = min(1.0, DETECTION_MAX_SIDE / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))
    points = _mesh_points(rgb, min_confidence)
    if points is not None:
        points *= [width, height, width]
    return points


def _mesh_points(rgb: np.ndarray, min_confidence: float) -> np.ndarray | None:
    """``[478, 3]`` normalised landmarks (x, y in [0, 1] of width / height, z in width units), or None."""
    result = _process("mesh", min_confidence, rgb)
    if not result.multi_face_landmarks:
        return None
    return np.array([(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark], dtype=np.float64)


def detect_landmarks(
    image: Image.Image | np.ndarray,
    *,
    max_faces: int = MAX_FACES,
    min_confidence: float = 0.5,
) -> FaceLandmarks:
    """Find the faces in an RGB image and return the landmarks of the largest one.

    The full-range face detector finds the faces on the photo downscaled to ``DETECTION_MAX_SIDE``; the face
    mesh then runs on a square crop around each of the ``max_faces`` largest, at full resolution. When that
    finds none, the face mesh looks at the whole photo (a close-up), then the detector looks again on tiles
    at full resolution (small faces in large photos, :func:`_tiled_face_boxes`).

    Args:
        image: RGB ``PIL.Image`` or uint8 array ``[H, W, 3]`` (use :func:`portrait.imageio.load_image`
            for anything else).
        max_faces: the most faces meshed (largest detections first); the largest by landmark bounding-box
            area is returned.
        min_confidence: mediapipe's detection threshold.

    Raises:
        NoFaceError: no face was found.
    """
    rgb = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"image must be RGB uint8 [H, W, 3], got {rgb.dtype} {tuple(rgb.shape)}")
    height, width = rgb.shape[:2]

    # 1. Find the faces, then mesh each one in a crop around it
    with _LOCK:
        boxes = _face_boxes(rgb, min_confidence)
        faces = [_mesh_in_box(rgb, box, min_confidence) for box in boxes[:max_faces]]
        faces = [f for f in faces if f is not None]
        if not boxes:  # a close-up the detector missed: let the face mesh look at the whole photo
            faces = [f for f in [_whole_image_mesh(rgb, min_confidence)] if f is not None]
        if not faces:  # faces too small for the downscaled photo: tiles, coarse to fine, until one is meshed
            for tiled in _tiled_face_boxes(rgb, min_confidence):
                faces = [_mesh_in_box(rgb, box, min_confidence, confirm=True) for box in tiled[:max_faces]]
                faces = [f for f in faces if f is not None]
                if faces:
                    boxes = tiled
                    break
    if not faces:
        raise NoFaceError(
            "no face was found in the image; use a photo with one clearly visible face, "
            "seen from the front or slightly to the side"
        )

    # 2. Largest first (landmark bounding-box area)
    faces = np.stack(faces)  # [N, 478, 3]
    extent = faces[..., :2].max(axis=1) - faces[..., :2].min(axis=1)  # [N, 2]
    faces = faces[np.argsort(-(extent[:, 0] * extent[:, 1]), kind="stable")].astype(np.float32)
    num = len(faces) + max(0, len(boxes) - max_faces)  # faces beyond max_faces were seen, not meshed
    message = f"{num} faces were found; using the largest one." if num > 1 else None
    return FaceLandmarks(faces[0], (width, height), num, message, faces)


def draw_landmarks(image: Image.Image, points: np.ndarray, *, radius: float | None = None) -> Image.Image:
    """A copy of ``image`` with the landmarks ``[478, >=2]`` (pixels of this image) drawn as dots and the
    face's contours (oval, brows, eyes, lips) as lines."""
    from PIL import ImageDraw


    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    radius = radius if radius is not None else max(1.0, out.size[0] / 400.0)
    width = max(1, round(radius))
    for name, chain in REGIONS.items():
        if name in ("head_sides", "mouth_corners", "nose", "jaw_line") or name.endswith("iris"):
            continue
        loop = list(chain) + ([chain[0]] if name == "face_oval" else [])
        draw.line([tuple(points[i, :2]) for i in loop], fill=(255, 196, 0), width=width)
    for x, y in points[:, :2]:
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=(0, 230, 90))
    return out
