"""Hole masks for the hole-fill task (numpy, OpenCV and the editing engine; no torch).

An edit moves the photo's own pixels in 3-D (:mod:`portrait.scene`) and the joint model paints only the holes:
what the photo never showed, e.g. background uncovered behind a turned head, or the stretched side of a head.
Training teaches that job on masks of the same kind (``JointDiffusion.training_loss``, task ``holes``), from
two sources mixed by :class:`HoleMasks`:

- :func:`random_holes`: a few smooth bands and blobs on the head's outline, drawn from a seeded generator;
- a bank of *real* disocclusions (:func:`make_hole_bank`, ``python -m portrait holes``): synthetic samples of a
  data folder lifted into 3-D by their exact depth and rendered under random pose and expression controls,
  the renderer's ``View.holes`` kept at the data's resolution. Stored as ``.npz``: ``holes`` ``[N, R, R]`` bool,
  ``ids`` ``[N]`` (the sample each came from) and ``controls`` ``[N, K]`` (named by ``control_names``).

Masks are ``[R, R]`` bool, True = a hole (unknown RGB). Resized by the pipeline's rule: a pixel is a hole if
any pixel under it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import PortraitError

BANK_SHARE = 0.5  # the share of training masks taken from the bank (when there is one)
LIFT_SIZE = 512  # samples are lifted into 3-D at this side at least (the studio's aligned crop), upscaled if needed
PER_SAMPLE = 4  # renders (random controls) per lifted sample
CONTROL_NAMES = ("yaw", "pitch", "roll", "smile", "jaw_open")


# --- resizing -----------------------------------------------------------------------------------------------


def resize_holes(holes: np.ndarray, size: int) -> np.ndarray:
    """Hole masks ``[..., H, W]`` bool -> ``[..., size, size]`` bool: a pixel is a hole if any pixel under it is
    (the pipeline's rule for the working resolution and the latent grid)."""
    holes = np.asarray(holes, dtype=bool)
    if holes.shape[-2:] == (size, size):
        return holes
    flat = holes.reshape(-1, *holes.shape[-2:]).astype(np.float32)  # float: an area share of 1/16 stays > 0
    mode = cv2.INTER_AREA if size < holes.shape[-1] else cv2.INTER_NEAREST
    out = np.stack([cv2.resize(m, (size, size), interpolation=mode) > 0 for m in flat])
    return out.reshape(*holes.shape[:-2], size, size)


# --- random masks -------------------------------------------------------------------------------------------


def _default_head(size: int) -> np.ndarray:
    """A centred upright ellipse: where a portrait crop's head is when none is given."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return ((xx / size - 0.5) / 0.28) ** 2 + ((yy / size - 0.45) / 0.36) ** 2 <= 1.0


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """``[size, size]`` float32 smooth noise of about unit amplitude (a coarse random grid, bicubic-upsampled)."""
    coarse = rng.normal(0.0, 1.0, (cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


def random_holes(size: int, rng: np.random.Generator, head: np.ndarray | None = None) -> np.ndarray:
    """``[size, size]`` bool: 1 to 3 shapes that a moved head uncovers, on the outline of ``head``.

    ``head`` ``[size, size]`` bool is the head (and neck) of the sample; default: a centred ellipse. Shapes:
    *bands* hugging a stretch of the outline, thickest in the middle of the stretch and tapering to nothing at
    its ends, mostly just inside the outline (the background uncovered behind a turned head, a stretched side),
    and smooth *blobs* centred on the outline. Edges are roughened by smooth noise. Never empty; deterministic
    for a given ``rng`` state.
    """
    head = _default_head(size) if head is None or np.count_nonzero(head) < 16 else np.asarray(head, dtype=bool)
    u8 = head.astype(np.uint8)
    inside = cv2.distanceTransform(u8, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - u8, cv2.DIST_L2, 5)
    signed = outside - inside  # [size, size] px: > 0 outside the head, < 0 inside
    ys, xs = np.nonzero(head)
    cy, cx = ys.mean() + 0.5, xs.mean() + 0.5
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    angle = np.arctan2(yy - cy, xx - cx)  # [size, size] rad, about the head's centre
    edge_y, edge_x = np.nonzero(np.abs(signed) <= 1.0)  # the outline's pixels

    holes = np.zeros((size, size), bool)
    for _ in range(int(rng.integers(1, 4))):
        rough = _smooth_noise(rng, size, int(rng.integers(4, 9)))
        if rng.uniform() < 0.65:  # a band along the outline
            centre, half = rng.uniform(-math.pi, math.pi), math.radians(rng.uniform(20, 80))
            thick = rng.uniform(0.02, 0.12) * size
            off = (angle - centre + math.pi) % (2 * math.pi) - math.pi  # [-pi, pi) from the stretch's middle
            taper = np.clip(1.0 - (off / half) ** 2, 0.0, None)  # 1 in the middle -> 0 at the ends
            depth_in, depth_out = thick * taper, thick * rng.uniform(0.0, 0.4) * taper
            s = signed + 0.15 * thick * rough
            shape = (taper > 0) & (s >= -depth_in) & (s <= depth_out)
        else:  # a blob on the outline
            k = int(rng.integers(len(edge_y))) if len(edge_y) else None
            by, bx = (edge_y[k] + 0.5, edge_x[k] + 0.5) if k is not None else (cy, cx)
            radius = rng.uniform(0.03, 0.12) * size
            shape = np.hypot(yy - by, xx - bx) / radius + 0.25 * rough <= 1.0
        holes |= shape
    if not holes.any():  # everything fell outside the frame: one blob at the head's centre
        holes = np.hypot(yy - cy, xx - cx) <= max(1.0, 0.05 * size)
    return holes


# --- the training's source of masks -------------------------------------------------------------------------


class HoleMasks:
    """Hole masks for training at ``size``: from ``bank`` ``[N, size', size']`` (a share ``bank_share``, mirrored
    at random) and :func:`random_holes` otherwise (all of them without a bank)."""

    def __init__(self, size: int, bank: np.ndarray | None = None, bank_share: float = BANK_SHARE):
        self.size = int(size)
        self.bank = resize_holes(bank, self.size) if bank is not None and len(bank) else None
        self.bank_share = bank_share if self.bank is not None else 0.0

    @classmethod
    def load(cls, path: str | Path | None, size: int) -> HoleMasks:
        """Random masks, plus the bank at ``path`` when given (see :func:`read_hole_bank`)."""
        return cls(size, read_hole_bank(path).holes if path is not None else None)

    def __repr__(self) -> str:
        bank = f"{len(self.bank)} bank masks ({self.bank_share:.0%})" if self.bank is not None else "no bank"
        return f"HoleMasks({self.size}x{self.size}, {bank}, random otherwise)"

    def sample(self, rng: np.random.Generator, head: np.ndarray | None = None) -> np.ndarray:
        """One ``[size, size]`` bool mask; ``head`` ``[size, size]`` bool places the random ones."""
        if self.bank is not None and rng.uniform() < self.bank_share:
            holes = self.bank[int(rng.integers(len(self.bank)))]
            return holes[:, ::-1].copy() if rng.uniform() < 0.5 else holes.copy()
        return random_holes(self.size, rng, head)


# --- the bank of real disocclusions -------------------------------------------------------------------------


@dataclass
class HoleBank:
    """Masks rendered by the editing engine: ``holes`` ``[N, R, R]`` bool, the ``ids`` ``[N]`` of the samples they
    came from, the ``controls`` ``[N, len(CONTROL_NAMES)]`` they were rendered with."""

    holes: np.ndarray
    ids: np.ndarray
    controls: np.ndarray

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:  # a file object: numpy appends no ".npz" to the name
            np.savez_compressed(f, holes=self.holes.astype(bool), ids=self.ids.astype(str),
                                controls=self.controls.astype(np.float32), control_names=np.array(CONTROL_NAMES))
        return path


def read_hole_bank(path: str | Path) -> HoleBank:
    """Read a bank written by :func:`make_hole_bank`; raises ``PortraitError`` saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise PortraitError(f"hole mask bank {str(path)!r} does not exist; make one with "
                            f"python -m portrait holes --data DATA --out {path}")
    try:
        with np.load(path) as f:
            holes = f["holes"]
            n = len(holes)
            ids = f["ids"] if "ids" in f else np.array([""] * n)
            controls = f["controls"] if "controls" in f else np.zeros((n, len(CONTROL_NAMES)), np.float32)
    except (OSError, ValueError, KeyError) as err:
        raise PortraitError(f"could not read the hole mask bank {str(path)!r} (an .npz with `holes`): {err}") from err
    if holes.ndim != 3 or holes.shape[1] != holes.shape[2] or n == 0:
        raise PortraitError(f"hole mask bank {str(path)!r}: `holes` must be [N, R, R] with N >= 1, got {holes.shape}")
    return HoleBank(holes.astype(bool), ids, controls)


def random_controls(rng: np.random.Generator):
    """Pose and expression of one bank render: yaw +-30, pitch +-15, roll +-10 degrees, some smile and jaw."""
    from ..face import FaceControls

    return FaceControls(
        yaw=rng.uniform(-30, 30), pitch=rng.uniform(-15, 15), roll=rng.uniform(-10, 10),
        smile=rng.uniform(-0.4, 1.0) if rng.uniform() < 0.5 else 0.0,
        jaw_open=rng.uniform(0.0, 0.8) if rng.uniform() < 0.3 else 0.0,
    )


def lift_sample(rgb: np.ndarray, depth: np.ndarray):
    """A sample (``[r, r, 3]`` uint8 and its ``[r, r]`` depth, NaN off the head) lifted into 3-D as a
    :class:`portrait.scene.HeadLayer` whose output crop is the sample itself at ``max(LIFT_SIZE, r)`` pixels;
    None when no face is found. The sample is taken as an aligned crop: its alignment is the identity (upscaled
    first if small, for the face finder and the renderer)."""
    from PIL import Image

    from ..errors import NoFaceError
    from ..face import AlignedFace, detect_landmarks
    from ..scene import build_head_layer

    side = max(LIFT_SIZE, rgb.shape[0])
    image = Image.fromarray(rgb)
    if image.size != (side, side):
        image = image.resize((side, side), Image.Resampling.LANCZOS)
    try:
        found = detect_landmarks(image)
    except NoFaceError:
        return None
    face = AlignedFace(image=image, crop_to_photo=np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), photo_size=image.size,
                       landmarks=found.points.astype(np.float64), valid=np.ones((side, side), bool))
    return build_head_layer(image, face, depth, size=side)


