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
    REGIONS,
    AlignedFace,
    FaceControls,
    FaceMesh,
    align_face,
    apply_controls,
    face_mesh_from_landmarks,
    render_depth,
)
from .face.segmentation import clean_mask, head_silhouette, segment_person
from .imageio import load_image
from .pipelines import PortraitPipeline, ReferenceFeatures
from .scene import HeadLayer, View, build_head_layer, output_size, render
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
# what alignment.json says about itself (written beside a depth estimate's files)
ALIGNMENT_USAGE = (
    "The crop_* files are the aligned face crop (crop_size, width x height pixels); depth.npy and depth.png are the "
    "photo's own pixels (photo_size). A point of the crop maps into the photo by photo_xy = A @ crop_xy + t, with "
    "crop_to_photo = [A | t] (2 x 3, a rotation, uniform scale and shift), in continuous pixel coordinates: pixel "
    "(i, j) spans [i, i + 1] x [j, j + 1], its centre at (i + 0.5, j + 0.5). Invert it to go from the photo to the crop."
)


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
        shading: what relighting needs of one depth estimate, independent of the light: ``(depth result, face
            crop, normals, head weight)`` (filled on the first relight, so a light-slider move only re-shades).
    """

    image: PIL.Image.Image
    crop: PIL.Image.Image
    face: AlignedFace | None = None
    mesh: FaceMesh | None = None
    message: str | None = None
    features: dict[int, ReferenceFeatures] = field(default_factory=dict, repr=False)
    layers: dict[int, HeadLayer] = field(default_factory=dict, repr=False)
    shading: tuple | None = field(default=None, repr=False)

    def paste_back(self, result: PIL.Image.Image, mask: np.ndarray | None = None, **kwargs) -> PIL.Image.Image:
        """A crop-space result blended into the full photo (the result itself when there is no alignment);
        ``kwargs`` go to :meth:`AlignedFace.paste_back` (e.g. ``feather``)."""
        if self.face is None:
            return result
        return self.face.paste_back(self.image, result, mask=mask, **kwargs)

    def crop_to_photo(self, size: int) -> np.ndarray:
        """``[2, 3]`` affine from the crop's pixels at ``size`` to the photo's (continuous coordinates,
        ``photo_xy = A @ crop_xy + t``): the alignment, or the centred square an unaligned crop was cut from."""
        if self.face is not None:
            return self.face.crop_to_photo_at(size)
        side = min(self.image.size)
        left, top = (self.image.width - side) // 2, (self.image.height - side) // 2
        return np.array([[side / size, 0.0, left], [0.0, side / size, top]])

    def head_mask(self, mask: np.ndarray, sure: np.ndarray | None = None) -> np.ndarray:
        """The model's head-and-neck ``mask`` ``[r, r]`` of the crop made clean with the photo's person segmentation
        (:func:`portrait.face.segmentation.head_silhouette`; ``sure``: pixels surely on the head, e.g. the face
        mesh's): one piece, no specks, the hair and hat above the chin that the model missed added (nothing is added
        to an unaligned crop: no chin to stop at)."""
        r = mask.shape[0]
        person = segment_person(self.image, self.crop_to_photo(r), r)
        chin = float(self.face.landmarks_at(r)[list(REGIONS["face_oval"]), 1].max()) if self.face is not None else 0.0
        return head_silhouette(mask, person, chin, sure)

    def in_photo(self, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A depth ``[r, r]`` of the crop in the photo's own pixel grid: ``(depth, mask)`` ``[H, W]`` (NaN / False
        off the head, one piece), warped through :meth:`crop_to_photo` and upsampled with the photo as the guide
        (:func:`portrait.depth.upsample_depth`), so its edges sit on the photo's edges."""
        from .depth import upsample_depth

        depth, mask = upsample_depth(depth, np.asarray(self.image), transform=self.crop_to_photo(depth.shape[0]))
        mask = clean_mask(mask)
        depth[~mask] = np.nan
        return depth, mask


