"""Measuring edits of real photos offline: ``python -m portrait eval --edits PHOTO... --out DIR``.

Each photo (and with ``variants`` its mirrored, re-cropped and resized copies) is edited by
:meth:`portrait.studio.Studio.edit` at every setting, and the full edited photo (``result.composite``) is
measured against the original (:mod:`portrait.face.measure`):

- identity: dlib face-descriptor distance (< 0.6 = the same person);
- pose: yaw, pitch, roll re-measured from mediapipe's landmarks of both photos (3-D alignment);
- expression: mouth width change (%), eye opening ratio (edited / original), mouth opening change (eye
  distances);
- background: PSNR outside the head, the head being the union of the model's head masks of the original and of
  the edited photo and of the head as the edit saw it (a warp edit's ``extras["changed"]``: its head before and
  after; else ``result.mask``), each pasted into the photo by its alignment and grown by 2 % of the face crop's
  side;
- speed: wall time of the ``Studio.edit`` call alone.

Writes ``edits.md`` (a table per photo and the pass bars), ``edits.json`` (every number) and
``edits_contact_sheet.png`` (original | each setting, per photo). A measurement that cannot be made (no face on
the edit) is recorded as missing with a note.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps

from .errors import NoFaceError, PortraitError
from .face import FaceControls, detect_landmarks
from .face.measure import FaceMeasures, face_descriptor, head_rotation, psnr
from .imageio import load_image

DEFAULT_SETTINGS: dict[str, FaceControls] = {
    "zero controls": FaceControls(),
    "yaw +20": FaceControls(yaw=20.0),
    "yaw -20": FaceControls(yaw=-20.0),
    "pitch +10": FaceControls(pitch=10.0),
    "pitch -10": FaceControls(pitch=-10.0),
    "smile 0.8": FaceControls(smile=0.8),
    "eye close 1.0": FaceControls(eye_close=1.0),
    "jaw open 0.6": FaceControls(jaw_open=0.6),
}
HEAD_MARGIN = 0.02  # the head region grows by this fraction of the face crop's side
MASK_STEPS = 10  # denoising steps of the depth estimate that gives the head mask
TILE = 160  # contact sheet tile side
COLUMNS = {  # row key -> (table header, format)
    "identity": ("identity", "{:.3f}"), "yaw": ("yaw", "{:+.1f}"), "pitch": ("pitch", "{:+.1f}"),
    "roll": ("roll", "{:+.1f}"), "mouth_width_pct": ("mouth width %", "{:+.1f}"),
    "eye_opening_ratio": ("eye opening ratio", "{:.2f}"), "mouth_opening": ("mouth opening", "{:+.3f}"),
    "psnr_outside_head": ("PSNR outside head (dB)", "{:.1f}"), "seconds": ("seconds", "{:.2f}"),
}


def _le(value, limit) -> bool:
    return value is not None and value <= limit  # None (not measured) and NaN fail


def _ge(value, limit) -> bool:
    return value is not None and value >= limit


def _near(value, target, tolerance) -> bool:
    return value is not None and abs(value - target) <= tolerance


# the pass bars: (settings they need, test over {setting: row})
BARS = {
    "zero controls: identity <= 0.1, PSNR outside head >= 45 dB": (
        ("zero controls",),
        lambda r: _le(r["zero controls"]["identity"], 0.1) and _ge(r["zero controls"]["psnr_outside_head"], 45.0)),
    "yaw +-20: re-measured 20 +- 4 deg in opposite directions, identity <= 0.45, PSNR outside head >= 45 dB": (
        ("yaw +20", "yaw -20"),
        lambda r: all(_near(r[s]["yaw"], target, 4.0) and _le(r[s]["identity"], 0.45)
                      and _ge(r[s]["psnr_outside_head"], 45.0)
                      for s, target in (("yaw +20", 20.0), ("yaw -20", -20.0)))),
    "pitch +-10: re-measured 10 +- 3 deg in opposite directions": (
        ("pitch +10", "pitch -10"),
        lambda r: all(_near(r[s]["pitch"], target, 3.0) for s, target in (("pitch +10", 10.0), ("pitch -10", -10.0)))),
    "smile 0.8 widens the mouth >= 8 %": (("smile 0.8",), lambda r: _ge(r["smile 0.8"]["mouth_width_pct"], 8.0)),
    "eye close 1.0 at least halves the eye opening": (
        ("eye close 1.0",), lambda r: _le(r["eye close 1.0"]["eye_opening_ratio"], 0.5)),
    "jaw open 0.6 opens the mouth >= 0.05 IOD": (
        ("jaw open 0.6",), lambda r: _ge(r["jaw open 0.6"]["mouth_opening"], 0.05)),
    "identity <= 0.45 for every setting": ((), lambda r: all(_le(row["identity"], 0.45) for row in r.values())),
}


# --- inputs -----------------------------------------------------------------------------------------------


def photo_variants(image: PIL.Image.Image) -> dict[str, PIL.Image.Image]:
    """Copies of a photo the measures must hold on too: mirrored, re-cropped (tighter, the face off-centre),
    resized 0.5x and 2x."""
    x0, y0, x1, y1 = detect_landmarks(image).bbox
    s = max(x1 - x0, y1 - y0)
    box = (max(0, round(x0 - 0.25 * s)), max(0, round(y0 - 0.5 * s)),
           min(image.width, round(x1 + 0.9 * s)), min(image.height, round(y1 + 0.6 * s)))
    return {
        "mirrored": image.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT),
        "re-cropped": image.crop(box),
        **{f"{k:g}x": image.resize((round(image.width * k), round(image.height * k)), PIL.Image.Resampling.LANCZOS)
           for k in (0.5, 2.0)},
    }


def _photo_landmarks(photo) -> np.ndarray:
    """The prepared photo's ``[478, 3]`` landmarks in photo pixels (z in the same scale)."""
    face = photo.face
    return np.column_stack([face.to_photo(face.landmarks[:, :2]), face.landmarks[:, 2] * face.scale])


