"""The head layer: a photo's head and neck lifted into 3-D by its depth, once per photo (no torch).

The layer lives in the aligned crop's camera frame (:mod:`portrait.face.mesh`: units, +z away from the
camera) at an output crop of ``size`` pixels. It is a grid mesh built by the project's one mesh builder
(:func:`portrait.mesh.depth_to_mesh`) whose vertices remember their pixel in that crop, so a moved and
ray-cast layer tells each output pixel where in the full-resolution photo its colour comes from. The mesh
is cut around each eye opening (so an upper lid can slide over the eye) and along the inner
lip contour (so the mouth can open). Everything outside the head and neck is a fixed background: the photo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image, ImageDraw

from ..compositing import feather
from ..depth import align_scale_shift, resize_depth, upsample_depth
from ..face import AlignedFace, FaceMesh, PinholeCamera, face_mesh_from_landmarks, render_depth
from ..face.mesh import REGIONS, eye_centres
from ..face.segmentation import clean_mask
from ..face.warp import box_reduction, warp_to_square
from ..mesh import depth_to_mesh
from .warp import cast

MIN_SIZE, MAX_SIZE = 512, 1024  # the output crop follows the face's size in the photo, within these
MAX_DEPTH_SPAN = 4.0  # the head layer's depth may span at most this many times the face mesh's
MESH_FEATHER = 1 / 32  # the face mesh's depth blends into the model's over this part of the crop at its border
MESH_STEP = 2  # output pixels per grid step of the layer's mesh (the warp is smooth; cuts stay 2 px wide)
# the head layer's outline stops up to this part of the crop's side inside the photo's own (hair wisps, a hat's
# rim): where the head moves away, those pixels of the background layer would stay behind as a ghost outline,
# so they are holes too, and nothing filled behind the head is continued from them
OUTLINE_MARGIN = 3 / 128

SKIN, MOUTH, EYES = 0, 1, 2  # part labels: the mesh is cut where they meet


@dataclass
class HeadLayer:
    """A photo's head and neck in 3-D, and what is needed to render it moved.

    Attributes:
        size: side ``S`` of the output crop in pixels.
        mesh: the layer's grid mesh, vertices ``[V, 3]`` in the crop's camera frame (units);
            ``mesh.vertex_attributes["pixel"]`` ``[V, 2]`` is each vertex's source position in crop pixels at ``S``.
        parts: ``[V]`` part label of each vertex (``SKIN``, ``MOUTH``, ``EYES``).
        face: the face mesh (landmarks) in the same camera frame: its frame and expressions drive the
            motion.
        depth: ``[S, S]`` float32 camera z of the unmoved layer, NaN off the head and neck.
        covered: ``[S, S]`` bool, the pixels the unmoved layer covers (what a move can uncover).
        crop: ``[S, S, 3]`` uint8, the photo's aligned crop at ``S``.
        source: ``[h, w, 3]`` uint8, the photo (box-reduced when it is much larger than the crop) that a
            rendered pixel is sampled from.
        crop_to_source: ``[2, 3]`` affine from crop pixels at ``S`` to ``source`` pixels (continuous).
    """

    size: int
    mesh: object
    parts: np.ndarray
    face: FaceMesh
    depth: np.ndarray
    covered: np.ndarray
    crop: np.ndarray
    source: np.ndarray
    crop_to_source: np.ndarray

    @property
    def outline_margin(self) -> int:
        """``OUTLINE_MARGIN`` in pixels of the crop."""
        return max(1, round(self.size * OUTLINE_MARGIN))

    @cached_property
    def outline(self) -> np.ndarray:
        """``[S, S]`` bool: ``covered`` grown by ``OUTLINE_MARGIN`` (what may still be head in the photo)."""
        import cv2

        grow = np.ones((2 * self.outline_margin + 1,) * 2, np.uint8)
        return cv2.dilate(self.covered.astype(np.uint8), grow) > 0

    @property
    def camera(self) -> PinholeCamera:
        return self.face.camera

    @property
    def face_scale(self) -> float:
        """The eye distance in camera units (the unit of the face's own frame)."""
        right, left = eye_centres(self.face.vertices)
        return float(np.linalg.norm(left - right))


def output_size(face: AlignedFace) -> int:
    """The output crop's side: about the face's own resolution in the photo, within ``[MIN_SIZE, MAX_SIZE]``."""
    footprint = face.scale * face.size  # photo pixels along the crop's side
    return int(np.clip(math.ceil(footprint / 64) * 64, MIN_SIZE, MAX_SIZE))


def build_head_layer(
    photo: Image.Image, face: AlignedFace, depth: np.ndarray, size: int | None = None,
) -> HeadLayer:
    """Lift the photo's head into 3-D.

    Args:
        photo: the full photo the crop was aligned in.
        face: its alignment (landmarks, crop <-> photo).
        depth: ``[r, r]`` relative depth of the crop's head and neck (larger = farther, NaN elsewhere), e.g. the
            model's depth estimate. Where the face mesh exists the layer takes the mesh's own geometry (blended in
            over ``MESH_FEATHER``); around it this depth, put in the mesh's camera z by scale and shift.
        size: the output crop's side (default :func:`output_size`).
    """
    size = size or output_size(face)
    # 1. The photo's crop at S (the guide and the background) and the photo to sample from
    to_photo = face.crop_to_photo_at(size)
    crop = np.asarray(warp_to_square(photo, to_photo, size))
    source, crop_to_source = _source(photo, to_photo)

    # 2. Depth in the camera frame: the face mesh's own geometry where it exists (mediapipe's landmarks, in the
    #    photo's scale), the model's depth around it (hair, ears, neck) put in that scale
    mesh = face_mesh_from_landmarks(face.landmarks, face.size)
    depth = np.asarray(depth, dtype=np.float32)
    mesh_z = render_depth(mesh, depth.shape[::-1]).depth
    z = _to_mesh_scale(depth, mesh_z)
    on_mesh = np.isfinite(mesh_z)
    weight = feather(on_mesh, MESH_FEATHER * depth.shape[0])  # 0 off the mesh -> 1 inside it
    z = np.where(on_mesh, weight * np.nan_to_num(mesh_z) + (1 - weight) * np.where(np.isfinite(z), z, mesh_z), z)
    z, head = upsample_depth(z, crop)
    head = clean_mask(head)
    z[~head] = np.nan

    # 3. The grid mesh at S / MESH_STEP, cut between parts. Not at depth jumps: a triangle across one (a
    #    "curtain") is stretched by any move, and the renderer makes its pixels holes
    grid = size // MESH_STEP
    parts = _parts(face.landmarks_at(grid), grid)
    layer = depth_to_mesh(resize_depth(z, grid), depth_range=None, edge_threshold=None, parts=parts,
                          fov_deg=mesh.camera.fov_deg)
    layer.vertex_attributes["pixel"] *= MESH_STEP

    # 4. What the unmoved layer covers
    covered = cast(layer, layer.vertices, size, mesh.camera).hit
    return HeadLayer(size=size, mesh=layer, parts=layer.vertex_attributes["part"], face=mesh, depth=z,
                     covered=covered, crop=crop, source=source, crop_to_source=crop_to_source)


# --- helpers ------------------------------------------------------------------------------------------------


def _to_mesh_scale(depth: np.ndarray, mesh_z: np.ndarray) -> np.ndarray:
    """Relative ``depth`` put in the face mesh's camera z by scale and shift. The fit regresses the model's depth
    on the mesh's (``depth ~ a mesh_z + b``, then inverted): the model's depth is the noisy one, and regressing
    the other way would flatten the head by as much as the noise (regression dilution)."""
    both = np.isfinite(depth) & np.isfinite(mesh_z)
    mesh_span = max(float(np.nanmax(mesh_z) - np.nanmin(mesh_z)), 1e-6)
    a, b = align_scale_shift(mesh_z, depth, both)
    z = (depth - b) / a if both.sum() >= 2 and a > 1e-6 else None
    # no usable overlap, or a fit that puts the head behind the camera or many times deeper than the face (a
    # depth that barely follows the mesh): the depth keeps its own shape at the mesh's extent
    if z is None or np.nanmin(z) <= 0 or np.nanmax(z) - np.nanmin(z) > MAX_DEPTH_SPAN * mesh_span:
        a = max(float(np.nanmax(depth) - np.nanmin(depth)), 1e-6) / mesh_span
        b = float(np.nanmedian(depth) - a * np.nanmedian(mesh_z))
        z = (depth - b) / a
    return z


def _source(photo: Image.Image, to_photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The photo to sample from (box-reduced when one crop pixel spans 2 or more photo pixels) and the crop ->
    source affine."""
    scale = math.sqrt(abs(np.linalg.det(to_photo[:, :2])))  # photo pixels per crop pixel
    reduce = box_reduction(scale)
    source = photo.convert("RGB")
    if reduce > 1:
        source = source.reduce(reduce)
    return np.asarray(source), to_photo / reduce


def _parts(landmarks: np.ndarray, size: int) -> np.ndarray:
    """``[size, size]`` part labels: the inner-lip opening (drawn at least a pixel wide, so a closed mouth is
    still cut) and the two eye openings; skin elsewhere."""
    canvas = Image.new("L", (size, size), SKIN)
    draw = ImageDraw.Draw(canvas)
    xy = landmarks[:, :2]
    for upper, lower, label in (
        ("upper_lip_inner", "lower_lip_inner", MOUTH),
        ("right_eye_upper", "right_eye_lower", EYES),
        ("left_eye_upper", "left_eye_lower", EYES),
    ):
        ring = [tuple(p) for p in xy[list(REGIONS[upper]) + list(REGIONS[lower])[::-1]]]
        draw.polygon(ring, fill=label, outline=label)
    return np.asarray(canvas)
