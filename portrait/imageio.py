"""The one image loader of the project (PIL + numpy, no torch).

Every entry point (CLI, app, training, evaluation) reads images through :func:`load_image`, so the same
inputs are accepted everywhere and the same clear errors come back for bad ones:

- sources: a path, raw bytes, a binary file object, a ``PIL.Image.Image`` or a numpy array;
- pixel formats: 8/16-bit grayscale, RGB, RGBA/LA (composited on white), palette, CMYK, 1-bit, float
  images and arrays (uint8 0..255, uint16 0..65535, bool, float 0..1);
- EXIF orientation is applied, so a phone photo comes out upright;
- the size is checked from the file header *before* the pixels are decoded, so a huge image is refused
  without allocating it (:class:`~portrait.errors.ImageSizeError`), and unreadable or truncated files raise
  :class:`~portrait.errors.InvalidImageError`.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageSizeError, InvalidImageError

ImageSource = str | os.PathLike | bytes | bytearray | BinaryIO | Image.Image | np.ndarray

DEFAULT_MAX_PIXELS = 64_000_000  # e.g. 8000 x 8000; larger photos are refused before decoding
DEFAULT_MIN_SIZE = 32  # the shorter side must have at least this many pixels
BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white


def load_image(
    source: ImageSource,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    min_size: int = DEFAULT_MIN_SIZE,
) -> Image.Image:
    """Read an image from any supported source and return it as an upright 8-bit RGB ``PIL.Image``.

    Args:
        source: file path, encoded bytes, binary file object, PIL image or numpy array ``[H, W]``,
            ``[H, W, 1]``, ``[H, W, 3]`` or ``[H, W, 4]`` (uint8, uint16, bool or float in [0, 1]).
        max_pixels: largest accepted ``width * height`` (None = no limit of ours; PIL's own
            decompression-bomb limit still applies). Checked from the header, before decoding.
        min_size: smallest accepted length of the shorter side, in pixels.

    Raises:
        InvalidImageError: the source is not a readable image (missing, corrupt, truncated, wrong type).
        ImageSizeError: the image is smaller than ``min_size`` or larger than ``max_pixels``.
    """
    if isinstance(source, np.ndarray):
        _check_size(source.shape[1] if source.ndim >= 2 else 0, source.shape[0], max_pixels, min_size)
        return _array_to_rgb(source)
    if isinstance(source, Image.Image):
        _check_size(*source.size, max_pixels, min_size)
        return _decode(source, source)

    image = _open_lazily(source, max_pixels)  # reads the header only
    try:
        _check_size(*image.size, max_pixels, min_size)
        return _decode(image, source)
    finally:
        image.close()


def save_image(image: Image.Image | np.ndarray, path: str | os.PathLike) -> Path:
    """Save a PIL image or a uint8/uint16 array as PNG/JPEG (by suffix), creating the folder. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image.save(path)
    return path


# --- helpers ----------------------------------------------------------------------------------------------


def _describe(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return f"'{source}'"
    return "the image data"


def _open_lazily(source, max_pixels: int | None) -> Image.Image:
    """``Image.open`` with its errors turned into :class:`InvalidImageError` / :class:`ImageSizeError`."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise InvalidImageError("the image data is empty")
        fp = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        if not os.path.isfile(source):
            raise InvalidImageError(f"image file not found: '{source}'")
        fp = source
    elif hasattr(source, "read"):
        fp = source
    else:
        raise InvalidImageError(f"cannot read an image from an object of type {type(source).__name__}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(fp)
    except Image.DecompressionBombError as exc:
        # PIL refused it from the header already (over twice its own limit); report the size we can find.
        size = _header_size(fp)
        if size is not None:
            _check_size(*size, max_pixels if max_pixels is not None else 2 * Image.MAX_IMAGE_PIXELS, 0)
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise ImageSizeError(f"the image is too large: {pixels}; PIL refuses images this large") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImageError(
            f"{_describe(source)} is not a readable image file (unknown or corrupt format)"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImageError(
            f"could not read {_describe(source)}: the file is corrupt or truncated ({exc})"
        ) from exc


def _header_size(fp) -> tuple[int, int] | None:
    """``(width, height)`` from the header via PIL's format plugins, skipping the decompression-bomb check."""
    opened = None
    try:
        if isinstance(fp, (str, os.PathLike)):
            fp = opened = open(fp, "rb")
        Image.init()
        for format_id in Image.ID:
            factory, accept = Image.OPEN[format_id]
            fp.seek(0)
            prefix = fp.read(16)
            fp.seek(0)
            if accept is not None and not accept(prefix):
                continue
            try:
                return tuple(factory(fp, "").size)
            except Exception:  # noqa: BLE001 - not this format; try the next plugin
                continue
    except (OSError, AttributeError):
        return None
    finally:
        if opened is not None:
            opened.close()
    return None


def _decode(image: Image.Image, source) -> Image.Image:
    """Decode the pixels (``load``), apply the EXIF orientation and convert to RGB."""
    try:
        image.load()
        return _to_rgb(ImageOps.exif_transpose(image))
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImageError(
            f"could not decode {_describe(source)}: the file is corrupt or truncated ({exc})"
        ) from exc


def _check_size(width: int, height: int, max_pixels: int | None, min_size: int) -> None:
    if min(width, height) < min_size:
        raise ImageSizeError(
            f"the image is too small: {width}x{height} pixels; both sides need at least {min_size} pixels"
        )
    if max_pixels is not None and width * height > max_pixels:
        raise ImageSizeError(
            f"the image is too large: {width}x{height} = {width * height:,} pixels; "
            f"the limit is {max_pixels:,} pixels (downscale it first)"
        )


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB (16-bit and float scaled, not clipped; alpha composited on white)."""
    mode = image.mode
    if mode == "RGB":
        return image.copy()
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _array_to_rgb(np.asarray(image))
    if mode == "P":
        image = image.convert("RGBA")  # keeps palette transparency
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def _array_to_rgb(array: np.ndarray) -> Image.Image:
    """Numpy image -> 8-bit RGB PIL image. uint16 is scaled by 1/257, float/bool are read as [0, 1]."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise InvalidImageError(
            f"an image array must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]; got shape {tuple(array.shape)}"
        )
    if array.dtype == np.uint8:
        pixels = array
    elif array.dtype == bool:
        pixels = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16:
        pixels = np.round(array / 257.0).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.integer):
        # 32-bit integer images (PIL mode "I", e.g. 16-bit PNG): 0..255 stays, otherwise 0..65535.
        top = 255.0 if array.size and array.max() <= 255 else 65535.0
        pixels = np.round(np.clip(array, 0, top) * (255.0 / top)).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        values = np.nan_to_num(array.astype(np.float32), nan=0.0)
        pixels = np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        raise InvalidImageError(f"unsupported image array type {array.dtype}")
    if pixels.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(pixels)).convert("RGB")
    if pixels.shape[2] == 4:
        return _to_rgb(Image.fromarray(np.ascontiguousarray(pixels)))
    return Image.fromarray(np.ascontiguousarray(pixels))