def head_region(studio, photo) -> np.ndarray:
    """``[H, W]`` bool: the model's head mask of a prepared photo, pasted into the photo by its alignment and
    grown by ``HEAD_MARGIN`` of the face crop's side."""
    return crop_mask_in_photo(photo, studio.estimate_depth(photo, ensemble_size=1, steps=MASK_STEPS).mask)


def crop_mask_in_photo(photo, mask: np.ndarray) -> np.ndarray:
    """``[H, W]`` bool: a mask of the photo's face crop (any square size) pasted into the photo by its alignment
    and grown by ``HEAD_MARGIN`` of the face crop's side."""
    from scipy.ndimage import distance_transform_edt

    face = photo.face
    white = PIL.Image.new("RGB", mask.shape[::-1], (255, 255, 255))
    pasted = face.paste_back(PIL.Image.new("RGB", photo.image.size), white, mask=mask, feather=0.0)
    inside = np.asarray(pasted)[..., 0] >= 128
    return distance_transform_edt(~inside) <= HEAD_MARGIN * face.scale * face.size


# --- one photo --------------------------------------------------------------------------------------------


def _measure(studio, original, reference: dict, photo, result) -> dict:
    """The measures of one edit (``result`` of the prepared ``photo``) against the original's (``reference``);
    missing ones are None."""
    row: dict = dict.fromkeys(COLUMNS)
    notes = []
    composite = result.composite
    try:
        edited = studio.prepare(composite)
    except NoFaceError:
        edited, notes = None, ["no face found on the edit"]
    # + the head as the edit itself saw it, before and after (a moved head's outline is not the model's mask)
    edited_head = np.asarray(result.extras["changed"]) > 0 if "changed" in result.extras else result.mask
    region = reference["head"] | crop_mask_in_photo(photo, edited_head)
    if edited is not None:
        landmarks = _photo_landmarks(edited)
        region |= head_region(studio, edited)
        row["yaw"], row["pitch"], row["roll"] = head_rotation(reference["landmarks"], landmarks)
        before, after = reference["measures"], FaceMeasures.of(landmarks)
        row["mouth_width_pct"] = 100.0 * (after.mouth_width / before.mouth_width - 1.0)
        row["eye_opening_ratio"] = after.eye_opening / max(before.eye_opening, 1e-9)
        row["mouth_opening"] = after.mouth_opening - before.mouth_opening
    else:
        notes.append("head mask of the original only")
    try:
        descriptor = face_descriptor(composite, landmarks if edited is not None else None)
        row["identity"] = float(np.linalg.norm(descriptor - reference["descriptor"]))
    except NoFaceError:
        notes.append("no face for the identity descriptor")
    row["psnr_outside_head"] = psnr(original, composite, ~region)
    row["note"] = "; ".join(notes) or None
    return row


