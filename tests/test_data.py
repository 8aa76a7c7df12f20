"""The synthetic RGB-D renderer, the folder format and the training data set."""

import json
import logging

import numpy as np
import pytest
from PIL import Image

from portrait.data.folder import FolderWriter, PortraitDataset, load_folder, scan_folder
from portrait.data.synthetic import SyntheticSpec, generate, source_faces, split_sources, write_dataset
from portrait.depth import depth_to_png16, read_depth

SPEC = SyntheticSpec(identities=3, views=2, size=32, seed=3, test_fraction=0.3)


@pytest.fixture(scope="module")
def rendered():
    return list(generate(SPEC))


def test_sources_are_real_meshes():
    faces = source_faces()
    assert len(faces) >= 50  # astronaut, Grace Hopper and most of skimage's LFW faces
    assert all(f.landmarks.shape == (478, 3) for f in faces)


def test_samples_have_exact_depth_inside_the_mask(rendered):
    assert len(rendered) == SPEC.identities * SPEC.views
    for _identity, _view, split, _source, s in rendered:
        assert s.rgb.shape == (32, 32, 3) and s.rgb.dtype == np.uint8
        assert s.depth.shape == (32, 32) and s.depth.dtype == np.float32
        assert s.mask.shape == (32, 32) and s.mask.dtype == bool
        assert np.array_equal(np.isfinite(s.depth), s.mask)  # depth exactly where the face is
        assert 0.1 < s.mask.mean() < 0.8
        assert np.all(s.depth[s.mask] > 0)
        assert split in ("train", "test")
    assert rendered[0][4].controls["yaw"] == 0.0  # view 0 is frontal and neutral


def test_generation_is_deterministic(rendered):
    again = list(generate(SPEC))
    for a, b in zip(rendered, again):
        assert a[:4] == b[:4]
        assert np.array_equal(a[4].rgb, b[4].rgb)
        assert np.array_equal(a[4].depth, b[4].depth, equal_nan=True)
    other = next(generate(SyntheticSpec(identities=1, views=1, size=32, seed=4)))
    assert not np.array_equal(other[4].rgb, rendered[0][4].rgb)


def test_held_out_sources_are_disjoint():
    held = split_sources(100, 0.2, seed=0)
    assert held.sum() == 20
    assert np.array_equal(held, split_sources(100, 0.2, seed=0))


def test_write_and_read_the_folder_format(tmp_path, rendered):
    manifest = write_dataset(tmp_path / "synth", SyntheticSpec(identities=2, views=2, size=32, seed=3))
    entries = json.loads(manifest.read_text())["samples"]
    assert len(entries) == 4 and {"id", "identity", "image", "depth", "mask", "split"} <= set(entries[0])
    assert (tmp_path / "synth" / "contact_sheet.png").is_file()
    samples, skipped = load_folder(tmp_path / "synth")
    assert len(samples) == 4 and not skipped
    assert np.array_equal(samples[0].depth, rendered[0][4].depth, equal_nan=True)

    data = PortraitDataset(tmp_path / "synth", resolution=32, flip=True)
    item = data[0]
    assert item["rgb"].shape == (3, 32, 32) and item["reference"].shape == (3, 32, 32)
    assert item["depth"].shape == (1, 32, 32) and item["mask"].shape == (1, 32, 32)
    assert -1 <= item["rgb"].min() and item["rgb"].max() <= 1
    assert item["depth"][item["mask"] == 0].eq(1).all()  # background code
    assert data.others[0] == [1]  # the other view of the same identity is the reference
    assert PortraitDataset(tmp_path / "synth", resolution=16)[0]["rgb"].shape == (3, 16, 16)


def test_prepare_resizes_depth_before_coding_it():
    from portrait.data.folder import LoadedSample, Record, prepare
    from portrait.depth import code_to_depth, resize_depth

    depth = np.full((64, 64), np.nan, np.float32)
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 30) ** 2 + (xx - 34) ** 2 < 20**2
    depth[disc] = 1.0 + ((yy - 30) ** 2 + (xx - 34) ** 2)[disc] / 400.0  # a dome: nearest in the middle
    sample = LoadedSample(Record("a", "a", None, None, None), np.zeros((64, 64, 3), np.uint8), depth, disc)
    rgb, code, mask = prepare(sample, 32)
    assert rgb.shape == (32, 32, 3) and code.shape == mask.shape == (32, 32)
    assert np.array_equal(mask, np.isfinite(resize_depth(depth, 32)))  # area-averaged, known over half a pixel
    assert (code[~mask] == 1.0).all() and code[mask].max() <= 0.6 + 1e-6
    unit, _ = code_to_depth(code, mask)
    assert unit[15, 17] < unit[15, 8]  # the dome's middle stays the nearest


