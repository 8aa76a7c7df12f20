"""The app's handlers: a :class:`~portrait.studio.Studio` plus plain inputs -> plain outputs (no Gradio here).

``app.py`` lays out the page and wires each event to one method of :class:`StudioDemo`. The methods take
what the page sends (a file path, slider values, a seed) and return named tuples of PIL images, file paths
and Markdown text in the order of the page's output components, so they are tested without a browser.

- Per-user state: the photo prepared on upload (landmarks, aligned crop, face mesh) travels in and out of
  the handlers as a :class:`PhotoState`, which the app keeps in ``gr.State``; nothing per user is stored on
  the shared studio. A handler given the same upload again reuses it, so a slider move never re-detects
  the face.
- Files: every call writes its downloads into its own folder of an :class:`OutputStore`, which keeps only
  the most recent folders and removes everything when the app exits.
- ``progress(step, total)`` (optional) is called after each denoising step.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import PIL.Image

from .errors import PortraitError
from .face.controls import CONTROL_SPECS, FaceControls

if TYPE_CHECKING:  # the studio pulls in torch; importing this module must stay light
    from .studio import Photo, Studio

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = [str(p) for p in sorted(EXAMPLES_DIR.glob("*")) if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
DISPLAY_SIDES = (256, 1024)  # shown images are scaled into this range of longest side; downloads keep their size

Progress = Callable[[int, int], None]

# --- settings -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Range and default of a job setting (read by the app's widgets and by the handlers' input checks)."""

    minimum: float
    maximum: float
    default: float
    step: float = 1


SETTINGS: dict[str, Limits] = {
    "ensemble_size": Limits(1, 8, 2),
    "depth_steps": Limits(1, 50, 10),
    "edit_steps": Limits(1, 50, 16),
    "generate_steps": Limits(1, 50, 20),
    "strength": Limits(0.1, 1.0, 0.8, 0.05),
    "guidance": Limits(1.0, 5.0, 2.0, 0.1),
    "num_images": Limits(1, 4, 2),
    "seed": Limits(0, 2**31 - 1, 0),
}


def _setting(name: str, value, label: str | None = None) -> float:
    """``value`` checked against ``SETTINGS[name]`` (None = the default); PortraitError names the setting."""
    limits = SETTINGS[name]
    if value is None:
        return limits.default
    value = float(value)
    if not limits.minimum <= value <= limits.maximum:
        raise PortraitError(
            f"{label or name.replace('_', ' ')} must be between {limits.minimum:g} and {limits.maximum:g}, "
            f"got {value:g}"
        )
    return value


# --- files --------------------------------------------------------------------------------------------------


class OutputStore:
    """The app's output files: one new folder per call under a private temporary folder.

    Only the ``keep`` most recent folders are kept (the web server copies what it serves into its own
    cache, which it cleans itself); the whole folder is removed by :meth:`close` or when the process exits.
    """

    def __init__(self, keep: int = 64, parent: str | Path | None = None):
        self.root = Path(tempfile.mkdtemp(prefix="portrait-app-", dir=parent))
        self.keep = keep
        self._folders: deque[Path] = deque()
        self._lock = threading.Lock()
        self._count = 0
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.root, ignore_errors=True)

    def new_folder(self, name: str = "call") -> Path:
        with self._lock:
            self._count += 1
            folder = self.root / f"{self._count:06d}-{name}"
            folder.mkdir(parents=True)
            self._folders.append(folder)
            while len(self._folders) > self.keep:
                shutil.rmtree(self._folders.popleft(), ignore_errors=True)
        return folder

    def close(self) -> None:
        self._finalizer()


# --- per-user state and outputs -----------------------------------------------------------------------------


@dataclass
class PhotoState:
    """One user's prepared photo, kept in the session (``gr.State``) and reused until a new upload."""

    source: str  # the uploaded file's path (the web server gives every distinct upload its own path)
    photo: Photo


