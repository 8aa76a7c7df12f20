"""Face finding, the aligned crop and paste-back, on real public-domain photos."""

import io
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from portrait.errors import NoFaceError  # noqa: E402
from portrait.face import align_face, crop_face, detect_landmarks  # noqa: E402
from portrait.face.mesh import REGIONS  # noqa: E402
from portrait.imageio import load_image  # noqa: E402

from .face_fixtures import (  # noqa: E402
    CROP_SIZE,
    astronaut_crop,
    astronaut_image,
    astronaut_landmarks,
    gradient_image,
    two_faces_image,
)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def test_astronaut_landmarks():
    astronaut_face = astronaut_landmarks()
    points = astronaut_face.points
    assert points.shape == (478, 3) and points.dtype == np.float32
    assert astronaut_face.num_faces == 1 and astronaut_face.message is None
    x0, y0, x1, y1 = astronaut_face.bbox
    # the face of the 512x512 photo lies around x 180..270, y 70..180
    assert 150 < x0 < 200 and 250 < x1 < 300 and 50 < y0 < 100 and 160 < y1 < 210
    nose, right_eye, left_eye = (
        points[1],
        points[list(REGIONS["right_eye_upper"])].mean(0),
        points[list(REGIONS["left_eye_upper"])].mean(0),
    )
    assert right_eye[0] < nose[0] < left_eye[0]  # the subject's right eye is on the image's left
    assert nose[2] < points[list(REGIONS["head_sides"]), 2].min()  # z: the nose is nearer than the sides


def test_crop_contains_the_whole_face():
    aligned = astronaut_crop(CROP_SIZE)
    size = aligned.size
    assert aligned.image.size == (size, size) and size == CROP_SIZE
    xy = aligned.landmarks[:, :2]
    assert xy.min() > 0.1 * size and xy.max() < 0.95 * size  # chin included, with a margin
    width = xy[:, 0].max() - xy[:, 0].min()
    assert 0.35 * size < width < 0.75 * size  # FFHQ-like: the face fills about half the crop
    # upright: eyes level, above the mouth
    right_eye, left_eye = (
        xy[list(REGIONS["right_eye_upper"])].mean(0),
        xy[list(REGIONS["left_eye_upper"])].mean(0),
    )
    assert abs(right_eye[1] - left_eye[1]) < 0.01 * size
    assert xy[list(REGIONS["upper_lip_outer"]), 1].mean() > right_eye[1] + 0.15 * size
    assert aligned.valid.mean() > 0.9


def test_crop_landmarks_match_a_detection_on_the_crop():
    aligned = astronaut_crop(CROP_SIZE)
    again = detect_landmarks(aligned.image)
    error = np.linalg.norm(again.points[:, :2] - aligned.landmarks[:, :2], axis=1)
    assert np.median(error) < 0.01 * aligned.size


def test_transform_round_trip_and_resolutions():
    aligned = astronaut_crop(CROP_SIZE)
    xy = np.random.default_rng(0).uniform(0, aligned.size, (20, 2))
    assert np.allclose(aligned.to_crop(aligned.to_photo(xy)), xy)
    assert np.allclose(aligned.to_photo(xy / 2, size=aligned.size // 2), aligned.to_photo(xy))
    larger = astronaut_crop(2 * CROP_SIZE)
    assert np.allclose(larger.landmarks_at(CROP_SIZE), aligned.landmarks, atol=1e-6)


def test_paste_back_of_an_unchanged_crop_reproduces_the_photo():
    astronaut = astronaut_image()
    astronaut_face = astronaut_landmarks()
    crop = astronaut_crop(512)
    back = crop.paste_back(astronaut, crop.image)
    assert back.size == astronaut.size
    x0, y0, x1, y1 = (int(v) for v in astronaut_face.bbox)
    photo, pasted = np.asarray(astronaut), np.asarray(back)
    assert _psnr(photo[y0:y1, x0:x1], pasted[y0:y1, x0:x1]) > 40.0
    # far from the crop the photo is untouched
    corners = crop.to_photo(np.array([[0, 0], [512, 512]]))
    assert np.array_equal(photo[: int(corners[:, 1].min()) - 2], pasted[: int(corners[:, 1].min()) - 2])


def test_paste_back_any_resolution_and_mask():
    astronaut = astronaut_image()
    aligned = astronaut_crop(CROP_SIZE)
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 255
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True
    back = np.asarray(aligned.paste_back(astronaut, red, mask=mask, feather=0.02)).astype(int)
    centre = aligned.to_photo(np.array([[32.0, 32.0]]), size=64)[0].astype(int)
    assert tuple(back[centre[1], centre[0]]) == (255, 0, 0)
    # outside the mask (a crop corner) the photo shows through
    corner = aligned.to_photo(np.array([[6.0, 6.0]]), size=64)[0].astype(int)
    assert np.abs(back[corner[1], corner[0]] - np.asarray(astronaut)[corner[1], corner[0]]).max() <= 2
    with pytest.raises(ValueError, match="photo size"):
        aligned.paste_back(astronaut.resize((100, 100)), red)


def test_no_face_raises_a_clear_error():
    with pytest.raises(NoFaceError, match="no face"):
        align_face(gradient_image())


def test_two_faces_take_the_largest_and_say_so():
    face = detect_landmarks(two_faces_image())
    assert face.num_faces == 2
    assert "2 faces" in face.message and "largest" in face.message
    assert face.points[:, 0].max() < 320  # the large copy is on the left
    assert face.all_points.shape == (2, 478, 3)
    crop = align_face(two_faces_image(), 128, face=face)
    assert crop.num_faces == 2 and crop.message == face.message


def test_large_photo_and_exif_rotated_photo():
    astronaut = astronaut_image()
    astronaut_face = astronaut_landmarks()
    # a 4x upscaled photo: detection runs on a downscaled copy, the crop box-reduces before warping
    big = astronaut.resize((2048, 2048), Image.Resampling.BICUBIC)
    face = detect_landmarks(big)
    assert np.median(np.linalg.norm(face.points[:, :2] / 4 - astronaut_face.points[:, :2], axis=1)) < 2.0
    crop_big = crop_face(big, face, 128)
    crop_small = crop_face(astronaut, astronaut_face, 128)
    assert _psnr(np.asarray(crop_big.image), np.asarray(crop_small.image)) > 22.0

    # a phone photo stored sideways with an EXIF orientation tag
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90 counter-clockwise to display"
    buf = io.BytesIO()
    astronaut.transpose(Image.Transpose.ROTATE_270).save(buf, format="JPEG", exif=exif, quality=92)
    upright = load_image(buf.getvalue())
    assert upright.size == astronaut.size
    face = detect_landmarks(upright)
    assert np.median(np.linalg.norm(face.points[:, :2] - astronaut_face.points[:, :2], axis=1)) < 3.0


def test_grayscale_and_rgba_photos_are_handled():
    astronaut = astronaut_image()
    gray = load_image(astronaut.convert("L"))
    assert detect_landmarks(gray).num_faces == 1
    rgba = astronaut.convert("RGBA")
    assert detect_landmarks(load_image(rgba)).num_faces == 1