def evaluate_photo(studio, name: str, image: PIL.Image.Image, settings: dict[str, FaceControls],
                   edit_kwargs: dict) -> tuple[dict, list[PIL.Image.Image]]:
    """Edit one photo at every setting and measure each result: ``(entry, [original, composites...])``."""
    entry: dict = {"name": name, "size": list(image.size), "error": None, "rows": []}
    try:
        photo = studio.prepare(image)
    except NoFaceError as err:
        entry["error"] = str(err)
        return entry, []
    landmarks = _photo_landmarks(photo)
    reference = {"landmarks": landmarks, "measures": FaceMeasures.of(landmarks), "head": head_region(studio, photo),
                 "descriptor": face_descriptor(image, landmarks)}
    tiles = [image]
    for setting, controls in settings.items():
        t0 = time.perf_counter()
        try:
            result = studio.edit(photo, controls=controls, **edit_kwargs)
        except PortraitError as err:
            entry["rows"].append({"setting": setting, **dict.fromkeys(COLUMNS), "note": f"edit failed: {err}"})
            tiles.append(PIL.Image.new("RGB", image.size, (128, 128, 128)))
            continue
        seconds = time.perf_counter() - t0
        entry["rows"].append({"setting": setting, **_measure(studio, image, reference, photo, result),
                              "seconds": seconds})
        tiles.append(result.composite)
    rows = {row["setting"]: row for row in entry["rows"]}
    entry["bars"] = {bar: ("PASS" if test(rows) else "FAIL") if all(s in rows for s in needs) else None
                     for bar, (needs, test) in BARS.items()}
    return entry, tiles


# --- the run ----------------------------------------------------------------------------------------------


def evaluate_edits(studio, photos, settings: dict[str, FaceControls] | None = None,
                   out_dir: str | Path = "runs/eval_edits", method: str | None = None, *, variants: bool = False,
                   label: str | None = None, **edit_kwargs) -> dict:
    """Edit each photo (paths or images) at each setting (``{name: FaceControls}``, default
    :data:`DEFAULT_SETTINGS`) with ``studio.edit(photo, controls=..., **edit_kwargs)`` (``method`` passed on
    only when given), measure every result, write ``edits.md``, ``edits.json`` and
    ``edits_contact_sheet.png`` into ``out_dir``; returns the summary written to ``edits.json``.

    ``variants``: also the mirrored, re-cropped and resized copies of each photo (:func:`photo_variants`).
    ``label``: the model's name in the report.
    """
    from .bench import hardware
    from .data.folder import image_grid

    settings = dict(DEFAULT_SETTINGS if settings is None else settings)
    if method is not None:
        edit_kwargs["method"] = method
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    inputs = []
    for k, source in enumerate(photos):
        image = load_image(source)
        name = Path(source).name if isinstance(source, (str, Path)) else f"photo {k + 1}"
        inputs.append((name, image))
        if variants:
            try:
                inputs += [(f"{name} ({v})", img) for v, img in photo_variants(image).items()]
            except NoFaceError:
                pass  # the photo itself records that it has no face
    entries, sheet = [], []
    for name, image in inputs:
        entry, tiles = evaluate_photo(studio, name, image, settings, edit_kwargs)
        entries.append(entry)
        if tiles:
            sheet.append([np.asarray(PIL.ImageOps.pad(t, (TILE, TILE), color=(255, 255, 255))) for t in tiles])

    bars = {bar: _overall([e["bars"].get(bar) for e in entries if not e["error"]]) for bar in BARS}
    summary = {
        "model": label or "default", "method": method, "hardware": hardware(),
        "edit_kwargs": {k: v for k, v in edit_kwargs.items() if k != "method"},
        "settings": {name: c.to_dict() for name, c in settings.items()}, "photos": entries, "bars": bars,
    }
    (out / "edits.json").write_text(json.dumps(_jsonable(summary), indent=1))
    (out / "edits.md").write_text(markdown_report(summary))
    if sheet:
        image_grid(sheet).save(out / "edits_contact_sheet.png")
    return summary


