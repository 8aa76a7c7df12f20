"""Measuring a face offline (numpy, no torch): who it is, how it is turned, how its mouth and eyes are set.

- :func:`identity_distance`: dlib's ResNet face descriptors (``pip install -r requirements-dev.txt``:
  ``dlib-bin`` and ``face-recognition-models``); Euclidean distance, under 0.6 = the same person.
- :class:`FaceMeasures`: mouth width, mouth opening and eye opening from mediapipe's landmarks, in units of
  the eye distance (3-D, so a turned head keeps its proportions).
- :func:`head_rotation`: yaw, pitch, roll between two landmark sets by 3-D similarity alignment of the face's
  rigid points, with :mod:`portrait.face.controls`' axes and signs.
- :func:`psnr` over a region.

Landmarks are ``[478, 3]`` in image pixels with mediapipe's relative depth in x-pixel scale
(:func:`portrait.face.detect_landmarks`).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import NoFaceError, PortraitError
from .controls import FaceFrame
from .landmarks import detect_landmarks
from .mesh import REGIONS, FaceMesh, eye_centres, region

SAME_PERSON = 0.6  # dlib's threshold on the descriptor distance
# the face's rigid points: the face oval above the jaw, the nose, the eye corners (no lips, lids, brows, irises)
RIGID = np.setdiff1d(
    np.concatenate([region("face_oval", "nose"), [REGIONS[n][i] for n in ("right_eye_upper", "left_eye_upper")
                                                  for i in (0, -1)]]),
    region("jaw_line"),
)


# --- identity ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _dlib_models():
    """``(detector, 5-point shape predictor, face recognition model)``, loaded once."""
    try:
        import dlib
    except ImportError as err:
        raise PortraitError("identity needs dlib: pip install -r requirements-dev.txt") from err
    spec = importlib.util.find_spec("face_recognition_models")  # not imported: its __init__ needs pkg_resources
    if spec is None or not spec.submodule_search_locations:
        raise PortraitError("identity needs face-recognition-models: pip install -r requirements-dev.txt")
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat")),
        dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat")),
    )


def face_descriptor(image: Image.Image | np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
    """dlib's ``[128]`` face descriptor of the face in an RGB image.

    The face is the one of ``landmarks`` (``[478, >=2]`` image pixels; detected with mediapipe when None):
    dlib's frontal detection around its nose, else a box from the landmarks (turned faces). Without any
    mediapipe face, dlib's most confident detection. Raises ``NoFaceError`` when neither finds a face.
    """
    import dlib

    detector, predictor, recognizer = _dlib_models()
    rgb = np.ascontiguousarray(np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image))
    if landmarks is None:
        try:
            landmarks = detect_landmarks(rgb).points
        except NoFaceError:
            pass
    boxes, scores, _ = detector.run(rgb, 1, 0.0)
    if landmarks is not None:
        nose_x, nose_y = landmarks[REGIONS["nose"][0], :2]
        inside = [b for b in boxes if b.left() <= nose_x <= b.right() and b.top() <= nose_y <= b.bottom()]
        if inside:
            box = max(inside, key=lambda b: b.area())
        else:  # the landmarks' box made square, a little inside (dlib's boxes skip the forehead)
            x0, y0 = landmarks[:, :2].min(axis=0)
            x1, y1 = landmarks[:, :2].max(axis=0)
            half = 0.45 * ((x1 - x0) + (y1 - y0)) / 2.0
            cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
            box = dlib.rectangle(round(cx - half), round(cy - half), round(cx + half), round(cy + half))
    elif boxes:
        box = boxes[int(np.argmax(scores))]
    else:
        raise NoFaceError("no face was found for the identity descriptor")
    return np.asarray(recognizer.compute_face_descriptor(rgb, predictor(rgb, box)), dtype=np.float64)


def identity_distance(image_a: Image.Image | np.ndarray, image_b: Image.Image | np.ndarray) -> float:
    """Face-recognition distance between the largest faces of two RGB images (< 0.6: the same person)."""
    return float(np.linalg.norm(face_descriptor(image_a) - face_descriptor(image_b)))


# --- geometry from landmarks ------------------------------------------------------------------------------


@dataclass
class FaceMeasures:
    """Expression measures of one face; all but ``iod`` in units of ``iod`` (3-D)."""

    iod: float  # distance between the eye centres, in image pixels
    mouth_width: float  # outer mouth corners (61-291)
    mouth_opening: float  # inner lips at the middle (13-14)
    # the lids' gap averaged along the eye: the area between its lid contours in the face's plane over its width,
    # mean of both eyes. Not the distance of the lids' middle landmarks: those (159 and 145) are neither above each
    # other nor at one depth, so lids that meet would still read about 0.05 eye distances apart (a narrow open eye:
    # 0.125)
    eye_opening: float
    brow_height: float  # each eyebrow's centre from its eye's corners (they stay when the lids close), mean of both

    @classmethod
    def of(cls, landmarks: np.ndarray) -> FaceMeasures:
        p = np.asarray(landmarks, dtype=np.float64)
        right, left = eye_centres(p)
        iod = float(np.linalg.norm(left - right))

        def dist(i: int, j: int) -> float:
            return float(np.linalg.norm(p[i] - p[j])) / iod

        brows = [np.linalg.norm(p[list(REGIONS[brow])].mean(axis=0) - p[list(corners)].mean(axis=0)) / iod
                 for brow, corners in (("right_eyebrow", (33, 133)), ("left_eyebrow", (263, 362)))]
        across = p[[263, 362]].mean(axis=0) - p[[33, 133]].mean(axis=0)  # eye corners: they stay as the lids close
        down = p[2] - p[168]  # the nose, bridge to base
        plane = np.stack([across, down - across * (down @ across) / (across @ across)])
        plane /= np.linalg.norm(plane, axis=1, keepdims=True)
        eyes = [_lid_gap(*(p[list(REGIONS[f"{side}_eye_{lid}"])] @ plane.T for lid in ("upper", "lower")))
                for side in ("right", "left")]
        return cls(iod=iod, mouth_width=dist(61, 291), mouth_opening=dist(13, 14),
                   eye_opening=float(np.mean(eyes)) / iod, brow_height=float(np.mean(brows)))


def _lid_gap(upper: np.ndarray, lower: np.ndarray) -> float:
    """The mean gap between an eye's lid contours ``[N, 2]`` (corner to corner, in the face's plane): the area
    between them (shoelace) over the distance between the corners."""
    x, y = np.concatenate([upper, lower[-2:0:-1]]).T
    area = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    return area / max(abs(float(upper[-1, 0] - upper[0, 0])), 1e-9)


def similarity_transform(a: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama: ``(s, R, t)`` minimising ``|| b - (s R a + t) ||`` over ``[N, 3]`` point pairs (R proper)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ma, mb = a.mean(axis=0), b.mean(axis=0)
    ca, cb = a - ma, b - mb
    u, sig, vt = np.linalg.svd(cb.T @ ca / len(a))
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ d @ vt
    scale = float(np.trace(np.diag(sig) @ d) / (ca**2).sum(axis=1).mean())
    return scale, rot, mb - scale * rot @ ma


def head_rotation(landmarks_a: np.ndarray, landmarks_b: np.ndarray) -> tuple[float, float, float]:
    """``(yaw, pitch, roll)`` degrees that turn face A into face B (``[478, 3]`` landmarks, image pixels).

    The rotation of the rigid points' similarity alignment, in A's own face frame and with the conventions
    of :func:`portrait.face.apply_controls`: positive yaw turns the face to the viewer's right, positive
    pitch tilts the chin up, positive roll tilts the head clockwise on screen.
    """
    a, b = np.asarray(landmarks_a, dtype=np.float64), np.asarray(landmarks_b, dtype=np.float64)
    _, rot, _ = similarity_transform(a[RIGID], b[RIGID])
    axes = FaceFrame.of(FaceMesh(vertices=a)).axes
    local = axes @ rot @ axes.T  # = Rz(roll) Rx(-pitch) Ry(-yaw), as apply_controls composes it
    pitch = -math.degrees(math.asin(np.clip(local[2, 1], -1.0, 1.0)))
    yaw = -math.degrees(math.atan2(-local[2, 0], local[2, 2]))
    roll = math.degrees(math.atan2(-local[0, 1], local[1, 1]))
    return yaw, pitch, roll


# --- pixels -----------------------------------------------------------------------------------------------


def psnr(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray, region: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio (dB, 8-bit peak) of two same-size images over a boolean ``[H, W]`` region
    (default: everywhere); ``inf`` when identical there, NaN for an empty region."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"images differ in size: {x.shape} vs {y.shape}")
    if region is not None:
        x, y = x[region], y[region]
    if x.size == 0:
        return float("nan")
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0.0 else 10.0 * math.log10(255.0**2 / mse)
