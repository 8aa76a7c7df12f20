"""The RGB-D folder format: writer, reader and the training data set (numpy; torch only inside ``__getitem__``).

Layout of a data folder (what ``python -m portrait synth`` writes; user data can use it too)::

    DIR/
      manifest.json        {"format": "portrait-rgbd", "version": 1, "samples": [ENTRY, ...], ...}
      images/ID.png        RGB face crop (square; any size)
      depth/ID.npy         float32 [H, W] relative depth, larger = farther, NaN where unknown
      masks/ID.png         optional: uint8 [H, W], 255 = face (default: where the depth is finite)
      contact_sheet.png    a picture of some samples

Each manifest ``ENTRY`` is ``{"id": ..., "identity": ..., "image": "images/ID.png", "depth": "depth/ID.npy",
"mask": "masks/ID.png" (optional), "split": "train" | "test" (optional), ...}`` with paths relative to DIR.

Without a manifest, a *plain folder* of user data is read from file names:

- images ``NAME.png|jpg|jpeg`` in ``images/`` (or in DIR itself), depth ``NAME.npy|png|exr`` in ``depth/``
  (or ``NAME_depth.*`` next to the image), optional masks ``NAME.png`` in ``masks/`` (or ``NAME_mask.png``);
- the identity is the image's subfolder (``images/IDENTITY/VIEW.png``) or else the name up to its last
  underscore (``alice_003.png`` -> ``alice``; a name without one is its own identity).

Depth files: float ``.npy`` (NaN = unknown), 16-bit ``.png`` (0 = unknown, see
:func:`portrait.depth.depth_to_png16`) or ``.exr`` (read with OpenCV; non-finite or <= 0 = unknown). Depth
maps of any scale are fine: the model only sees each map normalised over its mask.

Samples that cannot be used (missing or unreadable depth, depth / mask size differing from the image, no
valid depth pixel) are skipped and counted; the count and the reasons are logged, nothing crashes.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..depth import DEPTH_SUFFIXES, colorize_depth, depth_to_code, read_depth, resize_depth
from ..imageio import load_image

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "portrait-rgbd"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


# --- depth files ------------------------------------------------------------------------------------------


# --- records ----------------------------------------------------------------------------------------------


@dataclass
class Record:
    """One sample on disk (paths absolute)."""

    id: str
    identity: str
    image: Path
    depth: Path | None
    mask: Path | None = None
    split: str | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class LoadedSample:
    """A checked sample in memory: ``rgb`` ``[H, W, 3]`` uint8, ``depth`` ``[H, W]`` float32 (NaN off the
    mask), ``mask`` ``[H, W]`` bool."""

    record: Record
    rgb: np.ndarray
    depth: np.ndarray
    mask: np.ndarray


def scan_folder(root: str | os.PathLike) -> list[Record]:
    """The records of a data folder: from ``manifest.json`` if there is one, else from file names."""
    root = Path(root)
    if not root.is_dir():
        from ..errors import PortraitError

        raise PortraitError(f"data folder {str(root)!r} does not exist")
    manifest = root / MANIFEST
    if manifest.is_file():
        entries = json.loads(manifest.read_text())["samples"]
        return [
            Record(
                id=str(e["id"]), identity=str(e.get("identity", e["id"])), image=root / e["image"],
                depth=root / e["depth"] if e.get("depth") else None,
                mask=root / e["mask"] if e.get("mask") else None, split=e.get("split"),
                meta={k: v for k, v in e.items() if k not in ("id", "identity", "image", "depth", "mask", "split")},
            )
            for e in entries
        ]
    return _scan_plain(root)


def _find(candidates: list[Path]) -> Path | None:
    return next((c for c in candidates if c.is_file()), None)


def _scan_plain(root: Path) -> list[Record]:
    image_dir = root / "images" if (root / "images").is_dir() else root
    images = sorted(
        p for p in image_dir.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith(("_depth", "_mask"))
        and "depth" not in p.relative_to(root).parts[:-1] and "masks" not in p.relative_to(root).parts[:-1]
    )
    records = []
    for img in images:
        rel = img.relative_to(image_dir).with_suffix("")
        name = rel.name
        depth = _find(
            [root / "depth" / rel.with_suffix(s) for s in DEPTH_SUFFIXES]
            + [img.with_name(f"{name}_depth{s}") for s in DEPTH_SUFFIXES]
        )
        mask = _find([root / "masks" / rel.with_suffix(".png"), img.with_name(f"{name}_mask.png")])
        if len(rel.parts) > 1:
            identity = rel.parts[-2]
        else:
            identity = name.rsplit("_", 1)[0] if "_" in name else name
        records.append(Record(id=str(rel), identity=identity, image=img, depth=depth, mask=mask))
    return records


def load_sample(record: Record) -> LoadedSample:
    """Read and check one record. Raises ``ValueError`` saying why it cannot be used."""
    if record.depth is None or not record.depth.is_file():
        raise ValueError("missing depth")
    try:
        rgb = np.asarray(load_image(record.image, min_size=1))  # the one image loader: modes, EXIF, size limits
    except (OSError, ValueError) as err:
        raise ValueError(f"unreadable image ({err})") from err
    try:
        depth = read_depth(record.depth)
    except (OSError, ValueError) as err:
        raise ValueError(f"unreadable depth ({err})") from err
    if depth.shape != rgb.shape[:2]:
        raise ValueError(f"depth is {depth.shape[1]}x{depth.shape[0]} but the image is {rgb.shape[1]}x{rgb.shape[0]}")
    mask = np.isfinite(depth)
    if record.mask is not None:
        given = np.asarray(Image.open(record.mask).convert("L")) >= 128
        if given.shape != depth.shape:
            raise ValueError(f"mask is {given.shape[1]}x{given.shape[0]} but the image is {rgb.shape[1]}x{rgb.shape[0]}")
        mask &= given
    if mask.sum() < 16:
        raise ValueError("fewer than 16 valid depth pixels")
    depth = np.where(mask, depth, np.nan).astype(np.float32)
    return LoadedSample(record, rgb, depth, mask)


def load_folder(root: str | os.PathLike, split: str | None = None) -> tuple[list[LoadedSample], list[tuple[str, str]]]:
    """All usable samples of a folder (of ``split`` if given: records without a split belong to every
    split) and the skipped ``(id, reason)`` pairs, whose count is logged."""
    samples, skipped = [], []
    for record in scan_folder(root):
        if split is not None and record.split is not None and record.split != split:
            continue
        try:
            samples.append(load_sample(record))
        except ValueError as err:
            skipped.append((record.id, str(err)))
    if skipped:
        logger.warning(
            "skipped %d of %d samples in %s (first: %s: %s)",
            len(skipped), len(skipped) + len(samples), root, skipped[0][0], skipped[0][1],
        )
    return samples, skipped


# --- writer -----------------------------------------------------------------------------------------------


class FolderWriter:
    """Writes samples in the folder format; :meth:`close` writes ``manifest.json`` (use as a context manager)."""

    def __init__(self, root: str | os.PathLike, **info):
        self.root = Path(root)
        for sub in ("images", "depth", "masks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.info = info
        self.entries: list[dict] = []

    def add(self, sample_id: str, identity: str, rgb: np.ndarray, depth: np.ndarray, mask: np.ndarray,
            split: str | None = None, **meta) -> dict:
        entry = {
            "id": sample_id, "identity": identity, "image": f"images/{sample_id}.png",
            "depth": f"depth/{sample_id}.npy", "mask": f"masks/{sample_id}.png",
        }
        if split is not None:
            entry["split"] = split
        entry.update(meta)
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(self.root / entry["image"])
        np.save(self.root / entry["depth"], np.where(mask, depth, np.nan).astype(np.float32))
        Image.fromarray((np.asarray(mask, dtype=bool) * 255).astype(np.uint8)).save(self.root / entry["mask"])
        self.entries.append(entry)
        return entry

    def close(self) -> Path:
        path = self.root / MANIFEST
        path.write_text(json.dumps({"format": FORMAT, "version": 1, **self.info, "samples": self.entries}, indent=1))
        return path

    def __enter__(self) -> FolderWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()


# --- pictures ---------------------------------------------------------------------------------------------


def image_grid(rows: list[list[np.ndarray]], pad: int = 2, fill: int = 255) -> Image.Image:
    """A grid of ``[H, W, 3]`` uint8 tiles (rows may differ in length; tiles of one size)."""
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) + pad, cols * (w + pad) + pad, 3), fill, np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y : y + h, x : x + w] = tile[..., :3]
    return Image.fromarray(out)


def write_contact_sheet(root: str | os.PathLike, path: str | os.PathLike | None = None, identities: int = 8,
                        views: int = 4) -> Path:
    """A PNG of up to ``identities`` rows, each up to ``views`` (RGB, depth) pairs of one identity."""
    samples, _ = load_folder(root)
    groups: dict[str, list[LoadedSample]] = defaultdict(list)
    for s in samples:
        groups[s.record.identity].append(s)
    size = samples[0].rgb.shape[0] if samples else 64
    rows = []
    for identity in list(groups)[:identities]:
        row = []
        for s in groups[identity][:views]:
            if s.rgb.shape[0] != size:
                continue
            row += [s.rgb, colorize_depth(s.depth)]
        if row:
            rows.append(row)
    path = Path(path) if path is not None else Path(root) / "contact_sheet.png"
    if rows:
        image_grid(rows).save(path)
    return path


# --- the training data set --------------------------------------------------------------------------------


def _center_square(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return a[y : y + s, x : x + s]


def prepare(sample: LoadedSample, resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A sample at the model's resolution: (RGB ``[R, R, 3]`` uint8, depth code ``[R, R]`` float32, mask ``[R, R]``)."""
    rgb, depth, mask = (_center_square(a) for a in (sample.rgb, sample.depth, sample.mask))
    if rgb.shape[0] != resolution:  # the project's one depth resize: area-averaged, known where half a pixel is
        rgb = np.asarray(Image.fromarray(rgb).resize((resolution, resolution), Image.Resampling.LANCZOS))
        depth = resize_depth(np.where(mask, depth, np.nan), resolution)
        mask = np.isfinite(depth)
    return rgb, depth_to_code(depth, mask), mask