def _overall(results: list[str | None]) -> str | None:
    results = [r for r in results if r is not None]
    return ("PASS" if all(r == "PASS" for r in results) else "FAIL") if results else None


def _jsonable(value):
    """Non-finite floats as strings ("inf"), so the file is strict JSON."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def markdown_report(summary: dict) -> str:
    """``edits.md``: the pass bars, then a table per photo."""
    method = summary["method"] or "Studio.edit's default"
    names = [e["name"] for e in summary["photos"]]
    lines = [
        f"# Edits of real photos: {summary['model']}, method {method}", "",
        f"Edit options {summary['edit_kwargs'] or '(defaults)'}; {summary['hardware']}. Measured on the full edited "
        "photo against the original: identity = dlib face-descriptor distance (< 0.6 same person); yaw / pitch / "
        "roll = head rotation re-measured from mediapipe landmarks (degrees, the controls' signs); mouth width % "
        "change; eye opening edited / original; mouth opening change in eye distances; PSNR outside the head "
        f"(union of the model's head masks of both photos and the head as the edit saw it, grown by {HEAD_MARGIN:.0%} "
        "of the crop side); seconds = "
        "the edit call alone.", "",
        "## Pass bars", "",
        "| bar | " + " | ".join(names) + " | all |", "|---" * (len(names) + 2) + "|",
    ]
    for bar in BARS:
        cells = [(e["bars"].get(bar) if not e["error"] else None) or "-" for e in summary["photos"]]
        lines.append(f"| {bar} | " + " | ".join(cells) + f" | {summary['bars'][bar] or '-'} |")
    for entry in summary["photos"]:
        lines += ["", f"## {entry['name']} ({entry['size'][0]}x{entry['size'][1]})", ""]
        if entry["error"]:
            lines.append(f"Not measured: {entry['error']}")
            continue
        lines += ["| setting | " + " | ".join(h for h, _ in COLUMNS.values()) + " | note |",
                  "|---" * (len(COLUMNS) + 2) + "|"]
        for row in entry["rows"]:
            cells = ["-" if row[k] is None else fmt.format(row[k]) for k, (_, fmt) in COLUMNS.items()]
            lines.append(f"| {row['setting']} | " + " | ".join(cells) + f" | {row['note'] or ''} |")
    return "\n".join(lines) + "\n"


def cmd_edits(args) -> None:
    """``python -m portrait eval --edits PHOTO... --out DIR [--model M] [--variants] [--method M] [--seed S]``."""
    from .studio import Studio

    evaluate_edits(Studio.load(args.model), args.edits, out_dir=args.out, method=args.method,
                   variants=args.variants, label=args.model, seed=args.seed)
    print((Path(args.out) / "edits.md").read_text())
