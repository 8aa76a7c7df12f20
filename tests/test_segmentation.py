"""The head's silhouette: the model's head-and-neck mask made clean with mediapipe's person segmentation
(``portrait.face.segmentation``, ``Photo.head_mask``). No diffusion model here."""

import numpy as np
from scipy import ndimage

from portrait.face import render_depth
from portrait.face.segmentation import clean_mask, head_silhouette, segment_person
from portrait.studio import Photo

from .face_fixtures import astronaut_crop, astronaut_image, astronaut_mesh


def disc(size, centre, radius):
    y, x = np.mgrid[0:size, 0:size]
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= radius**2


def test_silhouette_drops_specks_and_strays_and_adds_hair_and_hat_touching_the_head():
    r, chin = 64, 44
    neck = np.zeros((r, r), bool)
    neck[40:, 26:39] = True
    model = disc(r, (32, 28), 16) | neck
    specks = np.zeros((r, r), bool)
    for y, x in ((2, 2), (3, 58), (60, 4), (58, 60), (30, 5)):
        specks[y : y + 2, x : x + 2] = True
    stray = np.zeros((r, r), bool)
    stray[46:52, 12:26] = True  # the model's mask strays into the background beside the neck
    hat = np.zeros((r, r), bool)
    hat[8:14, 22:43] = True
    body = np.zeros((r, r), bool)
    body[52:, :] = True
    far = disc(r, (58, 30), 3)  # someone's hand: on the person, apart from the head
    person = (disc(r, (32, 28), 18) | hat | neck | body | far).astype(np.float32)

    out = head_silhouette(model | specks | stray, person, chin=chin)
    assert ndimage.label(out)[1] == 1 and ndimage.label(~out)[1] == 1  # one piece, no holes
    assert not (out & (specks | stray | far)).any()  # nothing outside the head survives
    assert out[model].all()
    assert out[hat].all() and out[:chin][disc(r, (32, 28), 18)[:chin]].all()  # the hat and hair the model missed
    assert not out[body & ~neck].any()  # not the shoulders below the chin

    # a segmentation that found no one: the model's mask alone, cleaned
    np.testing.assert_array_equal(head_silhouette(model | specks, np.zeros((r, r)), chin=chin), clean_mask(model))


def test_person_is_found_in_the_aligned_crop():
    face = astronaut_crop()
    photo = Photo(image=astronaut_image(), crop=face.image.resize((128, 128)), face=face)
    person = segment_person(photo.image, photo.crop_to_photo(128), 128)
    assert person.shape == (128, 128) and person.dtype == np.float32
    assert person[40:90, 44:84].mean() > 0.95  # the face
    assert person[:12, :12].mean() < 0.05 and person[:12, -12:].mean() < 0.05  # the background above the shoulders


def test_photo_head_mask_keeps_one_head_with_its_hair():
    r = 128
    face = astronaut_crop()
    photo = Photo(image=astronaut_image(), crop=face.image.resize((r, r)), face=face)
    on_mesh = np.isfinite(render_depth(astronaut_mesh(), r).depth)  # a model that missed the hair
    specks = np.zeros((r, r), bool)
    for y, x in ((4, 4), (6, 118), (60, 3), (100, 122)):
        specks[y : y + 3, x : x + 3] = True
    out = photo.head_mask(on_mesh | specks, sure=on_mesh)
    assert ndimage.label(out)[1] == 1 and not (out & specks).any()
    assert out[on_mesh].all()
    top = lambda m: np.flatnonzero(m[:, r // 2])[0]  # noqa: E731
    assert top(out) <= top(on_mesh) - r // 16  # the hair above the forehead, added
    chin = face.landmarks_at(r)[:, 1].max()
    assert not out[int(np.ceil(chin)) + 1 :].any()  # nothing added below the chin
