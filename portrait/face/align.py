"""Aligned square face crops (FFHQ-style) and pasting results back into the full-resolution photo.

The crop is a similarity transform of the photo (rotation, uniform scale, translation) chosen from the
eye centres and mouth corners with FFHQ's recipe: the crop side is ``max(4 x eye distance, 3.6 x
eye-to-mouth distance)``, centred slightly below the eyes, so hair, ears and chin fit in. Parts of the
crop outside the photo are filled by mirroring the photo (``AlignedFace.valid`` tells which).

Both the photo and the crop use continuous pixel coordinates (see :mod:`portrait.face.landmarks`):
``photo_xy = A @ crop_xy + t`` with ``crop_to_photo = [A | t]`` a ``[2, 3]`` matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from .landmarks import FaceLandmarks, detect_landmarks
from .mesh import REGIONS, eye_centres
from .warp import affine_data, box_reduction, warp_to_square  # noqa: F401 (box_reduction: re-exported)

DEFAULT_CROP_SIZE = 512
DEFAULT_FEATHER = 0.06  # width of the paste-back blend, as a fraction of the crop side


@dataclass
class AlignedFace:
    """A face crop and its link to the photo.

    Attributes:
        image: the crop, RGB, ``size`` x ``size``.
        crop_to_photo: ``[2, 3]`` float64 similarity ``[A | t]``: ``photo_xy = A @ crop_xy + t``.
        photo_size: ``(width, height)`` of the photo.
        landmarks: ``[478, 3]`` float64 landmarks in crop pixels; z in the same pixel scale (smaller = nearer).
        valid: ``[size, size]`` bool, True where the crop pixel lies inside the photo (not mirrored padding).
        num_faces: faces found in the photo (the largest was cropped).
        message: a sentence for the user when several faces were found, else None.
    """

    image: Image.Image
    crop_to_photo: np.ndarray
    photo_size: tuple[int, int]
    landmarks: np.ndarray
    valid: np.ndarray
    num_faces: int = 1
    message: str | None = None

    @property
    def size(self) -> int:
        return self.image.size[0]

    @property
    def scale(self) -> float:
        """Photo pixels per crop pixel."""
        return float(math.sqrt(abs(np.linalg.det(self.crop_to_photo[:, :2]))))

    @property
    def photo_to_crop(self) -> np.ndarray:
        """``[2, 3]`` inverse similarity: ``crop_xy = A' @ photo_xy + t'``."""
        return _invert(self.crop_to_photo)

    def to_photo(self, xy: np.ndarray, size: int | None = None) -> np.ndarray:
        """Crop coordinates ``[N, 2]`` (of a crop ``size`` wide, default this crop's) -> photo coordinates."""
        xy = np.asarray(xy, dtype=np.float64) * (self.size / (size or self.size))
        return xy @ self.crop_to_photo[:, :2].T + self.crop_to_photo[:, 2]

    def to_crop(self, xy: np.ndarray, size: int | None = None) -> np.ndarray:
        """Photo coordinates ``[N, 2]`` -> crop coordinates (of a crop ``size`` wide, default this crop's)."""
        inv = self.photo_to_crop
        out = np.asarray(xy, dtype=np.float64) @ inv[:, :2].T + inv[:, 2]
        return out * ((size or self.size) / self.size)

    def crop_to_photo_at(self, size: int) -> np.ndarray:
        """``[2, 3]`` :attr:`crop_to_photo` for the same crop rendered at ``size`` pixels."""
        m = self.crop_to_photo
        return np.column_stack([m[:, :2] * (self.size / size), m[:, 2]])

    def landmarks_at(self, size: int) -> np.ndarray:
        """``[478, 3]`` landmarks for the same crop rendered at ``size`` pixels."""
        return self.landmarks * (size / self.size)

    def paste_back(
        self,
        photo: Image.Image,
        result: Image.Image | np.ndarray,
        mask: np.ndarray | Image.Image | None = None,
        feather: float = DEFAULT_FEATHER,
    ) -> Image.Image:
        """Blend a result made on the crop back into the full-resolution photo.

        Args:
            photo: the photo the crop came from (same size as ``photo_size``), e.g. ``load_image(path)``.
            result: RGB image of the crop's content at any square resolution (``[s, s, 3]`` uint8 or PIL).
            mask: optional ``[s, s]`` where to use the result (bool, or float in [0, 1], or an "L" image), e.g.
                the face mask; it is feathered too. Default: the whole crop.
            feather: blend width as a fraction of the crop side; the crop's border is always feathered.

        Returns:
            A new RGB image of the photo's size; outside the crop it equals the photo.
        """
        # 1. Check inputs
        photo = photo.convert("RGB")
        if photo.size != tuple(self.photo_size):
            raise ValueError(
                f"photo size {photo.size} differs from the aligned photo's {tuple(self.photo_size)}"
            )
        if isinstance(result, Image.Image):
            result_image = result.convert("RGB")
        else:
            result_image = Image.fromarray(np.asarray(result, dtype=np.uint8))
        res = result_image.size[0]
        if result_image.size[1] != res:
            raise ValueError(f"result must be square, got {result_image.size}")

        # 2. The blend weight in crop space: feathered crop border x feathered user mask
        weight_img = Image.fromarray(np.round(_blend_weight(res, mask, feather) * 255).astype(np.uint8))

        # 3. The photo region under the crop
        square = np.array([[0, 0], [res, 0], [res, res], [0, res]], dtype=np.float64)
        corners = self.to_photo(square, size=res)
        x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int) - 1, 0)
        x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 1, photo.size)
        if x1 <= x0 or y1 <= y0:
            return photo.copy()

        # 4. Warp result and weight into that region (photo -> result pixels); the warp does not filter,
        #    so a result much larger than its place in the photo is antialiased first
        footprint = self.scale * self.size  # photo pixels spanned by the crop's side
        if res > 3 * footprint:
            small = max(1, round(2 * footprint))
            result_image = result_image.resize((small, small), Image.Resampling.LANCZOS)
            weight_img = weight_img.resize((small, small), Image.Resampling.BOX)
            res = small
        data = affine_data(self.photo_to_crop * (res / self.size), offset=(x0, y0))
        region = (int(x1 - x0), int(y1 - y0))
        warped = result_image.transform(region, Image.Transform.AFFINE, data, Image.Resampling.BICUBIC)
        alpha = weight_img.transform(region, Image.Transform.AFFINE, data, Image.Resampling.BILINEAR)
        alpha = (np.asarray(alpha, dtype=np.float32) / 255.0)[..., None]  # [h, w, 1]

        # 5. Blend
        base = np.asarray(photo.crop((x0, y0, x1, y1)), dtype=np.float32)
        blended = alpha * np.asarray(warped, dtype=np.float32) + (1.0 - alpha) * base
        out = photo.copy()
        out.paste(Image.fromarray(np.clip(np.round(blended), 0, 255).astype(np.uint8)), (int(x0), int(y0)))
        return out


