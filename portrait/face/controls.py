"""Pose and expression controls for a face mesh (numpy only).

``CONTROL_SPECS`` is the documented parameter set (names, ranges, defaults, labels) that the CLI and the
app read to build their flags and sliders; :class:`FaceControls` holds one value per control.

- Pose: ``yaw``, ``pitch``, ``roll`` in degrees, rotations about the head's centre (midway between the
  head's sides, near the ears) and the head's own axes. Positive yaw turns the face towards the viewer's
  right, positive pitch tilts the chin up, positive roll tilts the head clockwise on screen.
- Expressions: ``smile`` (-1 = frown, 1 = broad smile), ``jaw_open`` (0..1), ``brow_raise`` (-1 = lowered,
  1 = raised), ``eye_close`` (0 = as photographed, 1 = closed).

Every expression uses the same mechanism: the :data:`EXPRESSIONS` table lists *handles*, each a set of
anchor regions (from :data:`portrait.face.mesh.REGIONS`), a motion (translation, rotation about an axis, or
towards target landmarks) and a radius. A vertex moves by ``amount x weight x motion``, where the weight
is 1 on and near the anchors and falls smoothly to 0 at the radius (and to 0 at the handle's excluded
regions, e.g. the upper lip when the jaw opens). Distances and motions are measured in the face's own
frame in units of the eye distance, so expressions do not depend on pose or crop size. Zero controls return
the mesh unchanged, exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from .mesh import REGIONS, FaceMesh, eye_centres, region


@dataclass(frozen=True)
class ControlSpec:
    """One control: its name (the ``FaceControls`` field), range, default, label and unit for a UI."""

    name: str
    label: str
    minimum: float
    maximum: float
    default: float = 0.0
    step: float = 0.05
    unit: str = ""
    help: str = ""


# fmt: off
CONTROL_SPECS: tuple[ControlSpec, ...] = (
    ControlSpec("yaw", "Yaw (turn)", -45.0, 45.0, step=1.0, unit="deg", help="positive turns the face to the viewer's right"),
    ControlSpec("pitch", "Pitch (nod)", -30.0, 30.0, step=1.0, unit="deg", help="positive tilts the chin up"),
    ControlSpec("roll", "Roll (tilt)", -30.0, 30.0, step=1.0, unit="deg", help="positive tilts the head clockwise"),
    ControlSpec("smile", "Smile", -1.0, 1.0, help="mouth corners up and out; negative = frown"),
    ControlSpec("jaw_open", "Jaw open", 0.0, 1.0, help="lowers the jaw and the lower lip"),
    ControlSpec("brow_raise", "Brow raise", -1.0, 1.0, help="raises the eyebrows; negative lowers them"),
    ControlSpec("eye_close", "Eye close", 0.0, 1.0, help="lowers the upper eyelids; 1 = closed"),
)
# fmt: on


@dataclass
class FaceControls:
    """Pose (degrees) and expression values; see :data:`CONTROL_SPECS` for ranges. 0 everywhere = unchanged."""

    SPECS: ClassVar[tuple[ControlSpec, ...]] = CONTROL_SPECS

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    smile: float = 0.0
    jaw_open: float = 0.0
    brow_raise: float = 0.0
    eye_close: float = 0.0

    @classmethod
    def spec(cls, name: str) -> ControlSpec:
        for s in cls.SPECS:
            if s.name == name:
                return s
        raise KeyError(f"unknown control {name!r}; known: {[s.name for s in cls.SPECS]}")

    @classmethod
    def from_dict(cls, values: dict[str, float]) -> FaceControls:
        """Build from ``{name: value}``; unknown names raise ``ValueError``, missing ones take their default."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown face control(s) {unknown}; known: {sorted(names)}")
        return cls(**{k: float(v) for k, v in values.items()})

    def to_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}

    def clipped(self) -> FaceControls:
        """A copy with every value clipped to its spec's range."""
        return FaceControls(
            **{s.name: float(np.clip(getattr(self, s.name), s.minimum, s.maximum)) for s in self.SPECS}
        )

    def is_identity(self) -> bool:
        return all(getattr(self, f.name) == 0.0 for f in fields(self))


# --- expressions: one table of handles, one mechanism -----------------------------------------------------


