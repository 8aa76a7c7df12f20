"""Moving a head layer by the pose and expression controls (numpy, scipy; no torch).

- Expressions (smile, brows): the face mesh's landmarks move as :func:`portrait.face.apply_controls`
  moves them; that sparse motion is spread over the layer by one thin-plate-spline interpolation in the
  crop's image plane, anchored at zero on the layer's silhouette and the crop's border.
- Eyes: each upper lid slides down over its eye opening (which sinks a little and stays) onto the lower lid,
  its lashes whole, the skin up to the brow stretching (``_lid_motion``).
- Jaw: a hinge rotation of the lower face about the axis of the ``jaw_open`` expression, full below the
  inner lip contour (where the layer is cut), fading out towards the ears and down the neck.
- Pose: a rotation about the head's centre in the head's own axes, its angle fading from full at the jaw line to
  zero ``NECK_FADE`` below it (by the bottom of the crop at the latest), so the neck stays under the turning head and
  the collar does not shear. A turn or a nod also fades out towards the head's outline, which stays where it was,
  as a real head's silhouette about does; a roll turns the outline too. The head is turned as if its relief were
  ``relief`` times deeper along its own front-to-back axis (see ``DEFAULT_RELIEF``); unmoved, every vertex stays
  on its pixel.
"""

from __future__ import annotations

import numpy as np

from ..face import FaceControls, apply_controls
from ..face.controls import EXPRESSIONS, FaceFrame, _chain_at_x, pose_rotation
from ..face.mesh import REGIONS, eye_centres
from .layer import EYES, MOUTH, HeadLayer

# How far a turn (yaw) and a nod (pitch) move the head, as re-measured by mediapipe on the edit (`python -m portrait
# eval --edits` on the two examples and their copies; README, "Editing real photos"): the head turns as if this many
# times deeper along its own front-to-back axis, for turns and for nods. While the whole layer turned, its outline
# moved in with the face and took mediapipe's face outline with it, and turns needed 1.45 to re-measure 20 degrees
# (nods 1.2). With the outline kept in place (`_outline_weight`) 1.45 re-measures yaw +-20 at 22-26 degrees; (1.2,
# 1.2) re-measured yaw at 18.6-24.0 and pitch +-10 at 9.6-14.0 (4 of 20 past 13); (1.15, 1.0) yaw at 18.8-22.9,
# pitch at 7.5-12.3, every one in its band, mean errors 1.2 and 1.1 degrees.
DEFAULT_RELIEF = (1.15, 1.0)
OUTLINE_FADE = 0.3  # eye distances inside the head's outline over which a turn or a nod fades in
RBF_GRID = 128  # the expression field is evaluated on this grid over the crop, then interpolated
ANCHOR_CELL = 1 / 64  # part of the crop's side between the expression field's zero anchors along the head's outline
NECK_FADE = 0.3  # eye distances below the jaw line over which a turn, a nod or a roll fades out down the neck
JAW_FADE_SIDE = 0.8  # eye distances past the mouth corners over which the jaw's rotation fades out
JAW_FADE_NECK = 0.5  # eye distances below the jaw line over which it fades out
JAW_LIP = 0.4  # eye distances below the lips from which the jaw's turn is whole, corners included
LID_BAND = 0.04  # closing eyes: eye distances above the upper lid's landmarks that slide down whole
LID_FADE_SIDE = 0.1  # eye distances past an eye's corners over which its lid's motion fades out
EYE_RECESS = 0.05  # closing eyes: the eye openings sink this many eye distances, so the lids pass in front


