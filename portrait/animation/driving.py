"""Motion from a driving video, as the project's face controls (numpy; mediapipe through the tracker).

Every frame's controls are *relative to the driving video's first frame with a face* and are applied to the
photo as photographed (LivePortrait's relative mode):

- Pose: the rotation between the driver's first and current face (:func:`portrait.face.measure.head_rotation`,
  in the driver's own head axes), applied in the photo's head axes; ``R_new = R_d,i R_d,0^T R_s``.
- Expression: the change of the driver's mouth width, mouth opening and brow height (3-D, in units of its own
  eye distance, so a driver with a different face or at another distance does not distort the person), each
  divided by how much one unit of the control changes that measure on the photo's own face mesh
  (:func:`expression_gains`); eye closing as the share of the driver's first eye opening that closed.

Then the controls are smoothed by a One Euro filter (:data:`SMOOTHING`), run forward and then backward over the
clip (the whole clip is read before a frame is rendered), so the smoothing adds no lag. Frames where the
driver's face is lost hold the last good motion and are counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..face import FaceControls, FaceMesh, apply_controls
from ..face.controls import CONTROL_SPECS
from ..face.measure import FaceMeasures, head_rotation

NAMES = tuple(s.name for s in CONTROL_SPECS)
# which measure each expression control moves (eye_close is measured as a share of the first eye opening)
EXPRESSION_MEASURES = {"smile": "mouth_width", "jaw_open": "mouth_opening", "brow_raise": "brow_height"}


@dataclass(frozen=True)
class OneEuro:
    """One Euro filter settings (Casiez et al., CHI 2012), on each control divided by its slider's range.

    The cut-off frequency is ``min_cutoff + beta * |speed|`` Hz (speed in ranges per second, itself low-passed at
    ``d_cutoff`` Hz): a still head is smoothed hard (no jitter), a fast turn follows with little lag.
    """

    min_cutoff: float = 0.5
    beta: float = 0.3
    d_cutoff: float = 1.0


# Chosen on the two example photos' scripted clips (made from known controls; tests/test_animation.py checks the
# first): forward and backward, these bring the tracked pose's frame-to-frame acceleration down 8-50x, to about
# the script's own, for a mean pose error to the script of 1-1.5 % of each slider's range. A min_cutoff of 1.0
# left the astronaut, driven by her own clip, shaking more than the clip (`eval --animation --self`).
SMOOTHING = OneEuro()


def one_euro(values: np.ndarray, fps: float, settings: OneEuro = SMOOTHING) -> np.ndarray:
    """``[N, C]`` values filtered along the first axis (causal: each frame sees only the past)."""
    values = np.asarray(values, dtype=np.float64)
    out = values.copy()
    if len(values) < 2:
        return out
    dt = 1.0 / fps

    def alpha(cutoff):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    speed = np.zeros(values.shape[1])
    a_d = alpha(settings.d_cutoff)
    for i in range(1, len(values)):
        speed = a_d * (values[i] - out[i - 1]) / dt + (1 - a_d) * speed
        a = alpha(settings.min_cutoff + settings.beta * np.abs(speed))
        out[i] = a * values[i] + (1 - a) * out[i - 1]
    return out


def smooth(values: np.ndarray, fps: float, settings: OneEuro = SMOOTHING) -> np.ndarray:
    """``[N, C]`` values filtered by :func:`one_euro` forward, then backward (zero-phase: no lag)."""
    return one_euro(one_euro(values, fps, settings)[::-1], fps, settings)[::-1]


def expression_gains(mesh: FaceMesh) -> dict[str, float]:
    """How much one unit of each expression control changes its measure on this face mesh (eye distances)."""
    base = FaceMeasures.of(mesh.vertices)
    gains = {}
    for name, measure in EXPRESSION_MEASURES.items():
        moved = FaceMeasures.of(apply_controls(mesh, FaceControls(**{name: 1.0})).vertices)
        gains[name] = getattr(moved, measure) - getattr(base, measure)
    return gains


def relative_controls(reference: np.ndarray, landmarks: np.ndarray, gains: dict[str, float]) -> np.ndarray:
    """``[7]`` control values (``NAMES`` order) moving the driver's ``reference`` face to ``landmarks``."""
    values = dict(zip(("yaw", "pitch", "roll"), head_rotation(reference, landmarks)))
    first, now = FaceMeasures.of(reference), FaceMeasures.of(landmarks)
    for name, measure in EXPRESSION_MEASURES.items():
        values[name] = (getattr(now, measure) - getattr(first, measure)) / gains[name]
    values["eye_close"] = 1.0 - now.eye_opening / max(first.eye_opening, 1e-6)
    return np.array([values[n] for n in NAMES])


@dataclass
class DrivingMotion:
    """The driving video's motion, one entry per frame.

    Attributes:
        values: ``[N, 7]`` control values (``NAMES`` order), relative to the first face, smoothed and clipped.
        raw: ``[N, 7]`` the same before smoothing (lost frames hold the last good values).
        landmarks: ``[N, 478, 3]`` float32 the driver's landmarks in its frames' pixels, NaN where it was lost.
        fps: the driving video's frame rate.
    """

    values: np.ndarray
    raw: np.ndarray
    landmarks: np.ndarray
    fps: float

    def __len__(self) -> int:
        return len(self.values)

    @property
    def found(self) -> np.ndarray:
        return np.isfinite(self.landmarks[:, 0, 0])

    @property
    def lost(self) -> int:
        """Frames where the driver's face was not found (they hold the last good motion)."""
        return int((~self.found).sum())

    def controls(self, index: int) -> FaceControls:
        return FaceControls(**dict(zip(NAMES, map(float, self.values[index]))))


def motion_from_landmarks(landmarks: np.ndarray, fps: float, gains: dict[str, float],
                          smoothing: OneEuro | None = SMOOTHING) -> DrivingMotion:
    """The controls of a landmark track ``[N, 478, 3]`` (NaN = face lost in that frame)."""
    landmarks = np.asarray(landmarks, dtype=np.float32)
    found = np.isfinite(landmarks[:, 0, 0])
    raw = np.zeros((len(landmarks), len(NAMES)))
    if found.any():
        reference = landmarks[np.argmax(found)]
        last = raw[0]
        for i in range(len(landmarks)):
            if found[i]:
                last = relative_controls(reference, landmarks[i], gains)
            raw[i] = last
    lo = np.array([s.minimum for s in CONTROL_SPECS])
    hi = np.array([s.maximum for s in CONTROL_SPECS])
    values = raw.copy() if smoothing is None else smooth(raw / (hi - lo), fps, smoothing) * (hi - lo)
    values[np.abs(values) < 1e-6] = 0.0  # round-off: a driver at rest gives the photo back exactly
    return DrivingMotion(values=np.clip(values, lo, hi), raw=raw, landmarks=landmarks, fps=fps)


def track(frames, fps: float, mesh: FaceMesh, smoothing: OneEuro | None = SMOOTHING) -> DrivingMotion:
    """The motion of the face in ``frames`` (an iterable of RGB ``[H, W, 3]`` uint8) for the photo's ``mesh``."""
    from ..face.tracking import track_landmarks

    return motion_from_landmarks(track_landmarks(frames), fps, expression_gains(mesh), smoothing)