@dataclass(frozen=True)
class Handle:
    """Part of an expression: anchors, a motion per unit of the control, and where it fades out.

    ``motion`` is one of:
      - ``("translate", (dx, dy, dz))``: in face-frame units (eye distances) per unit of the control; with
        ``mirror`` the x component points away from the face's midline (outwards) on each side;
      - ``("rotate", (axis, degrees, pivot))``: rotation about the face-frame ``axis`` through ``pivot``;
      - ``("to_targets", target_region)``: each anchor moves onto the target chain (the point of
        ``target_region`` at the same face-frame x); the motion of other vertices is interpolated.
    ``core`` and ``radius`` (eye distances): weight 1 up to ``core`` from the nearest anchor, 0 from ``radius``.
    ``exclude``: regions that stay fixed (weight 0, fading in around them); they are never anchors.
    """

    anchors: tuple[str, ...]
    motion: tuple
    radius: float
    core: float = 0.0
    exclude: tuple[str, ...] = ()
    mirror: bool = False


EXPRESSIONS: dict[str, tuple[Handle, ...]] = {
    # mouth corners up, out and slightly back; the lips follow a little
    "smile": (
        Handle(("mouth_corners",), ("translate", (0.10, -0.12, 0.05)), radius=0.7, core=0.05, mirror=True),
        Handle(
            ("upper_lip_outer", "upper_lip_inner", "lower_lip_outer", "lower_lip_inner"),
            ("translate", (0.0, -0.04, 0.0)),
            radius=0.5,
            core=0.05,
        ),
    ),
    # the lower lip, chin and jaw line turn down and back about an axis behind the mouth; the upper lip,
    # the mouth corners and the nose stay
    "jaw_open": (
        Handle(
            ("lower_lip_outer", "lower_lip_inner", "jaw_line"),
            ("rotate", ((1.0, 0.0, 0.0), 14.0, (0.0, -0.1, 0.3))),
            radius=0.75,
            core=0.4,
            exclude=("upper_lip_outer", "upper_lip_inner", "mouth_corners", "nose"),
        ),
    ),
    # both eyebrows (and the forehead near them) move up; the eyes and the nose stay
    "brow_raise": (
        Handle(
            ("right_eyebrow", "left_eyebrow"),
            ("translate", (0.0, -0.12, 0.0)),
            radius=0.55,
            core=0.05,
            exclude=("right_eye_upper", "right_eye_lower", "left_eye_upper", "left_eye_lower", "nose"),
        ),
    ),
    # each upper lid moves onto its lower lid; the lower lids and the brows stay
    "eye_close": (
        Handle(
            ("right_eye_upper",),
            ("to_targets", "right_eye_lower"),
            radius=0.3,
            exclude=("right_eye_lower", "right_eyebrow"),
        ),
        Handle(
            ("left_eye_upper",),
            ("to_targets", "left_eye_lower"),
            radius=0.3,
            exclude=("left_eye_lower", "left_eyebrow"),
        ),
    ),
}


@dataclass
class FaceFrame:
    """The face's own frame: origin at the head's centre, x towards the subject's left eye, y down the
    face (eyes to mouth), z into the head (away from the camera for a frontal face); unit = eye distance."""

    origin: np.ndarray  # [3]
    axes: np.ndarray  # [3, 3], rows = x, y, z axes in the camera frame
    scale: float  # eye distance in camera units

    @classmethod
    def of(cls, mesh: FaceMesh) -> FaceFrame:
        v = mesh.vertices
        right_eye, left_eye = eye_centres(v)
        mouth = v[list(REGIONS["mouth_corners"][:2])].mean(axis=0)
        x = left_eye - right_eye
        scale = float(np.linalg.norm(x))
        x = x / scale
        y = mouth - (right_eye + left_eye) / 2.0
        y = y - x * (y @ x)
        y = y / np.linalg.norm(y)
        z = np.cross(x, y)
        return cls(origin=mesh.head_centre(), axes=np.stack([x, y, z]), scale=scale)

    def to_face(self, points: np.ndarray) -> np.ndarray:
        return (points - self.origin) @ self.axes.T / self.scale

    def vectors_to_camera(self, vectors: np.ndarray) -> np.ndarray:
        return vectors @ self.axes * self.scale


def apply_controls(mesh: FaceMesh, controls: FaceControls) -> FaceMesh:
    """Deform the mesh by the expressions, then turn it about the head's centre; returns a new mesh.

    Values outside a control's range are clipped. ``FaceControls()`` returns an exact copy.
    """
    controls = controls.clipped()
    vertices = mesh.vertices.copy()
    if controls.is_identity():
        return mesh.copy(vertices=vertices)
    frame = FaceFrame.of(mesh)
    local = frame.to_face(mesh.vertices)  # [N, 3] in eye distances

    # 1. Expressions: sum of every handle's displacement, computed on the neutral face
    displacement = np.zeros_like(local)
    for name, handles in EXPRESSIONS.items():
        amount = float(getattr(controls, name))
        if amount == 0.0:
            continue
        for handle in handles:
            displacement += _handle_displacement(local, handle, amount)
    vertices = vertices + frame.vectors_to_camera(displacement)

    # 2. Pose: rotate about the head's centre, in the head's own axes
    if controls.yaw or controls.pitch or controls.roll:
        centred = vertices - frame.origin
        vertices = vertices + centred @ (pose_rotation(frame, controls) - np.eye(3)).T
    return mesh.copy(vertices=vertices)