# --- alignment --------------------------------------------------------------------------------------------


def alignment_transform(points: np.ndarray, size: int = DEFAULT_CROP_SIZE) -> np.ndarray:
    """FFHQ's similarity from landmarks ``[478, >=2]`` (photo pixels) to a ``size`` crop: ``[2, 3]`` crop -> photo."""
    points = np.asarray(points, dtype=np.float64)[:, :2]
    eye_right_subject, eye_left_subject = eye_centres(points)  # image left, image right
    mouth_left, mouth_right = points[REGIONS["mouth_corners"][0]], points[REGIONS["mouth_corners"][1]]

    eye_avg = (eye_right_subject + eye_left_subject) * 0.5
    eye_to_eye = eye_left_subject - eye_right_subject
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]  # the crop's x axis, rotated by the face's roll
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)  # half the crop side
    y = np.flipud(x) * [-1, 1]  # x turned 90 degrees: points down the face
    centre = eye_avg + eye_to_mouth * 0.1

    a = np.column_stack([2.0 * x / size, 2.0 * y / size])
    t = centre - x - y  # the crop's top-left corner in the photo
    return np.column_stack([a, t])


def crop_face(image: Image.Image, face: FaceLandmarks, size: int = DEFAULT_CROP_SIZE) -> AlignedFace:
    """Cut the aligned ``size`` x ``size`` crop of ``face`` out of ``image`` (the photo it was found in)."""
    image = image.convert("RGB")
    if tuple(face.image_size) != image.size:
        raise ValueError(f"landmarks were found on a {face.image_size} image, not on this {image.size} one")
    m = alignment_transform(face.points, size)
    aligned = AlignedFace(
        image=warp_to_square(image, m, size),
        crop_to_photo=m,
        photo_size=image.size,
        landmarks=_landmarks_to_crop(face.points, m),
        valid=_inside_photo(m, size, image.size),
        num_faces=face.num_faces,
        message=face.message,
    )
    return aligned


