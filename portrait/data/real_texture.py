"""Real-texture RGB-D portraits: real photos' own pixels at new poses, with exact depth (numpy, scipy, open3d; no torch).

The synthetic set (:mod:`portrait.data.synthetic`) paints its faces procedurally; a model may do worse on real
skin, hair and lighting. This set keeps the real pixels. For each source photo:

1. the photo is aligned (mediapipe landmarks, the synthetic set's ``SOURCE_CROP_SIZE`` crop) and given a whole
   head of known geometry: the face mesh of its own landmarks with its *depth* changed as the synthetic set
   changes its identities' shapes (:func:`portrait.data.synthetic.vary_shape`, seeded per photo; every landmark
   slides along its own camera ray, so it stays on its pixel and the photo's pixels stay on their features),
   plus the neck, ears and head ellipsoid that the synthetic renderer puts around a face mesh
   (:func:`portrait.data.synthetic.head_depth`, a head ``HAIR_VOLUME`` times the face, cut above the jaw line).
   That geometry is the scene's by construction, not a measurement of the real person's head: the photo's
   pixels are painted onto it. The change matters: unchanged, the face's ground truth would be the very
   mediapipe mesh that the app's depth prior is measured from, and any setting that trusts the mesh would win.
2. The photo is lifted into 3-D on that depth (:func:`portrait.scene.build_head_layer`; the depth it is given
   is the geometry above, not a model's estimate) and re-rendered at seeded poses and expressions
   (:func:`portrait.scene.render`: yaw within +-25 degrees, pitch +-12, roll +-8, some smile, brow and jaw).
   View 0 of each photo is the photo itself (zero controls: the aligned crop and its geometry).
3. Ground truth: the rendered layer's exact camera z (``View.depth``). The mask is where that depth is finite
   and the photo can show the pixel (``View.holes`` are left out of it); the holes' RGB is filled from their
   surroundings (OpenCV Telea, :func:`portrait.compositing.prefill`) so the image has no blank patches.
4. The render is made at a multiple of the output size (at least ``MIN_SIZE``) and reduced like the synthetic
   set's: RGB box-filtered (anti-aliased); a pixel is in the mask where at least half of its block is, its
   depth the mean over the block's masked pixels.

Sources and splits: the source photos held out of the synthetic training set (``split_sources`` with the
synthetic spec's seed and test fraction; with the defaults, seed 0 and 0.2: 20 of skimage's 100 LFW faces,
``lfw_001`` ... ``lfw_094``). Those faces are 25x25 pixels, grey, upscaled to 256 (what skimage ships), so
the textures are grey and blurry and the area around the face is the grey canvas they are pasted on. They are
split *by source face*: a seeded ``tune_fraction`` of them is the ``tune`` split (for choosing settings), the
rest the ``test`` split (reported), so settings are never chosen on a reported face. The two colour portraits
(skimage's astronaut, matplotlib's Grace Hopper) are *training* sources of the synthetic set; they form a
separate ``examples`` split, for looking at only, never for tuning or reporting.

Everything is reproducible from the seed: view ``v`` of source ``name`` draws its controls from
``default_rng([seed, crc32(name), v])``, its shape change from ``default_rng([seed, crc32(name), SHAPE_STREAM])``.
"""

from __future__ import annotations

import logging
import math
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..face import FaceControls
from ..scene.layer import MIN_SIZE  # rendered at least this large (the scene's smallest crop), then reduced
from .spec import SyntheticSpec
from .synthetic import SOURCE_CROP_SIZE, Sample, _source_photos, source_faces, split_sources

if TYPE_CHECKING:
    from ..scene import HeadLayer

logger = logging.getLogger(__name__)

HAIR_VOLUME = 1.1  # the head ellipsoid's size relative to the face (the synthetic set draws 1.05 - 1.3)
SHAPE_STREAM = 1 << 20  # the seed stream of a photo's shape change (views use 0, 1, ...)
EXAMPLES = ("astronaut", "grace_hopper")  # colour portraits that are synthetic training sources: split "examples"


@dataclass
class RealTextureSpec:
    """What :func:`generate` renders: ``views`` views of ``size`` pixels per source photo. The held-out sources
    are those of the synthetic set made with ``synthetic`` (its ``seed`` and ``test_fraction``); ``tune_fraction``
    of them (seeded by ``seed``) form the ``tune`` split. ``examples``: also render the ``EXAMPLES`` photos."""

    views: int = 4
    size: int = 128
    seed: int = 0
    tune_fraction: float = 1 / 3
    examples: bool = True
    synthetic: SyntheticSpec = field(default_factory=SyntheticSpec)


def tune_split(names: list[str], tune_fraction: float, seed: int) -> set[str]:
    """The names (a seeded ``tune_fraction`` of them, at least one and never all of two or more) of the ``tune``
    split; the others are ``test``."""
    if not names:
        return set()
    count = min(max(1, round(len(names) * tune_fraction)), max(1, len(names) - 1))
    order = np.random.default_rng([seed, 3]).permutation(len(names))
    return {names[i] for i in order[:count]}


def sources(spec: RealTextureSpec) -> list[tuple[str, Image.Image, str]]:
    """``(name, photo, split)`` of every source photo of ``spec``, the held-out ones first (in source order)."""
    faces = source_faces()
    held = split_sources(len(faces), spec.synthetic.test_fraction, spec.synthetic.seed)
    names = [f.name for f, h in zip(faces, held) if h]
    tune = tune_split(names, spec.tune_fraction, spec.seed)
    photos = dict(_source_photos())
    out = [(n, photos[n], "tune" if n in tune else "test") for n in names]
    if spec.examples:
        out += [(n, photos[n], "examples") for n in EXAMPLES if n not in names]
    return out


