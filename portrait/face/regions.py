"""mediapipe's 478 face landmarks by name: the one table of landmark groups (imports nothing from the face
package, which every module of it builds on)."""

from __future__ import annotations

import numpy as np

NUM_LANDMARKS = 478  # 468 face mesh points + 2 x 5 iris points

# --- named landmark regions -------------------------------------------------------------------------------
# The one table of landmark groups used by alignment, expressions and masks. "left"/"right" are the
# subject's (the subject's right eye is on the image's left). Lid, lip and brow chains run corner to
# corner and are the chains of mediapipe's FACEMESH_* connection sets (tests check it); the face oval is
# ordered as mediapipe's FACEMESH_FACE_OVAL loop.

# fmt: off
REGIONS: dict[str, tuple[int, ...]] = {
    "face_oval": (
        10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
        152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
    ),
    "jaw_line": (288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58),
    "head_sides": (234, 454),  # the face oval's cheek extremes, near the ears: the head's centre lies between
    "right_eye_upper": (33, 246, 161, 160, 159, 158, 157, 173, 133),
    "right_eye_lower": (33, 7, 163, 144, 145, 153, 154, 155, 133),
    "left_eye_upper": (263, 466, 388, 387, 386, 385, 384, 398, 362),
    "left_eye_lower": (263, 249, 390, 373, 374, 380, 381, 382, 362),
    "right_eyebrow": (46, 53, 52, 65, 55, 70, 63, 105, 66, 107),
    "left_eyebrow": (276, 283, 282, 295, 285, 300, 293, 334, 296, 336),
    "upper_lip_outer": (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291),
    "lower_lip_outer": (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291),
    "upper_lip_inner": (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308),
    "lower_lip_inner": (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308),
    "mouth_corners": (61, 291, 78, 308),  # outer left-of-image, outer right, inner left, inner right
    "nose": (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327, 344, 440),
    "right_iris": (468, 469, 470, 471, 472),
    "left_iris": (473, 474, 475, 476, 477),
}
# fmt: on


def region(*names: str) -> np.ndarray:
    """Sorted unique landmark indices of the union of the named regions (``REGIONS`` keys)."""
    unknown = [n for n in names if n not in REGIONS]
    if unknown:
        raise KeyError(f"unknown face region(s) {unknown}; known: {sorted(REGIONS)}")
    return np.unique(np.concatenate([np.asarray(REGIONS[n], dtype=np.int64) for n in names]))