def align_face(
    image: Image.Image, size: int = DEFAULT_CROP_SIZE, *, face: FaceLandmarks | None = None
) -> AlignedFace:
    """Find the largest face in ``image`` (unless ``face`` is given) and return its aligned crop.

    Raises:
        NoFaceError: no face in the image.
    """
    image = image.convert("RGB")
    face = face if face is not None else detect_landmarks(image)
    return crop_face(image, face, size)


# --- helpers ----------------------------------------------------------------------------------------------


def _invert(m: np.ndarray) -> np.ndarray:
    a_inv = np.linalg.inv(m[:, :2])
    return np.column_stack([a_inv, -a_inv @ m[:, 2]])


def _landmarks_to_crop(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    inv = _invert(m)
    scale = math.sqrt(abs(np.linalg.det(inv[:, :2])))
    xy = points[:, :2].astype(np.float64) @ inv[:, :2].T + inv[:, 2]
    return np.column_stack([xy, points[:, 2].astype(np.float64) * scale])


def _inside_photo(m: np.ndarray, size: int, photo_size: tuple[int, int]) -> np.ndarray:
    """``[size, size]`` bool: crop pixel centres that map inside the photo."""
    c = np.arange(size, dtype=np.float64) + 0.5
    u, v = np.meshgrid(c, c)
    px = m[0, 0] * u + m[0, 1] * v + m[0, 2]
    py = m[1, 0] * u + m[1, 1] * v + m[1, 2]
    return (px >= 0) & (px <= photo_size[0]) & (py >= 0) & (py <= photo_size[1])


def _blend_weight(size: int, mask, feather: float) -> np.ndarray:
    """``[size, size]`` float32 in [0, 1]: the feathered crop border times the (blurred) user mask."""
    weight = _border_weight(size, feather)
    if mask is None:
        return weight
    user = np.asarray(mask.convert("L") if isinstance(mask, Image.Image) else mask)
    user = np.clip(user.astype(np.float32) / (255.0 if user.dtype == np.uint8 else 1.0), 0.0, 1.0)
    user_img = Image.fromarray(np.round(user * 255).astype(np.uint8))
    if user_img.size != (size, size):
        user_img = user_img.resize((size, size), Image.Resampling.BILINEAR)
    user_img = user_img.filter(ImageFilter.GaussianBlur(max(feather * size / 2.0, 0.5)))
    return weight * (np.asarray(user_img, dtype=np.float32) / 255.0)


def _border_weight(size: int, feather: float) -> np.ndarray:
    """``[size, size]`` float32: 1 inside, smoothly 0 at the crop border over ``feather * size`` pixels."""
    c = np.arange(size, dtype=np.float32) + 0.5
    edge = np.minimum(c, size - c)  # distance to the nearest border along one axis
    ramp = np.clip(edge / max(feather * size, 1e-6), 0.0, 1.0)
    ramp = ramp * ramp * (3.0 - 2.0 * ramp)  # smoothstep
    return np.minimum(ramp[:, None], ramp[None, :])