def _plain_folder(root):
    (root / "images").mkdir(parents=True)
    (root / "depth").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    depth = np.full((24, 24), np.nan, np.float32)
    depth[4:20, 4:20] = rng.uniform(1, 2, (16, 16))
    for name in ("alice_0", "alice_1", "bob_0", "bob_1", "carol_0"):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(root / "images" / f"{name}.png")
    Image.fromarray(depth_to_png16(depth)).save(root / "depth" / "alice_0.png")  # 16-bit PNG
    np.save(root / "depth" / "alice_1.npy", depth)
    np.save(root / "depth" / "bob_1.npy", np.ones((20, 24), np.float32))  # size mismatch
    np.save(root / "depth" / "carol_0.npy", depth)
    Image.fromarray(np.full((24, 24), 255, np.uint8)).save(root / "masks" / "carol_0.png")
    # bob_0 has no depth at all


def test_plain_folder_skips_bad_samples(tmp_path, caplog):
    _plain_folder(tmp_path)
    records = scan_folder(tmp_path)
    assert {r.identity for r in records} == {"alice", "bob", "carol"}
    with caplog.at_level(logging.WARNING):
        samples, skipped = load_folder(tmp_path)
    assert sorted(s.record.id for s in samples) == ["alice_0", "alice_1", "carol_0"]
    assert dict(skipped) == {"bob_0": "missing depth", "bob_1": "depth is 24x20 but the image is 24x24"}
    assert "skipped 2 of 5" in caplog.text
    assert np.array_equal(np.isfinite(samples[0].depth), np.isfinite(read_depth(tmp_path / "depth" / "alice_1.npy")))
    data = PortraitDataset(tmp_path, resolution=24)
    assert len(data) == 3 and data.num_identities == 2
    assert data.others[2] == [2]  # a single view is its own reference


def test_exr_depth(tmp_path):
    import os

    os.environ["OPENCV_IO_ENABLE_OPENEXR"] = "1"
    cv2 = pytest.importorskip("cv2")
    depth = np.linspace(1, 2, 64, dtype=np.float32).reshape(8, 8)
    try:
        ok = cv2.imwrite(str(tmp_path / "d.exr"), depth)
    except cv2.error:
        ok = False
    if not ok:
        pytest.skip("this OpenCV build writes no EXR")
    np.testing.assert_allclose(read_depth(tmp_path / "d.exr"), depth)


def test_missing_folder_is_a_user_error(tmp_path):
    from portrait.errors import PortraitError

    with pytest.raises(PortraitError):
        PortraitDataset(tmp_path / "nope", resolution=32)
    with FolderWriter(tmp_path / "empty"):
        pass
    with pytest.raises(PortraitError, match="no usable sample"):
        PortraitDataset(tmp_path / "empty", resolution=32)


def test_depth_covers_hair_ears_and_neck_beyond_the_face_mesh():
    from portrait.data.synthetic import make_identity, random_view, render_view
    from portrait.face import render_depth

    identity = make_identity(0, source_faces()[0], seed=0)
    view = random_view(np.random.default_rng(0), frontal=True)
    sample = render_view(identity, view, 64)
    face = render_depth(identity.mesh, 64).mask
    assert np.array_equal(np.isfinite(sample.depth), sample.mask)
    assert np.all(sample.mask[face])  # the face is part of the person
    assert (sample.mask & ~face).sum() > 0.3 * face.sum()  # and so are the head, ears and neck
    rows = np.flatnonzero(face.any(axis=1))
    centre = int(round(np.flatnonzero(face.any(axis=0)).mean()))
    assert sample.mask[rows[0] - 2, centre]  # hair / scalp above the forehead
    chin = sample.depth[rows[-1], centre]
    neck = sample.depth[min(rows[-1] + 6, 63), centre]
    assert np.isfinite(neck) and neck > chin  # the neck is behind the chin
    assert not sample.mask[:, :2].all()  # the background has no depth