def move(layer: HeadLayer, controls: FaceControls, relief: float | tuple[float, float] = DEFAULT_RELIEF) -> np.ndarray:
    """``[V, 3]`` vertices of ``layer.mesh`` moved by ``controls`` (clipped to their ranges); unmoved for zero."""
    controls = controls.clipped()
    vertices = np.asarray(layer.mesh.vertices, dtype=np.float64).copy()
    if controls.is_identity():
        return vertices
    frame = FaceFrame.of(layer.face)
    local = frame.to_face(vertices)  # [V, 3] eye distances, the face's own frame

    # 1. Expressions but the jaw: the landmarks' motion, spread by a thin-plate spline
    faces_only = FaceControls(smile=controls.smile, brow_raise=controls.brow_raise)
    if not faces_only.is_identity():
        moved = apply_controls(layer.face, faces_only).vertices
        vertices += _spread(layer, moved - layer.face.vertices)
    if controls.eye_close:
        eyes = layer.parts == EYES
        lids = _lid_motion(layer, frame, local) * controls.eye_close
        lids[eyes] = 0.0
        vertices += frame.vectors_to_camera(lids)
        # along each pixel's ray: the eyes look the same, only farther
        vertices[eyes] *= (1 + EYE_RECESS * frame.scale / vertices[eyes, 2])[:, None]

    # 2. Jaw: a hinge
    if controls.jaw_open:
        axis, degrees, pivot = dict([h.motion for h in EXPRESSIONS["jaw_open"]])["rotate"]
        weight = _jaw_weight(layer, frame, local)
        turned = _rotate(local, np.asarray(axis, float), np.radians(degrees * controls.jaw_open) * weight,
                         np.asarray(pivot, float))
        vertices += frame.vectors_to_camera(turned - local)

    # 3. Pose: about the head's centre, fading out down the neck; a turn or a nod also fades out towards the head's
    #    outline, which a roll turns with the rest
    neck = _neck_weight(layer) if controls.yaw or controls.pitch or controls.roll else None
    if controls.yaw or controls.pitch:
        turn = pose_rotation(frame, FaceControls(yaw=controls.yaw, pitch=controls.pitch))
        vertices = _turn(vertices, frame, turn, neck * _outline_weight(layer), relief)
    if controls.roll:
        vertices = _turn(vertices, frame, pose_rotation(frame, FaceControls(roll=controls.roll)), neck, relief)
    return vertices


def _turn(vertices: np.ndarray, frame: FaceFrame, rotation: np.ndarray, weight: np.ndarray,
          relief: float | tuple[float, float]) -> np.ndarray:
    """``vertices`` turned about the head's centre by ``rotation`` ``[3, 3]``, its angle times each vertex's ``weight``
    ``[V]``; each vertex moves as its twin with ``relief`` times its depth would (see ``DEFAULT_RELIEF``)."""
    axis, angle = _axis_angle(rotation)
    angle = angle * weight
    depth_axis = frame.axes[2]
    turned = _rotate(vertices, axis, angle, frame.origin) - vertices
    # what one more unit of relief adds to each vertex's motion; split along the head's sideways, up-down and
    # front-to-back axes, each taken as many times as that axis's relief says
    deeper = vertices + ((vertices - frame.origin) @ depth_axis)[:, None] * depth_axis
    extra = (_rotate(deeper, axis, angle, frame.origin) - deeper - turned) @ frame.axes.T  # head axes
    sideways, upright = relief if isinstance(relief, tuple) else (relief, relief)
    gain = np.array([sideways - 1, upright - 1, (sideways + upright) / 2 - 1])
    return vertices + turned + (extra * gain) @ frame.axes


# --- fields -------------------------------------------------------------------------------------------------