class PortraitDataset:
    """Map-style data set of a folder (works with ``torch.utils.data.DataLoader``), all in memory.

    Item ``i``: ``rgb`` ``[3, R, R]`` in [-1, 1], ``depth`` ``[1, R, R]`` depth code, ``mask`` ``[1, R, R]``
    (1 = face), ``reference`` ``[3, R, R]`` in [-1, 1]: another view of the same identity, drawn at random
    (the sample itself when the identity has one view). ``flip``: mirror sample and reference at random.
    """

    def __init__(self, root: str | os.PathLike, resolution: int, split: str | None = None, flip: bool = False):
        samples, self.skipped = load_folder(root, split)
        if not samples:
            from ..errors import PortraitError

            raise PortraitError(f"no usable sample in {str(root)!r}" + (f" (split {split!r})" if split else ""))
        prepared = [prepare(s, resolution) for s in samples]
        self.rgb = np.stack([p[0] for p in prepared])  # [N, R, R, 3] uint8
        self.code = np.stack([p[1] for p in prepared])  # [N, R, R]
        self.mask = np.stack([p[2] for p in prepared])  # [N, R, R]
        self.records = [s.record for s in samples]
        self.resolution, self.flip = resolution, flip
        groups: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(self.records):
            groups[r.identity].append(i)
        self.others = [[j for j in groups[r.identity] if j != i] or [i] for i, r in enumerate(self.records)]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_identities(self) -> int:
        return len({r.identity for r in self.records})

    def __getitem__(self, i: int) -> dict:
        import torch

        others = self.others[i]
        j = others[int(torch.randint(len(others), ()))]
        rgb = torch.from_numpy(self.rgb[i]).permute(2, 0, 1).float() / 127.5 - 1.0
        ref = torch.from_numpy(self.rgb[j]).permute(2, 0, 1).float() / 127.5 - 1.0
        code = torch.from_numpy(self.code[i])[None]
        mask = torch.from_numpy(self.mask[i].astype(np.float32))[None]
        if self.flip and bool(torch.rand(()) < 0.5):
            rgb, code, mask = rgb.flip(-1), code.flip(-1), mask.flip(-1)
        if self.flip and bool(torch.rand(()) < 0.5):
            ref = ref.flip(-1)
        return {"rgb": rgb, "depth": code, "mask": mask, "reference": ref}