class DepthView(NamedTuple):
    """Depth-estimation outputs, in the page's order."""

    face: PIL.Image.Image  # the aligned face crop [R, R]
    depth: PIL.Image.Image  # colour depth of the crop (bright = near)
    uncertainty: PIL.Image.Image  # ensemble spread (bright = less certain)
    composite: PIL.Image.Image  # colour depth pasted over the full photo
    mesh: str  # GLB for the 3D viewer
    files: list[str]  # downloads: PNGs, 16-bit depth PNG, depth .npy, GLB / PLY / OBJ
    info: str  # Markdown notes for the user
    state: PhotoState


class EditView(NamedTuple):
    """Editing outputs, in the page's order (``mesh``/``files`` are None before the first edit)."""

    composite: PIL.Image.Image | None  # the edited face pasted back into the full photo
    face: PIL.Image.Image | None  # the edited face crop [R, R]
    target_depth: PIL.Image.Image | None  # colour target depth the edit followed
    mesh: str | None
    files: list[str] | None
    info: str
    state: PhotoState | None


@dataclass
class ResultFiles:
    """One generated portrait's files (kept in the session so the user can pick it for the 3D view)."""

    mesh: str
    files: list[str]


class GenerateView(NamedTuple):
    """Generation outputs, in the page's order."""

    gallery: list[tuple[PIL.Image.Image, str]]  # portrait 1, depth 1, portrait 2, depth 2, ...
    mesh: str  # the first portrait's GLB
    files: list[str]
    info: str
    results: list[ResultFiles]
    state: PhotoState


# --- handlers -----------------------------------------------------------------------------------------------


