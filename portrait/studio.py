"""The studio: photo -> aligned face crop -> model -> results (+ paste-back, meshes, files).

The one layer between the pipeline and its users: the CLI and the app call these functions and get plain
data back (PIL images, numpy arrays, file paths). Nothing here knows Gradio. A :class:`Photo` is prepared
once per upload (landmarks, crop, face mesh) and reused by every job and every slider move.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image

from .errors import PortraitError
from .face import (
    AlignedFace,
    FaceControls,
    FaceMesh,
    align_face,
    apply_controls,
    face_mesh_from_landmarks,
    render_depth,
)
from .imageio import load_image
from .pipelines import PortraitPipeline, ReferenceFeatures
from .scene import HeadLayer, View, build_head_layer, render
from .scene.layer import MESH_STEP

ALIGN_SIZE = 512  # landmarks, face mesh and paste-back work on a crop this large; the model gets it resized
# Depth estimation starts from the face-mesh depth noised to this strength (SDEdit) rather than pure noise,
# and its result is averaged with the mesh where the mesh exists, the mesh weighing this much. Both chosen
# on held-out identities apart from those the model card reports (`python -m portrait eval --offset 64`).
DEFAULT_PRIOR_STRENGTH = 0.7
DEFAULT_PRIOR_WEIGHT = 0.7
EDIT_METHODS = ("warp", "regenerate")
# Editing by warping: the head's depth (estimated once per photo) with this budget, and the holes painted by
# the joint model from the pre-filled image noised to this strength
LAYER_ENSEMBLE, LAYER_STEPS = 2, 10
FILL_STRENGTH, FILL_STEPS = 0.6, 10
# The inside of an opened mouth is shaded, not painted by the model: the embedded default's synthetic faces
# never open their mouths, so it paints skin there. Its lips' colours, darkened to this at the lips and to a
# third of it deep inside.
MOUTH_SHADE = 0.35


@dataclass
class Photo:
    """A user's photo, prepared once.

    Attributes:
        image: the full photo, upright RGB, original resolution.
        crop: the aligned square face crop at the model's working resolution ``R``.
        face: the alignment (crop <-> photo), or None when the input was already a crop.
        mesh: the face mesh in the crop's camera frame (None without alignment).
        message: a note for the user (e.g. several faces were found and the largest was taken).
        features: the reference network's output for the crop, per model (filled on first use, so every
            later job and slider move skips that pass).
        layers: the photo lifted into 3-D for editing (:class:`portrait.scene.HeadLayer`), per model (filled on
            the first edit, from that model's depth).
    """

    image: PIL.Image.Image
    crop: PIL.Image.Image
    face: AlignedFace | None = None
    mesh: FaceMesh | None = None
    message: str | None = None
    features: dict[int, ReferenceFeatures] = field(default_factory=dict, repr=False)
    layers: dict[int, HeadLayer] = field(default_factory=dict, repr=False)

    def paste_back(self, result: PIL.Image.Image, mask: np.ndarray | None = None, **kwargs) -> PIL.Image.Image:
        """A crop-space result blended into the full photo (the result itself when there is no alignment);
        ``kwargs`` go to :meth:`AlignedFace.paste_back` (e.g. ``feather``)."""
        if self.face is None:
            return result
        return self.face.paste_back(self.image, result, mask=mask, **kwargs)


@dataclass
class PortraitResult:
    """One result at the working resolution ``R``, with the full-photo composite when there is one.

    ``depth`` ``[R, R]`` float32 relative depth (larger = farther, NaN outside ``mask``); ``uncertainty``
    (depth estimation only) in the same units; ``target_depth`` (editing only) the depth the edit followed.
    """

    image: PIL.Image.Image
    depth: np.ndarray
    mask: np.ndarray
    composite: PIL.Image.Image | None = None
    uncertainty: np.ndarray | None = None
    target_depth: np.ndarray | None = None
    extras: dict[str, PIL.Image.Image] = field(default_factory=dict)
    mesh_step: int = 1  # pixels per vertex of the saved meshes (a warp edit's geometry is its layer's grid)

    def mesh(self, **kwargs):
        """The depth as a vertex-coloured ``trimesh.Trimesh`` (the project's one mesh builder)."""
        from .mesh import depth_to_mesh

        return depth_to_mesh(self.depth, rgb=np.asarray(self.image), mask=self.mask, **kwargs)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``rgb.png``, ``depth.npy``, ``depth.png`` (16-bit), ``depth_color.png`` and the meshes."""
        from .depth import colorize_depth
        from .mesh import PNG_COMPRESSION, write_depth_outputs

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"rgb": out / "rgb.png"}
        self.image.save(paths["rgb"], compress_level=PNG_COMPRESSION)
        cells = int(np.count_nonzero(self.mask)) // self.mesh_step**2
        paths.update(write_depth_outputs(self.depth, out, rgb=np.asarray(self.image), mask=self.mask,
                                         max_faces=2 * cells if self.mesh_step > 1 else None).as_dict())
        if self.composite is not None:
            paths["composite"] = out / "composite.png"
            self.composite.save(paths["composite"], compress_level=PNG_COMPRESSION)
        if self.uncertainty is not None:
            np.save(out / "uncertainty.npy", self.uncertainty.astype(np.float32))
            paths["uncertainty"] = out / "uncertainty.npy"
        if self.target_depth is not None and self.target_depth is not self.depth:
            paths["target_depth"] = out / "target_depth_color.png"
            PIL.Image.fromarray(colorize_depth(self.target_depth)).save(paths["target_depth"],
                                                                         compress_level=PNG_COMPRESSION)
        return paths


def _generator(seed: int):
    import torch

    return torch.Generator().manual_seed(int(seed))


def _one_at_a_time(method):
    """A studio job that holds the studio's lock while it runs (see :class:`Studio`)."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)

    return run


class Studio:
    """The model plus everything around it. One instance serves every user (it keeps no per-user state).

    Its jobs run one at a time (``lock``, re-entrant: a job may call another): the app queues its jobs in one
    concurrency group, and what runs outside that queue (Gradio's cached examples) waits here for a user's job.
    """

    def __init__(self, pipe: PortraitPipeline):
        self.pipe = pipe
        self.lock = threading.RLock()

    @classmethod
    def load(cls, model: str | None = None, device: str = "cpu") -> Studio:
        from .pipelines import load_pipeline

        return cls(load_pipeline(model, device=device))

    @property
    def resolution(self) -> int:
        return self.pipe.resolution

    # --- per upload -----------------------------------------------------------------------------------------

    def prepare(self, source, align: bool = True) -> Photo:
        """Load a photo and find, align and mesh its face (once per upload).

        ``align=False`` takes the input as an already aligned face crop (square or centre-cropped).
        Raises ``InvalidImageError`` / ``ImageSizeError`` / ``NoFaceError`` with a message for the user.
        """
        image = load_image(source)
        r = self.resolution
        if not align:
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            crop = image.crop((left, top, left + side, top + side)).resize((r, r), PIL.Image.Resampling.LANCZOS)
            return Photo(image=image, crop=crop)
        face = align_face(image, ALIGN_SIZE)
        mesh = face_mesh_from_landmarks(face.landmarks, face.size, image=face.image)
        crop = face.image.resize((r, r), PIL.Image.Resampling.LANCZOS)
        return Photo(image=image, crop=crop, face=face, mesh=mesh, message=face.message)

    def face_depth(self, photo: Photo, controls: FaceControls | None = None) -> np.ndarray | None:
        """The face mesh's depth ``[R, R]`` (NaN off the mesh), posed and deformed by ``controls``."""
        if photo.mesh is None:
            return None
        mesh = apply_controls(photo.mesh, controls) if controls is not None else photo.mesh
        return render_depth(mesh, self.resolution).depth

    @_one_at_a_time
    def reference_features(self, photo: Photo) -> ReferenceFeatures:
        """The reference network's output for the photo's crop: computed once per photo and model, then reused."""
        key = id(self.pipe)
        if key not in photo.features:
            photo.features[key] = self.pipe.encode_reference(photo.crop)
        return photo.features[key]

    # --- the three jobs -------------------------------------------------------------------------------------

    @_one_at_a_time
    def estimate_depth(
        self, photo: Photo, ensemble_size: int = 4, steps: int = 20, seed: int = 0,
        prior_strength: float | None = DEFAULT_PRIOR_STRENGTH, prior_weight: float = DEFAULT_PRIOR_WEIGHT, callback=None,
    ) -> PortraitResult:
        """Facial depth of the photo's face crop, with uncertainty and the colour depth on the full photo.

        ``prior_strength`` None: from pure noise, no face-mesh prior (and so nothing to blend)."""
        prior = self.face_depth(photo) if prior_strength is not None else None
        out = self.pipe.estimate_depth(
            photo.crop, ensemble_size=ensemble_size, num_inference_steps=steps, depth_prior=prior,
            prior_strength=prior_strength if prior is not None else 1.0, prior_weight=prior_weight,
            generator=_generator(seed), callback=callback,
            reference_features=self.reference_features(photo),
        )
        depth, mask = out.depth[0], out.mask[0]
        return PortraitResult(
            image=photo.crop, depth=depth, mask=mask, uncertainty=out.uncertainty[0],
            composite=photo.paste_back(_depth_image(depth), mask),
        )

    @_one_at_a_time
    def head_layer(self, photo: Photo) -> HeadLayer:
        """The photo's head and neck lifted into 3-D by this model's depth: built once per photo and model."""
        key = id(self.pipe)
        if key not in photo.layers:
            if photo.face is None:
                raise PortraitError("editing by pose and expression needs a face: prepare the photo with align=True")
            depth = self.estimate_depth(photo, ensemble_size=LAYER_ENSEMBLE, steps=LAYER_STEPS)
            photo.layers[key] = build_head_layer(photo.image, photo.face, depth.depth)
        return photo.layers[key]

    @_one_at_a_time
    def edit(
        self, photo: Photo, controls: FaceControls | None = None, target_depth: np.ndarray | None = None,
        method: str = "warp", strength: float = 0.8, steps: int | None = None, guidance: float = 2.0, seed: int = 0,
        callback=None,
    ) -> PortraitResult:
        """The photo's person moved to a new pose and expression.

        ``method="warp"`` (default): the photo's own pixels move in 3-D (:mod:`portrait.scene`) and the joint model
        paints only what the photo never showed, with its depth known; zero controls return the photo unchanged.
        The result is at the output crop's size (at least 512 px). ``method="regenerate"``: the whole face crop
        is re-sampled by the model (SDEdit at ``strength``) to follow the face mesh under ``controls`` or an
        explicit ``target_depth`` ``[H, W]`` of the crop, at the model's resolution; the model's own look
        replaces the photo's. ``steps`` (default ``FILL_STEPS`` for warp, 20 to regenerate), ``guidance`` and
        ``seed`` drive the model in both.
        """
        if method not in EDIT_METHODS:
            raise PortraitError(f"unknown editing method {method!r}; choose one of {', '.join(EDIT_METHODS)}")
        if method == "regenerate" or target_depth is not None:
            return self._regenerate(photo, controls, target_depth, strength, steps or 20, guidance, seed, callback)
        view = render(self.head_layer(photo), controls or FaceControls())
        image = self.fill_holes(photo, view, steps or FILL_STEPS, guidance, seed, callback)
        grow = max(1, view.changed.shape[0] // 256)
        composite = photo.image.copy()
        if view.changed.any():  # only where the head was or is: a narrow seam, the rest of the photo untouched
            composite = photo.paste_back(PIL.Image.fromarray(image), dilate(view.changed, grow), feather=grow / 256)
        masks = {"holes": view.holes, "changed": view.changed}
        return PortraitResult(
            image=PIL.Image.fromarray(image), depth=view.depth, mask=np.isfinite(view.depth), target_depth=view.depth,
            composite=composite, mesh_step=MESH_STEP,
            extras={name: PIL.Image.fromarray(m.astype(np.uint8) * 255) for name, m in masks.items()},
        )

    @_one_at_a_time
    def fill_holes(self, photo: Photo, view: View, steps: int = FILL_STEPS, guidance: float = 2.0, seed: int = 0,
                   callback=None, plate: np.ndarray | None = None) -> np.ndarray:
        """``view.image`` with its holes painted by the joint model (RGB known outside them, depth known
        everywhere), composited into the holes only and colour-matched to their surroundings.

        With a ``plate`` (:meth:`background_plate`) the model is not called: the background behind the head comes
        from the plate and the holes inside the head are continued from their surroundings (an animation's frames
        share one painted background and cannot flicker)."""
        from .compositing import composite, prefill

        if not view.holes.any():
            return view.image
        size = view.holes.shape[0]
        start = view.image
        holes = view.holes
        if plate is not None:
            start = view.image.copy()
            behind = holes & ~np.isfinite(view.fill_depth)
            start[behind] = plate[behind]
            holes = holes & ~behind
        start = prefill(start, holes, radius_px=size / 128)
        start[view.mouth] = mouth_cavity(start, view.mouth, size / 32)
        if plate is not None:
            return start
        out = self.pipe.inpaint(
            photo.crop, rgb=start, rgb_known=~view.holes, depth=view.fill_depth,
            depth_known=np.ones_like(view.holes), strength=FILL_STRENGTH, num_inference_steps=steps,
            guidance_scale=guidance, generator=_generator(seed), callback=callback,
            reference_features=self.reference_features(photo),
        )
        painted = np.asarray(out.images[0].resize((size, size), PIL.Image.Resampling.BICUBIC))
        # an opened mouth keeps its shaded pre-fill: the model never saw one (see MOUTH_SHADE)
        return composite(start, painted, view.holes & ~view.mouth, feather_px=size / 128, ring_px=size / 64)

    @_one_at_a_time
    def background_plate(self, photo: Photo, poses: list[FaceControls], steps: int = FILL_STEPS,
                         guidance: float = 2.0, seed: int = 0, callback=None) -> np.ndarray:
        """``[S, S, 3]`` uint8: the output crop with the background that the head uncovers in any of ``poses``
        painted once by the joint model (RGB known elsewhere, depth known: background there, the head at rest
        elsewhere). The photo's own pixels everywhere else."""
        from .compositing import composite, prefill

        layer = self.head_layer(photo)
        behind = np.zeros_like(layer.covered)
        for controls in poses:
            view = render(layer, controls)
            behind |= view.holes & ~np.isfinite(view.fill_depth)
        if not behind.any():
            return layer.crop.copy()
        size = layer.size
        behind = dilate(behind, max(1, size // 64)) & layer.covered | behind  # poses in between uncover a little more
        start = prefill(layer.crop, behind, radius_px=size / 128)
        depth = layer.depth.copy()
        depth[behind] = np.nan
        out = self.pipe.inpaint(
            photo.crop, rgb=start, rgb_known=~behind, depth=depth, depth_known=np.ones_like(behind),
            strength=FILL_STRENGTH, num_inference_steps=steps, guidance_scale=guidance, generator=_generator(seed),
            callback=callback, reference_features=self.reference_features(photo),
        )
        painted = np.asarray(out.images[0].resize((size, size), PIL.Image.Resampling.BICUBIC))
        return composite(start, painted, behind, feather_px=size / 128, ring_px=size / 64)

    def _regenerate(self, photo, controls, target_depth, strength, steps, guidance, seed, callback) -> PortraitResult:
        """The whole face crop re-sampled by the model to follow a target depth (see :meth:`edit`)."""
        if target_depth is None:
            target_depth = self.face_depth(photo, controls or FaceControls())
            if target_depth is None:
                raise PortraitError("editing by pose and expression needs a face: prepare the photo with align=True")
        out = self.pipe.edit(
            photo.crop, target_depth, strength=strength, num_inference_steps=steps, guidance_scale=guidance,
            generator=_generator(seed), callback=callback, reference_features=self.reference_features(photo),
        )
        image, mask = out.images[0], out.mask[0]
        target = _at_resolution(target_depth, self.resolution)
        # paste back only around the face (as photographed and as edited): the rest of the photo stays as it was
        changed = mask | np.isfinite(target)
        original = self.face_depth(photo)
        if original is not None:
            changed |= np.isfinite(original)
        return PortraitResult(
            image=image, depth=out.depth[0], mask=mask, target_depth=target,
            composite=photo.paste_back(image, dilate(changed, max(1, self.resolution // 16))),
        )

    @_one_at_a_time
    def animate(self, photo: Photo, driving: str | Path, out_dir: str | Path, **kwargs):
        """The photo's person moved by a driving video: an RGB video, a depth video and per-frame depth arrays in
        ``out_dir`` (:func:`portrait.animation.animate`, which takes the ``kwargs``); returns an
        :class:`~portrait.animation.Animation`."""
        from .animation import animate

        return animate(self, photo, driving, out_dir, **kwargs)

    @_one_at_a_time
    def generate(
        self, photo: Photo, num_images: int = 1, steps: int = 20, guidance: float = 2.0, seed: int = 0, callback=None,
    ) -> list[PortraitResult]:
        """New portraits of the photo's person, each with its depth."""
        out = self.pipe.generate(
            photo.crop, num_images=num_images, num_inference_steps=steps, guidance_scale=guidance,
            generator=_generator(seed), callback=callback, reference_features=self.reference_features(photo),
        )
        return [PortraitResult(image=img, depth=d, mask=m) for img, d, m in zip(out.images, out.depth, out.mask)]


def mouth_cavity(image: np.ndarray, mouth: np.ndarray, depth_px: float) -> np.ndarray:
    """``[M, 3]`` uint8 colours of the ``mouth`` pixels of ``image`` (pre-filled from the lips): darkened by
    ``MOUTH_SHADE`` at the lips and more towards the middle, over ``depth_px`` pixels."""
    from .compositing import feather

    inside = feather(mouth, depth_px)[mouth][:, None]  # 0 at the lips -> 1 deep inside
    shade = MOUTH_SHADE * (1 - 2 / 3 * inside)
    return np.clip(image[mouth] * shade, 0, 255).astype(np.uint8)


def _depth_image(depth: np.ndarray) -> PIL.Image.Image:
    from .depth import colorize_depth

    return PIL.Image.fromarray(colorize_depth(depth))


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Grow a boolean mask by ``radius`` pixels (a square max filter)."""
    from PIL import ImageFilter

    img = PIL.Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(2 * radius + 1))
    return np.asarray(img) > 0


def _at_resolution(depth: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of a depth map (keeps NaN where there is no depth)."""
    depth = np.asarray(depth, dtype=np.float32)
    if depth.shape == (size, size):
        return depth
    rows = (np.arange(size) * depth.shape[0] / size).astype(int)
    cols = (np.arange(size) * depth.shape[1] / size).astype(int)
    return depth[rows][:, cols]


def read_depth(path: str | Path) -> np.ndarray:
    """A depth map from ``.npy`` (float, NaN = none) or a 16-bit PNG (0 = none); relative depth, larger = farther."""
    from .depth import png16_to_depth
    from .errors import InvalidImageError

    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            depth = np.load(path).astype(np.float32)
        else:
            depth = png16_to_depth(np.asarray(PIL.Image.open(path)))
    except (OSError, ValueError) as err:
        raise InvalidImageError(f"could not read a depth map from {path}: {err}") from err
    if depth.ndim != 2:
        raise InvalidImageError(f"a depth map must be 2-D, {path} has shape {depth.shape}")
    return depth
