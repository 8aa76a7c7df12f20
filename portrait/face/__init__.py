"""Face geometry without torch: landmarks, aligned crops and paste-back, the face mesh, pose and
expression controls, and depth rendering.

Typical use (what the app, the CLI and training do)::

    from portrait.imageio import load_image
    from portrait.face import align_face, face_mesh_from_landmarks, FaceControls, apply_controls, render_depth

    photo = load_image("photo.jpg")
    aligned = align_face(photo, size=512)                       # NoFaceError if there is none
    mesh = face_mesh_from_landmarks(aligned.landmarks, aligned.size)
    edited = apply_controls(mesh, FaceControls(yaw=20, smile=0.5))
    target = render_depth(edited, 512)                          # .depth (NaN off the face), .mask, .normals
    result_photo = aligned.paste_back(photo, edited_crop)       # back to the photo's full resolution
"""

from .align import AlignedFace, align_face, alignment_transform, crop_face
from .controls import (
    CONTROL_SPECS,
    EXPRESSIONS,
    ControlSpec,
    FaceControls,
    apply_controls,
    expression_weights,
)
from .landmarks import FaceLandmarks, detect_landmarks
from .mesh import (
    REGIONS,
    FaceMesh,
    PinholeCamera,
    face_mask,
    face_mesh_from_landmarks,
    face_triangles,
    region,
)
from .render import RenderResult, render_depth, shade

__all__ = [
    "AlignedFace",
    "CONTROL_SPECS",
    "ControlSpec",
    "EXPRESSIONS",
    "FaceControls",
    "FaceLandmarks",
    "FaceMesh",
    "PinholeCamera",
    "REGIONS",
    "RenderResult",
    "align_face",
    "alignment_transform",
    "apply_controls",
    "crop_face",
    "detect_landmarks",
    "expression_weights",
    "face_mask",
    "face_mesh_from_landmarks",
    "face_triangles",
    "region",
    "render_depth",
    "shade",
]
