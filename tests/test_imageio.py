"""The one image loader: sources, pixel formats, EXIF orientation, size limits and broken files."""

import io
import os
import struct
import time
import zlib

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from portrait.errors import ImageSizeError, InvalidImageError, PortraitError  # noqa: E402
from portrait.imageio import load_image, save_image  # noqa: E402


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` but whose pixel data is tiny: decoding it would fail."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _gradient(width=64, height=48):
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    return np.stack([x, x[::-1], np.full_like(x, 60)], -1).astype(np.uint8)


def test_sources_path_bytes_fileobj_pil_array(tmp_path):
    rgb = _gradient()
    path = tmp_path / "img.png"
    Image.fromarray(rgb).save(path)
    for source in (
        path,
        str(path),
        path.read_bytes(),
        io.BytesIO(path.read_bytes()),
        Image.fromarray(rgb),
        rgb,
    ):
        image = load_image(source)
        assert image.mode == "RGB" and image.size == (64, 48)
        assert np.array_equal(np.asarray(image), rgb)


def test_exif_orientation_is_applied():
    rgb = _gradient(64, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", exif=exif, quality=95)
    image = load_image(buf.getvalue())
    assert image.size == (40, 64)
    expected = np.asarray(Image.fromarray(rgb).transpose(Image.Transpose.ROTATE_270), dtype=np.float32)
    assert np.abs(np.asarray(image, np.float32) - expected).mean() < 4.0


def test_rgba_composited_on_white():
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 20:, 3] = 255  # right half opaque red, left half transparent
    image = np.asarray(load_image(_png_bytes(Image.fromarray(rgba))))
    assert tuple(image[5, 5]) == (255, 255, 255)
    assert tuple(image[5, 30]) == (200, 0, 0)


def test_grayscale_16bit_palette_and_bilevel():
    gray = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (40, 1))
    image = np.asarray(load_image(_png_bytes(Image.fromarray(gray))))
    assert image.shape == (40, 64, 3) and np.array_equal(image[..., 1], gray)

    deep = np.full((40, 40), 65535, np.uint16)
    deep[:, :20] = 32896  # = 128 * 257
    image = np.asarray(load_image(_png_bytes(Image.fromarray(deep))))
    assert image[0, 0, 0] == 128 and image[0, 30, 0] == 255

    palette = Image.fromarray(_gradient()).quantize(colors=16)
    assert palette.mode == "P"
    assert load_image(_png_bytes(palette)).mode == "RGB"

    bilevel = Image.fromarray(gray > 100).convert("1")
    assert np.asarray(load_image(_png_bytes(bilevel))).max() == 255


def test_numpy_dtypes_and_shapes():
    assert np.asarray(load_image(np.full((40, 40), 0.5, np.float32)))[0, 0, 0] == 128
    assert np.asarray(load_image(np.full((40, 40, 1), 65535, np.uint16)))[0, 0, 2] == 255
    assert np.asarray(load_image(np.ones((40, 40, 3), bool)))[0, 0, 1] == 255
    with pytest.raises(InvalidImageError, match="shape"):
        load_image(np.zeros((40, 40, 2), np.uint8))


def test_too_small_image_is_refused():
    with pytest.raises(ImageSizeError, match=r"1x1.*at least 32"):
        load_image(_png_bytes(Image.new("RGB", (1, 1))))
    assert load_image(Image.new("RGB", (1, 1)), min_size=1).size == (1, 1)


def test_huge_image_is_refused_from_its_header(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header_only(20000, 20000))
    start = time.perf_counter()
    with pytest.raises(ImageSizeError, match=r"20000x20000.*limit"):
        load_image(path)
    assert time.perf_counter() - start < 1.0  # refused before any pixel was decoded
    # even without our limit, PIL's decompression-bomb guard is reported as a size error
    with pytest.raises(ImageSizeError, match="too large"):
        load_image(path, max_pixels=None)


def test_corrupt_truncated_and_missing_files(tmp_path):
    (tmp_path / "noise.jpg").write_bytes(
        np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    )
    with pytest.raises(InvalidImageError, match="not a readable image"):
        load_image(tmp_path / "noise.jpg")

    data = _png_bytes(Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    with pytest.raises(InvalidImageError, match="corrupt or truncated"):
        load_image(data[: len(data) // 2])

    with pytest.raises(InvalidImageError, match="not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(InvalidImageError, match="empty"):
        load_image(b"")
    with pytest.raises(PortraitError):
        load_image(12345)


def test_save_image_creates_folders(tmp_path):
    path = save_image(_gradient(), tmp_path / "a" / "b" / "x.png")
    assert load_image(path).size == (64, 48)
