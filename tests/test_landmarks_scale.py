"""Faces at every scale: a small face in a large photo (a portrait inside a wide shot) is found."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from portrait.errors import NoFaceError  # noqa: E402
from portrait.face import detect_landmarks  # noqa: E402
from portrait.face import landmarks as landmarks_module  # noqa: E402

from .face_fixtures import astronaut_image, astronaut_landmarks  # noqa: E402

FACE_WIDTH = 128  # landmarks' box width in the large photo
AT = (2100, 1300)  # where the shrunk photo's top-left corner goes


def background(width: int = 3000, height: int = 2000) -> Image.Image:
    """A large noisy grey photo: no face in it."""
    return Image.fromarray(np.random.default_rng(0).integers(90, 170, (height, width, 3), dtype=np.uint8))


def test_a_small_face_in_a_large_photo_is_found():
    face = astronaut_landmarks()
    x0, _, x1, _ = face.bbox
    scale = FACE_WIDTH / (x1 - x0)
    photo = background()
    size = round(astronaut_image().width * scale), round(astronaut_image().height * scale)
    photo.paste(astronaut_image().resize(size, Image.Resampling.LANCZOS), AT)
    # the first pass (the photo downscaled to DETECTION_MAX_SIDE) misses it ...
    assert landmarks_module._face_boxes(np.asarray(photo), 0.5) == []
    # ... the tiles find it, on the pasted face
    found = detect_landmarks(photo)
    assert found.image_size == (3000, 2000) and found.num_faces == 1
    expected = face.points[:, :2] * scale + np.array(AT)
    error = np.linalg.norm(found.points[:, :2] - expected, axis=1)
    assert np.median(error) < 0.02 * FACE_WIDTH and error.max() < 0.05 * FACE_WIDTH  # ~1 px off in practice


def test_a_faceless_large_photo_still_has_no_face():
    with pytest.raises(NoFaceError) as info:
        detect_landmarks(background())
    assert str(info.value) == (
        "no face was found in the image; use a photo with one clearly visible face, "
        "seen from the front or slightly to the side"
    )


def test_a_face_found_by_the_first_pass_needs_no_tiles(monkeypatch):
    def no_tiles(rgb, min_confidence):
        raise AssertionError("the tiled pass ran")

    monkeypatch.setattr(landmarks_module, "_tiled_face_boxes", no_tiles)
    photo = Image.new("RGB", (1600, 1200), (128, 128, 128))
    photo.paste(astronaut_image(), (500, 300))  # a 512-px photo inside a larger one: found downscaled
    assert detect_landmarks(photo).num_faces == 1


def test_tiles_overlap_by_half_and_cover_the_side():
    side = landmarks_module.TILE_SIDE
    assert landmarks_module._tile_starts(side) == [0]
    for length in (side + 1, 2 * side, 3000):
        starts = landmarks_module._tile_starts(length)
        assert starts[0] == 0 and starts[-1] == length - side
        assert all(0 < b - a <= side // 2 for a, b in zip(starts, starts[1:]))