def make_hole_bank(data: str | Path, count: int, seed: int = 0, split: str | None = "train", size: int | None = None,
                   per_sample: int = PER_SAMPLE, progress: bool = False) -> HoleBank:
    """``count`` real disocclusion masks from the samples (with depth) of the data folder ``data``.

    Samples are visited in a seeded order, each lifted into 3-D by its own depth (:func:`lift_sample`; samples
    without a face are skipped) and rendered under ``per_sample`` random controls (:func:`random_controls`);
    every render with a hole is kept, resized to ``size`` (default: the first sample's side). Visits the
    samples again, with new controls, until there are ``count`` masks.
    """
    from ..data.folder import _center_square, load_folder  # the training data set's square crop
    from ..scene import render

    if count < 1 or per_sample < 1:
        raise PortraitError(f"count and per_sample must be at least 1, got {count} and {per_sample}")
    samples, _ = load_folder(data, split)
    if not samples:
        raise PortraitError(f"no usable sample (image + depth) in {str(data)!r}" + (f" (split {split!r})" if split else ""))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(samples))
    size = size or min(samples[order[0]].rgb.shape[:2])
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=count, desc="hole masks", unit="mask")
    holes, ids, controls = [], [], []
    faceless: set[int] = set()
    while len(holes) < count:
        before = len(holes)
        for i in order:
            if len(holes) >= count:
                break
            if i in faceless:
                continue
            sample = samples[i]
            layer = lift_sample(_center_square(sample.rgb), _center_square(sample.depth))
            if layer is None:
                faceless.add(i)
                continue
            for _ in range(min(per_sample, count - len(holes))):
                c = random_controls(rng)
                view = render(layer, c)
                if not view.holes.any():
                    continue
                holes.append(resize_holes(view.holes, size))
                ids.append(sample.record.id)
                controls.append([getattr(c, name) for name in CONTROL_NAMES])
                if bar is not None:
                    bar.update(1)
        if len(holes) == before:
            why = "no face was found in any" if len(faceless) == len(samples) else "no render had a hole, in any"
            raise PortraitError(f"no hole mask could be made from {str(data)!r}: {why} of its {len(samples)} samples")
    if bar is not None:
        bar.close()
    return HoleBank(np.stack(holes), np.array(ids), np.array(controls, np.float32))