@dataclass
class PortraitResult:
    """One result at the working resolution ``R``, with the full-photo composite when there is one.

    ``depth`` ``[R, R]`` float32 relative depth (larger = farther, NaN outside ``mask``); ``uncertainty``
    (depth estimation only) in the same units; ``target_depth`` (editing only) the depth the edit followed.
    Depth estimation also gives the depth in the photo's own pixel grid: ``photo_depth`` ``[H, W]`` float32 (NaN
    outside ``photo_mask``) and ``crop_to_photo`` ``[2, 3]``, the crop's pixels at ``R`` -> the photo's.
    """

    image: PIL.Image.Image
    depth: np.ndarray
    mask: np.ndarray
    composite: PIL.Image.Image | None = None
    uncertainty: np.ndarray | None = None
    target_depth: np.ndarray | None = None
    extras: dict[str, PIL.Image.Image] = field(default_factory=dict)
    mesh_step: int = 1  # pixels per vertex of the saved meshes (a warp edit's geometry is its layer's grid)
    photo_depth: np.ndarray | None = None
    photo_mask: np.ndarray | None = None
    crop_to_photo: np.ndarray | None = None

    def mesh(self, **kwargs):
        """The depth as a vertex-coloured ``trimesh.Trimesh`` (the project's one mesh builder)."""
        from .mesh import depth_to_mesh

        return depth_to_mesh(self.depth, rgb=np.asarray(self.image), mask=self.mask, **kwargs)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``rgb.png``, ``depth.npy``, ``depth.png`` (16-bit), ``depth_color.png`` and the meshes.

        With a ``photo_depth`` (depth estimation) those files of the crop are named ``crop_*`` (``crop_depth.npy``,
        ``crop_mesh.glb``, ...), ``depth.npy`` and ``depth.png`` are in the photo's own pixels, and
        ``alignment.json`` says how the two frames map."""
        from .depth import colorize_depth
        from .mesh import PNG_COMPRESSION, write_depth_outputs

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        crop = "" if self.photo_depth is None else "crop_"
        paths = {"rgb": out / f"{crop}rgb.png"}
        self.image.save(paths["rgb"], compress_level=PNG_COMPRESSION)
        cells = int(np.count_nonzero(self.mask)) // self.mesh_step**2
        paths.update(write_depth_outputs(self.depth, out, rgb=np.asarray(self.image), mask=self.mask, prefix=crop,
                                         max_faces=2 * cells if self.mesh_step > 1 else None).as_dict())
        if self.photo_depth is not None:
            paths.update(self._save_in_photo(out))
        if self.composite is not None:
            paths["composite"] = out / "composite.png"
            self.composite.save(paths["composite"], compress_level=PNG_COMPRESSION)
        if self.uncertainty is not None:
            paths["uncertainty"] = out / f"{crop}uncertainty.npy"
            np.save(paths["uncertainty"], self.uncertainty.astype(np.float32))
        if self.target_depth is not None and self.target_depth is not self.depth:
            paths["target_depth"] = out / "target_depth_color.png"
            PIL.Image.fromarray(colorize_depth(self.target_depth)).save(paths["target_depth"],
                                                                         compress_level=PNG_COMPRESSION)
        return paths

    def _save_in_photo(self, out: Path) -> dict[str, Path]:
        """``depth.npy`` (float32, NaN off the head) and ``depth.png`` (16-bit, 0 off the head) in the photo's own
        pixel grid, and ``alignment.json``."""
        import json

        from .depth import depth_to_png16
        from .mesh import PNG_COMPRESSION

        paths = {"photo_depth_npy": out / "depth.npy", "photo_depth_png": out / "depth.png",
                 "alignment": out / "alignment.json"}
        depth = np.where(self.photo_mask, self.photo_depth, np.nan).astype(np.float32)
        np.save(paths["photo_depth_npy"], depth)
        PIL.Image.fromarray(depth_to_png16(depth)).save(paths["photo_depth_png"], compress_level=PNG_COMPRESSION)
        alignment = {
            "crop_to_photo": np.asarray(self.crop_to_photo).tolist(),
            "crop_size": list(self.depth.shape[::-1]),
            "photo_size": list(depth.shape[::-1]),
            "usage": ALIGNMENT_USAGE,
        }
        paths["alignment"].write_text(json.dumps(alignment, indent=1) + "\n")
        return paths

    def save_views(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``normals.png`` (the crop's normals, :mod:`portrait.relight`; ``crop_normals.png`` beside a depth in
        the photo's pixels, like the other files of the crop) and ``turntable.mp4`` (the textured mesh turning +-30
        degrees, :mod:`portrait.turntable`): what a depth estimate shows besides :meth:`save`."""
        from .mesh import PNG_COMPRESSION
        from .relight import depth_normals, normals_to_rgb
        from .turntable import write_turntable

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        crop = "" if self.photo_depth is None else "crop_"
        paths = {"normals": out / f"{crop}normals.png", "turntable": out / "turntable.mp4"}
        normals = normals_to_rgb(depth_normals(self.depth, self.mask))
        PIL.Image.fromarray(normals).save(paths["normals"], compress_level=PNG_COMPRESSION)
        write_turntable(paths["turntable"], self.depth, np.asarray(self.image), self.mask)
        return paths