# --- one photo --------------------------------------------------------------------------------------------


def lift_photo(photo: Image.Image, render_size: int, rng: np.random.Generator | None = None) -> HeadLayer:
    """The photo's :class:`~portrait.scene.HeadLayer` at ``render_size`` on its head's exact geometry (see the
    module's docstring), the face's depth changed by ``rng`` (unchanged without). Raises ``NoFaceError`` without
    a face."""
    from dataclasses import replace

    from ..face import crop_face, detect_landmarks, face_mesh_from_landmarks
    from ..scene import build_head_layer
    from .synthetic import head_depth, vary_shape

    face = crop_face(photo, detect_landmarks(photo), SOURCE_CROP_SIZE)
    mesh = face_mesh_from_landmarks(face.landmarks, face.size)
    if rng is not None:  # each landmark to the changed mesh's depth, along its own ray (camera z = d + z_px / size)
        landmarks = face.landmarks.astype(np.float64).copy()
        landmarks[:, 2] = (vary_shape(mesh, rng).vertices[:, 2] - mesh.camera.distance) * face.size
        face = replace(face, landmarks=landmarks)
        mesh = face_mesh_from_landmarks(face.landmarks, face.size)
    depth = head_depth(mesh, render_size, HAIR_VOLUME, short_hair=True)  # [S, S] camera z, NaN off the head
    return build_head_layer(photo, face, depth, size=render_size)


def random_controls(rng: np.random.Generator) -> FaceControls:
    """A moderate pose (yaw +-25, pitch +-12, roll +-8 degrees) and, often, an expression."""
    expressive = rng.uniform() < 0.6
    return FaceControls(
        yaw=rng.uniform(-25, 25),
        pitch=rng.uniform(-12, 12),
        roll=rng.uniform(-8, 8),
        smile=rng.uniform(-0.3, 0.8) if expressive else 0.0,
        jaw_open=rng.uniform(0.1, 0.5) if expressive and rng.uniform() < 0.3 else 0.0,
        brow_raise=rng.uniform(-0.5, 0.5) if expressive else 0.0,
    )


def render_sample(layer: HeadLayer, controls: FaceControls, size: int) -> Sample:
    """The layer under ``controls`` as a sample of ``size`` pixels (``layer.size`` must be a multiple of it): RGB
    box-filtered, holes first filled from their surroundings; the mask where at least half of a pixel's block
    has depth and no hole, the depth the mean over those."""
    from ..compositing import prefill
    from ..scene import render

    view = render(layer, controls)
    big = layer.size
    if big % size:
        raise ValueError(f"the layer's size {big} is not a multiple of {size}")
    shown = np.isfinite(view.depth) & ~view.holes  # [S, S]: the ground truth's pixels at the render size
    rgb = prefill(view.image, view.holes, radius_px=big / 128)

    k = big // size

    def block_sum(a: np.ndarray) -> np.ndarray:
        return a.reshape(size, k, size, k, *a.shape[2:]).sum(axis=(1, 3))

    rgb = np.clip(np.round(block_sum(rgb.astype(np.float64)) / k**2), 0, 255).astype(np.uint8)
    count = block_sum(shown.astype(np.float64))
    mask = count >= k**2 / 2
    depth = block_sum(np.where(shown, view.depth, 0.0).astype(np.float64)) / np.maximum(count, 1)
    depth = np.where(mask, depth, np.nan).astype(np.float32)
    return Sample(rgb=rgb, depth=depth, mask=mask, controls=controls.to_dict())


# --- the data set -----------------------------------------------------------------------------------------


def generate(spec: RealTextureSpec, photos: list[tuple[str, Image.Image, str]] | None = None,
             progress: bool = False):
    """Yield ``(source_name, view_index, split, Sample)`` for every view of every photo (default
    :func:`sources` of ``spec``; a photo without a detected face is skipped and logged)."""
    from ..errors import NoFaceError

    photos = sources(spec) if photos is None else photos
    render_size = spec.size * max(1, math.ceil(MIN_SIZE / spec.size))
    if progress:
        from tqdm.auto import tqdm

        photos = tqdm(photos, desc="lifting and rendering photos", unit="photo")
    for name, photo, split in photos:
        try:
            layer = lift_photo(photo, render_size, np.random.default_rng([spec.seed, zlib.crc32(name.encode()), SHAPE_STREAM]))
        except NoFaceError:
            logger.warning("no face found in source photo %s; skipped", name)
            continue
        for v in range(spec.views):
            rng = np.random.default_rng([spec.seed, zlib.crc32(name.encode()), v])
            controls = FaceControls() if v == 0 else random_controls(rng)
            yield name, v, split, render_sample(layer, controls, spec.size)


def write_dataset(out, spec: RealTextureSpec, photos: list[tuple[str, Image.Image, str]] | None = None,
                  progress: bool = False):
    """Render ``spec`` into the folder format (:mod:`portrait.data.folder`) with a contact sheet; returns the
    manifest path. Each sample's identity and ``source`` are its source photo's name."""
    from dataclasses import asdict

    from .folder import FolderWriter, write_contact_sheet

    with FolderWriter(out, generator="portrait.data.real_texture", spec=asdict(spec)) as writer:
        for name, v, split, sample in generate(spec, photos, progress=progress):
            writer.add(f"{name}_{v:02d}", name, sample.rgb, sample.depth, sample.mask, split=split, source=name,
                       controls={k: round(x, 3) for k, x in sample.controls.items()})
    write_contact_sheet(out)
    return writer.root / "manifest.json"