class StudioDemo:
    """Every handler of the app, over one shared (stateless) studio and one output store."""

    def __init__(self, studio: Studio, store: OutputStore | None = None):
        self.studio = studio
        self.store = store if store is not None else OutputStore()

    # --- per upload -----------------------------------------------------------------------------------------

    def photo(self, image: str | None, state: PhotoState | None = None) -> PhotoState:
        """The prepared photo for ``image``: ``state`` when it holds this upload, else found, aligned and
        meshed now. Raises PortraitError (no image, not an image, too large, no face)."""
        if image is None or str(image) == "":
            raise PortraitError("Upload a photo first (or pick one of the examples).")
        if state is not None and state.source == str(image):
            return state
        try:
            return PhotoState(source=str(image), photo=self.studio.prepare(image))
        except PortraitError as err:  # name the user's file, not the server's copy of it
            raise type(err)(str(err).replace(str(image), Path(image).name)) from err

    # --- depth estimation -----------------------------------------------------------------------------------

    def estimate_depth(
        self, image: str | None, ensemble_size: float | None = None, steps: float | None = None,
        seed: float | None = None, state: PhotoState | None = None, progress: Progress | None = None,
    ) -> DepthView:
        """Facial depth of the photo: crop, colour depth, uncertainty, composite, GLB and downloads."""
        ensemble_size = int(_setting("ensemble_size", ensemble_size, "ensemble size"))
        steps = int(_setting("depth_steps", steps, "steps"))
        seed = int(_setting("seed", seed))
        state = self.photo(image, state)
        result = self.studio.estimate_depth(state.photo, ensemble_size=ensemble_size, steps=steps, seed=seed,
                                            callback=progress)
        paths = result.save(self.store.new_folder("depth"))
        spread = result.uncertainty[result.mask] if result.mask.any() else np.zeros(1)
        info = _notes(state.photo, f"Depth of {int(result.mask.sum()):,} head and neck pixels from {ensemble_size} "
                      f"sample(s); median uncertainty {float(np.nanmedian(spread)):.3f} (relative units).")
        return DepthView(
            face=_display(result.image), depth=_colour_depth(result.depth), uncertainty=_heatmap(result.uncertainty),
            composite=_display(result.composite), mesh=str(paths["glb"]), files=_downloads(paths), info=info,
            state=state,
        )

    # --- depth-driven editing -------------------------------------------------------------------------------

    def load_for_edit(self, image: str | None, state: PhotoState | None = None) -> EditView:
        """On upload: prepare the photo, show it and its face's depth (no diffusion yet); empty when cleared."""
        if image is None:
            return EditView(None, None, None, None, None, "", state)
        state = self.photo(image, state)
        photo = state.photo
        target = self.studio.face_depth(photo)
        return EditView(
            composite=_display(photo.image), face=_display(photo.crop),
            target_depth=_colour_depth(target) if target is not None else None, mesh=None, files=None,
            info=_notes(photo, "Move a slider; on release the face is redrawn to the new pose or expression."),
            state=state,
        )

    def edit(
        self, image: str | None, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0, smile: float = 0.0,
        jaw_open: float = 0.0, brow_raise: float = 0.0, eye_close: float = 0.0, strength: float | None = None,
        steps: float | None = None, guidance: float | None = None, seed: float | None = None,
        state: PhotoState | None = None, progress: Progress | None = None,
    ) -> EditView:
        """The person re-rendered to the face mesh posed and deformed by the controls (``CONTROL_SPECS``)."""
        values = dict(yaw=yaw, pitch=pitch, roll=roll, smile=smile, jaw_open=jaw_open, brow_raise=brow_raise,
                      eye_close=eye_close)
        controls = FaceControls.from_dict({k: 0.0 if v is None else v for k, v in values.items()})
        for spec in CONTROL_SPECS:
            value = getattr(controls, spec.name)
            if not spec.minimum <= value <= spec.maximum:
                raise PortraitError(
                    f"{spec.label} must be between {spec.minimum:g} and {spec.maximum:g}, got {value:g}"
                )
        strength = _setting("strength", strength)
        steps = int(_setting("edit_steps", steps, "steps"))
        guidance = _setting("guidance", guidance)
        seed = int(_setting("seed", seed))
        state = self.photo(image, state)
        result = self.studio.edit(state.photo, controls=controls, strength=strength, steps=steps,
                                  guidance=guidance, seed=seed, callback=progress)
        paths = result.save(self.store.new_folder("edit"))
        changed = ", ".join(f"{s.label.lower()} {getattr(controls, s.name):g}{s.unit and ' ' + s.unit}"
                            for s in CONTROL_SPECS if getattr(controls, s.name) != s.default)
        return EditView(
            composite=_display(result.composite), face=_display(result.image),
            target_depth=_colour_depth(result.target_depth), mesh=str(paths["glb"]), files=_downloads(paths),
            info=_notes(state.photo, f"Re-rendered to: {changed or 'the pose and expression of the photo'}."),
            state=state,
        )

    def reset(self, image: str | None, state: PhotoState | None = None) -> tuple:
        """Every control back to its default, and the photo as uploaded: ``(*control values, *EditView)``."""
        return (*(spec.default for spec in CONTROL_SPECS), *self.load_for_edit(image, state))

    # --- joint generation -----------------------------------------------------------------------------------

    def generate(
        self, image: str | None, num_images: float | None = None, steps: float | None = None,
        guidance: float | None = None, seed: float | None = None, state: PhotoState | None = None,
        progress: Progress | None = None,
    ) -> GenerateView:
        """New portraits of the reference photo's person, each with its depth, mesh and downloads."""
        num_images = int(_setting("num_images", num_images, "number of portraits"))
        steps = int(_setting("generate_steps", steps, "steps"))
        guidance = _setting("guidance", guidance)
        seed = int(_setting("seed", seed))
        state = self.photo(image, state)
        results = self.studio.generate(state.photo, num_images=num_images, steps=steps, guidance=guidance,
                                       seed=seed, callback=progress)
        folder = self.store.new_folder("generate")
        gallery, saved = [], []
        for i, result in enumerate(results, start=1):
            paths = result.save(folder / f"portrait_{i}")
            gallery += [(_display(result.image), f"portrait {i}"), (_colour_depth(result.depth), f"depth {i}")]
            saved.append(ResultFiles(mesh=str(paths["glb"]), files=_downloads(paths)))
        info = _notes(state.photo, f"{len(results)} portrait(s), seed {seed}. Click one in the gallery to view "
                      "it in 3D and download its files.")
        return GenerateView(gallery=gallery, mesh=saved[0].mesh, files=saved[0].files, info=info, results=saved,
                            state=state)

    def select(self, results: list[ResultFiles] | None, index: int) -> tuple[str, list[str]]:
        """The mesh and downloads of the gallery item ``index`` (portraits and depths alternate)."""
        if not results:
            raise PortraitError("Generate some portraits first.")
        chosen = results[min(max(int(index), 0) // 2, len(results) - 1)]
        if not Path(chosen.mesh).is_file():
            raise PortraitError("These results have expired; generate them again.")
        return chosen.mesh, chosen.files


# --- start-up -----------------------------------------------------------------------------------------------


def load_studio(model: str | None = None) -> Studio:
    """The studio on ``model`` (folder or hub id; None = the embedded default), on the GPU when there is one."""
    import torch

    from .studio import Studio

    return Studio.load(model, device="cuda" if torch.cuda.is_available() else "cpu")


def warm_up(studio: Studio) -> None:
    """Run each job once on a tiny budget so the first user does not pay for lazy initialisation."""
    if EXAMPLES:
        photo = studio.prepare(EXAMPLES[0])
    else:
        photo = studio.prepare(PIL.Image.new("RGB", (64, 64), (128, 128, 128)), align=False)
    with tempfile.TemporaryDirectory(prefix="portrait-warm-up-") as folder:
        studio.estimate_depth(photo, ensemble_size=1, steps=1).save(Path(folder) / "depth")
        if photo.mesh is not None:
            studio.edit(photo, controls=FaceControls(yaw=10.0), steps=1).save(Path(folder) / "edit")
        studio.generate(photo, num_images=1, steps=1)


def describe_model(studio: Studio, model: str | None = None) -> str:
    """Markdown: what the loaded model is, and how to load another."""
    params = sum(p.numel() for p in studio.pipe.unet.parameters()) / 1e6
    size = f"{params:.0f} M-parameter denoiser, {studio.resolution}x{studio.resolution} pixels"
    if model is None:
        what = (f"**Model:** the embedded default, a small model ({size}) trained on a CPU on *synthetic* faces "
                "(renders of real face geometry). It shows the method; expect rough, low-resolution portraits.")
    else:
        what = f"**Model:** `{model}` ({size})."
    return (f"{what} For a bigger checkpoint run `python app.py --model <folder or hub id>` (or set "
            "`PORTRAIT_MODEL`). Depth is *relative* (larger = farther), without metric scale.")


# --- helpers ------------------------------------------------------------------------------------------------


def _notes(photo: Photo, text: str) -> str:
    return f"{photo.message}\n\n{text}" if photo.message else text


def _downloads(paths: dict[str, Path]) -> list[str]:
    """Every saved file, as download paths: images first, then depth arrays, then meshes."""
    order = ["composite", "rgb", "depth_png", "depth_color", "target_depth", "depth_npy", "uncertainty", "glb",
             "ply", "obj"]
    return [str(paths[k]) for k in sorted(paths, key=lambda k: order.index(k) if k in order else len(order))]


def _display(image: PIL.Image.Image) -> PIL.Image.Image:
    """The image scaled for the page: small crops enlarged, big photos reduced (they encode and load slowly)."""
    side = max(image.size)
    target = min(max(side, DISPLAY_SIDES[0]), DISPLAY_SIDES[1])
    if target == side:
        return image
    size = (round(image.width * target / side), round(image.height * target / side))
    return image.resize(size, PIL.Image.Resampling.LANCZOS)


def _colour_depth(depth: np.ndarray) -> PIL.Image.Image:
    from .depth import colorize_depth

    return _display(PIL.Image.fromarray(colorize_depth(depth)))


def _heatmap(values: np.ndarray) -> PIL.Image.Image:
    """Non-negative values (NaN = none) -> 'inferno' colours from 0 to their 99th percentile, white where NaN."""
    from matplotlib import colormaps

    values = np.asarray(values, dtype=np.float32)
    valid = np.isfinite(values)
    rgb = np.full(values.shape + (3,), 255, np.uint8)
    if valid.any():
        top = max(float(np.percentile(values[valid], 99)), 1e-12)
        colours = colormaps["inferno"](np.clip(values[valid] / top, 0.0, 1.0))[:, :3]
        rgb[valid] = (colours * 255).round().astype(np.uint8)
    return _display(PIL.Image.fromarray(rgb))