@dataclass
class RelightResult:
    """A photo re-shaded under a new light (:meth:`Studio.relight`).

    ``image`` the relit face crop ``[S, S]`` (the editing tab's output crop size); ``composite`` the full photo with
    it pasted back; ``normals`` ``[S, S, 3]`` float32 camera-frame normals of the head's depth (zero off the head).
    """

    image: PIL.Image.Image
    composite: PIL.Image.Image
    normals: np.ndarray

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``relit.png`` (the full photo), ``relit_face.png`` (the crop) and ``normals.png``."""
        from .mesh import PNG_COMPRESSION
        from .relight import normals_to_rgb

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"relit": out / "relit.png", "relit_face": out / "relit_face.png", "normals": out / "normals.png"}
        self.composite.save(paths["relit"], compress_level=PNG_COMPRESSION)
        self.image.save(paths["relit_face"], compress_level=PNG_COMPRESSION)
        PIL.Image.fromarray(normals_to_rgb(self.normals)).save(paths["normals"], compress_level=PNG_COMPRESSION)
        return paths


def paint_holes(pipe: PortraitPipeline, reference: PIL.Image.Image, start: np.ndarray, holes: np.ndarray,
                depth: np.ndarray, into: np.ndarray | None = None, steps: int = FILL_STEPS, guidance: float = 2.0,
                seed: int = 0, callback=None, reference_features: ReferenceFeatures | None = None,
                strength: float | None = None) -> np.ndarray:
    """The one hole-painting step of the studio: ``start`` ``[S, S, 3]`` uint8 (its holes pre-filled, e.g. by
    :func:`portrait.compositing.prefill`) with the joint model's painting of ``holes`` (RGB known outside them,
    ``depth`` known everywhere, NaN = background; at ``strength``, default ``FILL_STRENGTH``, from the pre-fill)
    composited into ``into`` (default: the holes), colour-matched to their surroundings. ``reference``: the
    person."""
    from .compositing import composite

    size = holes.shape[0]
    out = pipe.inpaint(
        reference, rgb=start, rgb_known=~holes, depth=depth, depth_known=np.ones_like(holes),
        strength=FILL_STRENGTH if strength is None else strength, num_inference_steps=steps, guidance_scale=guidance,
        generator=_generator(seed), callback=callback, reference_features=reference_features,
    )
    painted = np.asarray(out.images[0].resize((size, size), PIL.Image.Resampling.BICUBIC))
    return composite(start, painted, holes if into is None else into, feather_px=size / 128, ring_px=size / 64)


def model_painted(view: View) -> np.ndarray:
    """``[S, S]`` bool: the holes of ``view`` that the joint model paints (:meth:`Studio.fill_holes`): those inside
    the head, whose depth is known. The background behind the head is continued from its surroundings, and an
    opened mouth is shaded (the model never saw one, see ``MOUTH_SHADE``)."""
    return view.holes & ~view.mouth & np.isfinite(view.fill_depth)


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
        in_photo: bool = True,
    ) -> PortraitResult:
        """Facial depth of the photo's face crop, with uncertainty, the same depth in the photo's own pixels
        (``photo_depth``) and the colour depth over the full photo (``in_photo=False``: the crop's depth alone).

        The head's silhouette is the model's mask made clean here, for every use of the depth (the depth tab, the
        head layer of edits): :meth:`Photo.head_mask`; the hair and hat it adds take the nearest head depth.
        ``prior_strength`` None: from pure noise, no face-mesh prior (and so nothing to blend)."""
        from .depth import on_mask

        mesh_depth = self.face_depth(photo)
        prior = mesh_depth if prior_strength is not None else None
        out = self.pipe.estimate_depth(
            photo.crop, ensemble_size=ensemble_size, num_inference_steps=steps, depth_prior=prior,
            prior_strength=prior_strength if prior is not None else 1.0, prior_weight=prior_weight,
            generator=_generator(seed), callback=callback,
            reference_features=self.reference_features(photo),
        )
        mask = photo.head_mask(out.mask[0], np.isfinite(mesh_depth) if mesh_depth is not None else None)
        depth = on_mask(out.depth[0], mask)
        result = PortraitResult(image=photo.crop, depth=depth, mask=mask,
                                uncertainty=np.where(mask, out.uncertainty[0], np.nan))
        if in_photo:
            result.photo_depth, result.photo_mask = photo.in_photo(depth)
            result.crop_to_photo = photo.crop_to_photo(depth.shape[0])
            result.composite = _depth_over(photo.image, result.photo_depth)
        return result

    def relight(self, photo: Photo, depth: PortraitResult, azimuth: float, elevation: float,
                strength: float) -> RelightResult:
        """The photo re-shaded under a light at ``azimuth`` / ``elevation`` degrees (+ = from the viewer's right /
        from above; :mod:`portrait.relight`), blended in by ``strength`` in [0, 1] (0 = the photo, bit for bit).

        ``depth`` is this photo's :meth:`estimate_depth`: upsampled to the face crop at the editing tab's output
        size with the crop as the guide, its normals re-shade the crop inside the head (the edge feathered), and
        the crop is pasted back into the photo. Without an alignment the crop is the result. All but the shading is
        computed once per depth estimate (:attr:`Photo.shading`)."""
        from .relight import relight

        if photo.shading is None or photo.shading[0] is not depth:
            photo.shading = (depth, *self._shading_basis(photo, depth))
        _, crop, normals, weight = photo.shading
        size = crop.shape[0]
        image = relight(crop, normals, weight, azimuth, elevation, strength)
        if strength > 0:
            composite = photo.paste_back(PIL.Image.fromarray(image), weight, feather=1 / size)
        else:
            composite = photo.image.copy()
        return RelightResult(image=PIL.Image.fromarray(image), composite=composite, normals=normals)

    @staticmethod
    def _shading_basis(photo: Photo, depth: PortraitResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(crop, normals, weight)`` for :meth:`relight`: the face crop at the editing tab's output size, the
        normals of ``depth`` upsampled to it with the crop as the guide, and the head's feathered weight."""
        from .compositing import feather
        from .depth import upsample_depth
        from .face.warp import warp_to_square
        from .relight import depth_normals

        face = photo.face
        if face is not None:
            size = output_size(face)
            crop = np.asarray(warp_to_square(photo.image, face.crop_to_photo_at(size), size))
        else:
            crop = np.asarray(photo.crop)
            size = crop.shape[0]
        z, head = upsample_depth(np.where(depth.mask, depth.depth, np.nan), crop)
        return crop, depth_normals(z, head), feather(head, size / 64)  # weight: 0 at the head's edge -> 1 inside

    @_one_at_a_time
    def head_layer(self, photo: Photo) -> HeadLayer:
        """The photo's head and neck lifted into 3-D by this model's depth: built once per photo and model."""
        key = id(self.pipe)
        if key not in photo.layers:
            if photo.face is None:
                raise PortraitError("editing by pose and expression needs a face: prepare the photo with align=True")
            depth = self.estimate_depth(photo, ensemble_size=LAYER_ENSEMBLE, steps=LAYER_STEPS, in_photo=False)
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
        masks = {"holes": view.holes, "painted": model_painted(view), "changed": view.changed}
        return PortraitResult(
            image=PIL.Image.fromarray(image), depth=view.depth, mask=np.isfinite(view.depth), target_depth=view.depth,
            composite=composite, mesh_step=MESH_STEP,
            extras={name: PIL.Image.fromarray(m.astype(np.uint8) * 255) for name, m in masks.items()},
        )

    @_one_at_a_time
    def fill_holes(self, photo: Photo, view: View, steps: int = FILL_STEPS, guidance: float = 2.0, seed: int = 0,
                   callback=None, plate: np.ndarray | None = None) -> np.ndarray:
        """``view.image`` with its holes filled: those inside the head (a stretched side, where ``view.fill_depth``
        knows the depth) painted by the joint model (RGB known outside them, depth known everywhere), composited
        into them only and colour-matched to their surroundings; those behind the head (background, no depth
        known) continued from the background alone (``view.backdrop``, :func:`~portrait.compositing.continue_from`),
        which fills real backgrounds better than the model (the hole check of ``python -m portrait eval``, rows
        [background]) and, unlike a fill from the hole's whole border, takes no colour from the head. The inside
        of an opened mouth is shaded.

        With a ``plate`` (:meth:`background_plate`) the model is not called: the background behind the head comes
        from the plate and the holes inside the head are continued from their surroundings (an animation's frames
        share one background and cannot flicker).

        Last, the moved head's edges (``view.edges``: its outline, a cheek over the hair) are smoothed
        (:func:`~portrait.compositing.soften`): drawn with one sample per pixel they are stairs, and read as a seam."""
        from .compositing import soften

        return soften(self._filled(photo, view, steps, guidance, seed, callback, plate), view.edges)

    def _filled(self, photo: Photo, view: View, steps: int, guidance: float, seed: int, callback,
                plate: np.ndarray | None) -> np.ndarray:
        from .compositing import continue_from, prefill

        if not view.holes.any():
            return view.image
        size = view.holes.shape[0]
        behind = view.holes & ~np.isfinite(view.fill_depth)
        if plate is not None:
            start = view.image.copy()
            start[behind] = plate[behind]
        else:
            start = continue_from(view.image, behind, view.backdrop)
        start = prefill(start, view.holes & ~behind, radius_px=size / 128)
        start[view.mouth] = mouth_cavity(start, view.mouth, size / 32)
        if plate is not None:
            return start
        into = model_painted(view)
        if not into.any():
            return start
        return self._paint(photo, start, view.holes, view.fill_depth, into, steps, guidance, seed, callback)

    def _paint(self, photo: Photo, start: np.ndarray, holes: np.ndarray, depth: np.ndarray, into: np.ndarray,
               steps: int, guidance: float, seed: int, callback) -> np.ndarray:
        return paint_holes(self.pipe, photo.crop, start, holes, depth, into, steps, guidance, seed, callback,
                           self.reference_features(photo))

    @_one_at_a_time
    def background_plate(self, photo: Photo, poses: list[FaceControls]) -> np.ndarray:
        """``[S, S, 3]`` uint8: the output crop with the background that the head uncovers in any of ``poses``
        filled once, as :meth:`fill_holes` fills it (continued from what is background in every pose). The
        photo's own pixels everywhere else."""
        from .compositing import continue_from

        layer = self.head_layer(photo)
        behind = np.zeros_like(layer.covered)
        backdrop = np.ones_like(layer.covered)
        for controls in poses:
            view = render(layer, controls)
            behind |= view.holes & ~np.isfinite(view.fill_depth)
            backdrop &= view.backdrop
        if not behind.any():
            return layer.crop.copy()
        behind = dilate(behind, max(1, layer.size // 64)) & ~backdrop | behind  # poses in between uncover a little more
        return continue_from(layer.crop, behind, backdrop)

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


def _depth_over(image: PIL.Image.Image, depth: np.ndarray) -> PIL.Image.Image:
    """The photo with the colour depth (bright = near) over its pixels that have depth (``depth`` ``[H, W]``)."""
    from .depth import colorize_depth

    known = np.isfinite(depth)
    out = np.array(image.convert("RGB"))
    if known.any():
        rows, cols = np.flatnonzero(known.any(axis=1)), np.flatnonzero(known.any(axis=0))
        box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        region = out[box]
        region[known[box]] = colorize_depth(depth[box])[known[box]]
    return PIL.Image.fromarray(out)


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