def _spread(layer: HeadLayer, displacement: np.ndarray) -> np.ndarray:
    """``[V, 3]``: the landmarks' ``displacement`` ``[478, 3]`` interpolated over the layer (thin-plate spline in
    the image plane), zero on the silhouette and the crop's border; eye openings stay where they are."""
    from scipy import ndimage
    from scipy.interpolate import RBFInterpolator

    size = layer.size
    points = layer.face.project(size)[:468] / size  # irises left out: they move with the eyeball
    values = displacement[:468]
    moving = np.linalg.norm(values, axis=1) > 0
    if not moving.any():  # e.g. an expression so small that it rounds away
        return np.zeros((len(layer.mesh.vertices), 3))
    # one anchor on the silhouette in each cell of side ANCHOR_CELL that it crosses (sampling the 1-pixel outline at
    # a grid's pixels would miss most of it, and the spline would move the silhouette where it misses)
    ys, xs = np.nonzero(layer.covered & ~ndimage.binary_erosion(layer.covered))
    cell = max(1, round(ANCHOR_CELL * size))
    _, first = np.unique((ys // cell) * size + xs // cell, return_index=True)
    border = np.linspace(0, 1, 17)
    anchors = np.concatenate([
        (np.stack([xs[first], ys[first]], 1) + 0.5) / size,
        np.stack([border, np.zeros_like(border)], 1), np.stack([border, np.ones_like(border)], 1),
        np.stack([np.zeros_like(border), border], 1), np.stack([np.ones_like(border), border], 1),
    ])
    # keep anchors away from moving landmarks (an anchor on top of a moving point makes the spline ring)
    reach = np.min(np.linalg.norm(anchors[:, None] - points[moving][None], axis=2), axis=1)
    anchors = anchors[reach > 0.04]
    rbf = RBFInterpolator(np.concatenate([points, anchors]), np.concatenate([values, np.zeros((len(anchors), 3))]),
                          kernel="thin_plate_spline", smoothing=1e-6)
    at = layer.mesh.vertex_attributes["pixel"] / size * RBF_GRID - 0.5  # [V, 2] grid coordinates
    # the spline is evaluated only at the grid's nodes that some vertex interpolates from (the head, not the crop)
    needed = np.zeros((RBF_GRID, RBF_GRID), bool)
    x0, y0 = np.clip(np.floor(at).astype(int), 0, RBF_GRID - 2).T  # each vertex's 2 x 2 nodes
    needed[y0, x0] = needed[y0 + 1, x0] = needed[y0, x0 + 1] = needed[y0 + 1, x0 + 1] = True
    rows, cols = np.nonzero(needed)
    grid = np.zeros((RBF_GRID, RBF_GRID, 3))
    grid[rows, cols] = rbf((np.stack([cols, rows], 1) + 0.5) / RBF_GRID)
    field = np.stack([ndimage.map_coordinates(grid[..., k], [at[:, 1], at[:, 0]], order=1, mode="nearest")
                      for k in range(3)], axis=1)
    field[layer.parts == EYES] = 0.0
    return field


def _lid_motion(layer: HeadLayer, frame: FaceFrame, local: np.ndarray) -> np.ndarray:
    """``[V, 3]`` face-frame motion of closed eyes. Over each eye the skin from its upper lid's landmarks up to
    ``LID_BAND`` above them (the lashes and the lid's margin) slides whole onto the lower lid's landmarks at the
    same x; above that band the motion fades out smoothly by the eyebrow's lower edge, so the skin between lid and
    brow stretches, not the lashes (a lash line stretched into a band reads as a half-open eye); past the eye's
    corners it fades out over ``LID_FADE_SIDE``. Below the upper lid nothing moves."""
    face = frame.to_face(layer.face.vertices)
    x, y = local[:, 0], local[:, 1]
    motion = np.zeros_like(local)
    for side in ("right", "left"):
        upper = _chain_at_x(face[list(REGIONS[f"{side}_eye_upper"])], x)
        lower = _chain_at_x(face[list(REGIONS[f"{side}_eye_lower"])], x)
        brow = _chain_at_x(face[list(REGIONS[f"{side}_eyebrow"][:5])], x)  # its lower edge
        height = upper[:, 1] - y  # above the upper lid (y points down the face)
        room = np.maximum(upper[:, 1] - brow[:, 1], 1e-3)
        band = np.minimum(LID_BAND, room / 2)
        weight = np.where(height < 0, 0.0, 1 - _smoothstep((height - band) / (room - band)))
        corners = face[list(REGIONS[f"{side}_eye_upper"]), 0]
        outside = np.maximum(corners.min() - x, 0) + np.maximum(x - corners.max(), 0)
        motion += (lower - upper) * (weight * (1 - _smoothstep(outside / LID_FADE_SIDE)))[:, None]
    return motion


def _jaw_weight(layer: HeadLayer, frame: FaceFrame, local: np.ndarray) -> np.ndarray:
    """``[V]`` in [0, 1]: how much of the jaw's turn each vertex takes. 0 on and above the upper lip; below the
    inner lip contour (where the layer is cut) the lower lip opens like a real mouth, most in the middle and not
    at all at the corners, where the cut ends; from ``JAW_LIP`` below the lips the chin and jaw take all of it;
    fading past the mouth corners towards the ears and down the neck."""
    face = frame.to_face(layer.face.vertices)
    lips = ("upper_lip_inner", "lower_lip_inner")
    line = sum(_chain_at_x(face[list(REGIONS[lip])], local[:, 0])[:, 1] for lip in lips) / 2  # [V]
    corners = face[list(REGIONS["mouth_corners"][2:]), 0]  # the inner corners: where the cut ends
    centre, half = float(corners.mean()), float(np.abs(corners - corners.mean()).max())
    across = np.abs(local[:, 0] - centre)
    side = np.maximum(across - half, 0.0)  # past the corners
    below = local[:, 1] - line
    open_lip = np.clip(1 - (across / half) ** 2, 0, 1)  # the lower lip's share along the mouth
    chin = np.clip(below / JAW_LIP, 0, 1)
    jaw = _chain_at_x(face[list(REGIONS["jaw_line"])], local[:, 0])[:, 1]
    lowest = float(layer.face.project(layer.size)[list(REGIONS["jaw_line"]), 1].max())  # the chin, crop pixels
    neck = (1 - _smoothstep((local[:, 1] - jaw) / JAW_FADE_NECK)) * _above_crop_bottom(layer, lowest)
    weight = (below > 0) * (open_lip * (1 - chin) + chin) * (1 - _smoothstep(side / JAW_FADE_SIDE)) * neck
    weight[layer.parts == MOUTH] = 0.0  # what shows between the lips belongs to the upper jaw
    return weight


def _outline_weight(layer: HeadLayer) -> np.ndarray:
    """``[V]`` in [0, 1]: 0 on the layer's outline, rising smoothly to 1 at ``OUTLINE_FADE`` eye distances inside it
    (the crop's border is no outline). A real head turned or nodded keeps about its silhouette, since its sides
    and back come round into view; the layer has no sides, so its outline stays and the face turns inside it:
    the side coming into view stretches, the side turning away is foreshortened."""
    from scipy import ndimage

    right, left = eye_centres(layer.face.project(layer.size))
    inside = ndimage.distance_transform_edt(layer.covered)  # pixels to the nearest uncovered pixel
    at = np.clip(np.floor(layer.mesh.vertex_attributes["pixel"]).astype(int), 0, layer.size - 1)
    return _smoothstep(inside[at[:, 1], at[:, 0]] / (OUTLINE_FADE * float(np.linalg.norm(left - right))))


def _neck_weight(layer: HeadLayer) -> np.ndarray:
    """``[V]`` in [0, 1]: 1 down to the jaw line (at each vertex's column; beside the face, at the jaw's ends), falling
    smoothly to 0 at ``NECK_FADE`` eye distances below it, and by the bottom of the crop at the latest. The neck
    under the jaw stays as the head turns on it, so the collar beside it does not shear."""
    points = layer.face.project(layer.size)
    right, left = eye_centres(points)
    jaw = points[list(REGIONS["jaw_line"])]
    order = np.argsort(jaw[:, 0])
    x, y = layer.mesh.vertex_attributes["pixel"].T
    below = y - np.interp(x, jaw[order, 0], jaw[order, 1])
    fade = 1.0 - _smoothstep(below / (NECK_FADE * float(np.linalg.norm(left - right))))
    return fade * _above_crop_bottom(layer, float(jaw[:, 1].max()))


def _above_crop_bottom(layer: HeadLayer, chin: float) -> np.ndarray:
    """``[V]`` in [0, 1]: 1 down to the ``chin`` (crop pixels), falling smoothly to 0 at the bottom of the crop."""
    y = layer.mesh.vertex_attributes["pixel"][:, 1]
    return 1.0 - _smoothstep((y - chin) / max(layer.size - chin, 1.0))


# --- rotations ------------------------------------------------------------------------------------------------


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _axis_angle(rot: np.ndarray) -> tuple[np.ndarray, float]:
    """Unit axis and angle (radians) of a rotation matrix."""
    angle = float(np.arccos(np.clip((np.trace(rot) - 1) / 2, -1.0, 1.0)))
    axis = np.array([rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]])
    norm = np.linalg.norm(axis)
    return (axis / norm if norm > 1e-12 else np.array([0.0, 1.0, 0.0])), angle


def _rotate(points: np.ndarray, axis: np.ndarray, angles: np.ndarray, pivot: np.ndarray) -> np.ndarray:
    """``points`` ``[N, 3]`` each rotated by its own angle (radians, ``[N]``) about ``axis`` through ``pivot``."""
    axis = axis / np.linalg.norm(axis)
    p = points - pivot
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
    return pivot + p * cos + np.cross(axis, p) * sin + axis * (p @ axis)[:, None] * (1 - cos)