def pose_rotation(frame: FaceFrame, controls: FaceControls) -> np.ndarray:
    """``[3, 3]`` camera-frame rotation of the controls' yaw, pitch and roll, taken in the head's own axes."""
    local = _rotation("z", controls.roll) @ _rotation("x", -controls.pitch) @ _rotation("y", -controls.yaw)
    return frame.axes.T @ local @ frame.axes


def expression_weights(mesh: FaceMesh, name: str) -> np.ndarray:
    """``[478]`` weights in [0, 1] of the expression ``name`` (its handles' maximum): where it can move the face."""
    local = FaceFrame.of(mesh).to_face(mesh.vertices)
    return np.max([_handle_weights(local, h) for h in EXPRESSIONS[name]], axis=0)


def _anchors(handle: Handle) -> np.ndarray:
    """The handle's anchor landmarks; excluded landmarks are never anchors (e.g. shared lip corners)."""
    anchors = region(*handle.anchors)
    return np.setdiff1d(anchors, region(*handle.exclude)) if handle.exclude else anchors


def _handle_weights(local: np.ndarray, handle: Handle) -> np.ndarray:
    """``[N]`` weight of each vertex: 1 within ``core`` of an anchor, smoothly 0 at ``radius``, 0 on excluded."""
    anchors = _anchors(handle)
    d_anchor = _nearest_distance(local, local[anchors])
    t = np.clip((d_anchor - handle.core) / max(handle.radius - handle.core, 1e-9), 0.0, 1.0)
    weight = 1.0 - t * t * (3.0 - 2.0 * t)  # smoothstep falloff
    if handle.exclude:
        excluded = region(*handle.exclude)
        d_excl = _nearest_distance(local, local[excluded])
        weight *= d_excl**4 / np.maximum(d_excl**4 + d_anchor**4, 1e-30)
        weight[excluded] = 0.0
    return weight


def _handle_displacement(local: np.ndarray, handle: Handle, amount: float) -> np.ndarray:
    """``[N, 3]`` face-frame displacement of one handle at control value ``amount``."""
    kind, params = handle.motion
    anchors = _anchors(handle)
    if kind == "translate":
        field = np.broadcast_to(np.asarray(params, dtype=np.float64) * amount, local.shape).copy()
        if handle.mirror:
            field[:, 0] *= np.clip(local[:, 0] / 0.25, -1.0, 1.0)  # outwards, smoothly through the midline
    elif kind == "rotate":
        axis, degrees, pivot = params
        rot = _axis_rotation(np.asarray(axis, dtype=np.float64), degrees * amount)
        centred = local - np.asarray(pivot, dtype=np.float64)
        field = centred @ (rot - np.eye(3)).T
    elif kind == "to_targets":
        targets = _chain_at_x(local[list(REGIONS[params])], local[anchors, 0])  # [A, 3]
        field = _interpolate(local, local[anchors], (targets - local[anchors]) * amount)
    else:
        raise ValueError(f"unknown motion {kind!r}")
    return _handle_weights(local, handle)[:, None] * field


def _nearest_distance(points: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    return np.sqrt(((points[:, None, :] - anchors[None, :, :]) ** 2).sum(-1)).min(axis=1)


def _interpolate(points: np.ndarray, anchors: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Inverse-distance (Shepard) interpolation of anchor ``values`` [A, 3] at ``points`` [N, 3]."""
    d2 = ((points[:, None, :] - anchors[None, :, :]) ** 2).sum(-1)  # [N, A]
    w = 1.0 / (d2 + 1e-6) ** 2
    return (w @ values) / w.sum(axis=1, keepdims=True)


def _chain_at_x(chain: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Points of a polyline ``[K, 3]`` (ordered along x) at the given x values, linearly interpolated."""
    order = np.argsort(chain[:, 0])
    c = chain[order]
    return np.stack([x, np.interp(x, c[:, 0], c[:, 1]), np.interp(x, c[:, 0], c[:, 2])], axis=1)


def _rotation(axis: str, degrees: float) -> np.ndarray:
    return _axis_rotation(
        {"x": np.array([1.0, 0, 0]), "y": np.array([0, 1.0, 0]), "z": np.array([0, 0, 1.0])}[axis], degrees
    )


def _axis_rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    """Right-handed rotation matrix about a unit ``axis`` (Rodrigues)."""
    if degrees == 0.0:
        return np.eye(3)
    axis = axis / np.linalg.norm(axis)
    a = math.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * (k @ k)
