"""Evaluation: depth metrics, baselines, and ``python -m portrait eval`` (markdown table + contact sheet).

Protocol (written down so anyone can rerun it; ``python -m portrait eval --model M --data D --out O``):

- Data: the ``test`` split of a data folder (for the synthetic set: identities built on source faces never
  used in training; for the real-texture set, :mod:`portrait.data.real_texture`, real photos of those faces
  re-rendered at new poses with their own pixels). Images, depth and masks are taken at the model's working
  resolution ``R``.
- Depth estimation. The ground truth is normalised to [0, 1] over its mask (for the synthetic set: face,
  hair, ears and neck). Each prediction is aligned to it by least-squares scale and shift inside the
  evaluated region (Marigold's protocol); RMSE and MAE are then in units of that depth range. AbsRel and
  delta < 1.25 are computed after aligning the prediction to the ground truth's camera depth, with the face
  at the crop camera's reference distance (``portrait.mesh.camera_distance()``, 3.8 crop widths at 15
  degrees; at that distance a face spans only a few percent of its depth, so these two are near 0 and 1 for
  every method and mostly tell scale errors).
- Masks. The model finds the head itself, as in the app: its depth's own mask made clean with the person
  segmentation (:func:`portrait.face.segmentation.head_silhouette`, the app's ``Photo.head_mask``), the depth
  continued over what that adds (``portrait.depth.on_mask``). Every model row is scored where both its mask
  and the ground truth's are (``coverage``: the share of the ground-truth mask it covers), and the mask's
  ``IoU`` with the ground truth is reported beside it. One row, marked ``[given mask]``, hands the model the
  ground-truth mask instead (the app's method; what earlier versions of this protocol reported).
- Methods, in the same run: the model from pure noise; the model started from the face-mesh depth noised to
  ``prior_strength`` (SDEdit), as it is and averaged with the mesh where the mesh exists (``+ blend W``:
  ``portrait.depth.blend_depth`` with weight ``W``, as the pipeline does by default); the mediapipe face-mesh depth (landmarks of the test image, rendered; defined
  only inside the mesh, its ``coverage`` of the ground-truth mask is reported, and the model is also scored
  on the mesh's region for a like-for-like comparison, and outside it, where the mesh says nothing); a
  constant mean-face depth (the mean normalised depth of the *training* split, per pixel; of another folder's
  with ``--mean-face-data``, for a set without one).
- Settings: the app's prior strength and blend weight are chosen with ``--sweep-prior`` (every pair ranked by
  RMSE on the model's own mask) on a split apart from the reported one: the real-texture set's ``tune`` split,
  whose source faces are not in its ``test`` split.
- Joint generation: the depth generated with the RGB vs the depth estimated back from the generated RGB.
- Hole filling (the editing engine's use of the model): on held-out samples, holes of the kind a moved head
  uncovers (:func:`portrait.training.holes.random_holes` on the sample's outline) are painted as the studio
  paints them (:func:`portrait.studio.paint_holes`: RGB known outside the holes, depth known everywhere, from
  the Telea pre-fill at ``FILL_STRENGTH``, ``FILL_STEPS`` steps), with another view of the person as the
  reference; RGB RMSE (in [0, 1]) and PSNR inside the holes against the sample, beside the pre-fill alone.
  Its identities (``hole_samples``) are not bounded by ``limit``: ``--limit 1 --hole-samples 80`` measures
  hole filling alone on every held-out identity; ``--hole-masks K`` draws K masks per sample (a small split,
  such as the real-texture set's ``examples``). Each fill is also scored apart on the hole pixels of the head
  and of the background behind it, and on the background beyond the head's outline by the studio's
  ``OUTLINE_MARGIN`` (on real pixels the first pixels outside a head mask are often hair it missed); the
  studio keeps the model's painting on the head only and continues the background behind it from the
  background alone (``BACKGROUND_FILL``, ``STUDIO_FILL``);
  ``--fill-strength S`` adds the painting from another strength than the studio's ``FILL_STRENGTH``.
- Editing: the target depth (another view of the person) vs the depth estimated from the edited RGB.

Edits of real photos (identity, re-measured pose, expression, background; no data folder) are measured by
``python -m portrait eval --edits PHOTO... --out O``: see :mod:`portrait.edit_eval`.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PROFILE_SIZE = 128  # profiles.png: the first samples' photo, true and estimated depth turned side on
# the hole check's row of the studio's way (Studio.fill_holes): the model where the depth is known, Telea behind
BACKGROUND_FILL = "pre-fill, background continued from the background alone"
STUDIO_FILL = "model on the head, background continued from the background (the studio's)"

SWEEP_GRID = (0.5, 0.7, 0.9)  # prior strengths and blend weights that --sweep-prior tries by default

# --- metrics (numpy only) ---------------------------------------------------------------------------------


def normalise(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Depth -> [0, 1] over ``mask`` (min to max), NaN outside."""
    from .depth import unit_depth

    m = mask & np.isfinite(depth)
    return np.where(m, unit_depth(depth, m), np.nan).astype(np.float32)


@dataclass
class DepthScores:
    rmse: float  # in face-depth-range units, after scale / shift alignment
    mae: float
    abs_rel: float  # at the stated camera distance
    delta1: float
    coverage: float  # fraction of the ground-truth mask where the prediction is defined
    iou: float | None = None  # of the prediction's own mask with the ground truth's (None: a given mask, or none)


def depth_scores(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, region: np.ndarray | None = None,
                 camera_distance: float | None = None, scored: np.ndarray | None = None,
                 own_mask: bool = False) -> DepthScores | None:
    """Scores of a relative depth ``pred`` against the ground truth ``gt`` (any units) inside ``mask``.

    ``own_mask``: ``pred`` is defined on a head mask of its own (not the ground truth's); its IoU with ``mask``
    is reported.

    ``region`` further restricts the aligned and scored pixels (e.g. where the face mesh exists).
    ``scored`` restricts only the scored pixels: the prediction is aligned over the whole mask, then scored
    there (e.g. outside the face mesh). ``None`` if fewer than 16 pixels can be scored.
    """
    from .depth import align_scale_shift
    from .mesh import camera_distance as default_distance

    mask = mask & np.isfinite(gt)
    valid = mask & np.isfinite(pred)
    coverage = float(valid.sum() / max(mask.sum(), 1))
    iou = float(valid.sum() / max((mask | np.isfinite(pred)).sum(), 1)) if own_mask else None
    if region is not None:
        valid &= region
    if valid.sum() < 16:
        return None
    gt01 = normalise(gt, mask)
    s, b = align_scale_shift(pred, gt01, valid)
    if scored is not None:
        valid &= scored
        if valid.sum() < 16:
            return None
    err = (s * pred[valid] + b) - gt01[valid]
    # metric-like: the ground truth placed with its near point at the camera distance, in crop widths
    distance = default_distance() if camera_distance is None else camera_distance
    g = gt[valid].astype(np.float64)
    g_abs = distance + (g - g.min())
    s2, b2 = align_scale_shift(pred[valid], g_abs.astype(np.float32))
    p_abs = np.maximum(s2 * pred[valid] + b2, 1e-6)
    ratio = np.maximum(p_abs / g_abs, g_abs / p_abs)
    return DepthScores(
        rmse=float(np.sqrt(np.mean(err**2))), mae=float(np.mean(np.abs(err))),
        abs_rel=float(np.mean(np.abs(p_abs - g_abs) / g_abs)), delta1=float(np.mean(ratio < 1.25)),
        coverage=coverage, iou=iou,
    )


def mean_face_depth(depths: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``[R, R]`` per-pixel mean of the normalised training depths; pixels no sample covers get the far value."""
    acc = np.zeros(depths.shape[1:], np.float64)
    count = np.zeros(depths.shape[1:], np.float64)
    for d, m in zip(depths, masks):
        n = normalise(d, m)
        ok = np.isfinite(n)
        acc[ok] += n[ok]
        count[ok] += 1
    mean = np.where(count > 0, acc / np.maximum(count, 1), np.nan)
    mean[~np.isfinite(mean)] = np.nanmax(mean) if np.isfinite(mean).any() else 1.0
    return mean.astype(np.float32)


def find_landmarks(image):
    """The mediapipe landmarks ``[478, 3]`` of a square face crop ``image`` (its pixels), or None."""
    from .errors import NoFaceError
    from .face import detect_landmarks

    try:
        return detect_landmarks(image).points
    except NoFaceError:
        return None


def mesh_depth(image, size: int, points: np.ndarray | None = None) -> np.ndarray | None:
    """The mediapipe face-mesh depth of a square face crop ``image`` at ``size`` (NaN off the mesh), or None.
    ``points``: its landmarks, if already found."""
    from .face import face_mesh_from_landmarks, render_depth

    points = find_landmarks(image) if points is None else points
    if points is None:
        return None
    return render_depth(face_mesh_from_landmarks(points, image.size[0]), size).depth


def head_mask(image, model_mask: np.ndarray, points: np.ndarray | None, sure: np.ndarray | None) -> np.ndarray:
    """The app's head silhouette (``Photo.head_mask``) for a square crop ``image``: the model's own ``mask``
    ``[r, r]`` made clean with the person segmentation, hair above the chin of the landmarks ``points`` added."""
    from .face import REGIONS
    from .face.segmentation import head_silhouette, segment_person

    r = model_mask.shape[0]
    scale = image.size[0] / r
    person = segment_person(image, np.array([[scale, 0.0, 0.0], [0.0, scale, 0.0]]), r)
    chin = float(points[list(REGIONS["face_oval"]), 1].max()) / scale if points is not None else None
    return head_silhouette(model_mask, person, chin, sure)


# --- the evaluation run -----------------------------------------------------------------------------------


@dataclass
class Accumulator:
    """Per-method lists of scores, averaged at the end."""

    scores: dict[str, list[DepthScores]] = field(default_factory=dict)

    def add(self, name: str, s: DepthScores | None) -> None:
        self.scores.setdefault(name, [])
        if s is not None:
            self.scores[name].append(s)

    def summary(self) -> dict[str, dict]:
        out = {}
        for name, items in self.scores.items():
            if not items:
                out[name] = {"n": 0}
                continue
            out[name] = {}
            for k in DepthScores.__dataclass_fields__:
                values = [getattr(s, k) for s in items if getattr(s, k) is not None]
                out[name][k] = float(np.mean(values)) if values else None
            out[name]["n"] = len(items)
        return out


def evaluate(model: str | None, data: str | Path, out: str | Path, split: str = "test", limit: int | None = None,
             steps: int = 20, ensemble: int = 1, prior_strengths: tuple[float, ...] = (0.5,),
             prior_weights: tuple[float, ...] = (0.5,), joint_samples: int = 8, seed: int = 0,
             camera_distance: float | None = None, timing_steps: int = 20, offset: int = 0,
             hole_samples: int = 16, mean_face_data: str | Path | None = None, sweep: bool = False,
             hole_masks: int = 1, fill_strengths: tuple[float, ...] = ()) -> dict:
    """Run the protocol of this module; write ``eval.md``, ``eval.json``, ``contact_sheet.png`` and ``profiles.png``
    (the first samples side on: photo, true depth, the last prior setting's estimate, shaded) into ``out``.

    ``mean_face_data``: the folder whose ``train`` split gives the mean face (default ``data``; a folder without
    one, e.g. the real-texture set, needs the synthetic training set here). ``sweep``: also rank every prior
    strength x blend weight evaluated (:func:`prior_sweep`), to choose the app's on a split apart from the
    reported one."""
    import PIL.Image
    import torch

    from .data.folder import image_grid, load_folder, prepare
    from .depth import blend_depth, code_to_depth, colorize_depth, complete_depth, depth_to_code, on_mask
    from .errors import PortraitError
    from .pipelines.loading import load_pipeline
    from .turntable import profile

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    # 1. Model (timed: loading and one generation at the working resolution)
    t0 = time.perf_counter()
    pipe = load_pipeline(model)
    load_seconds = time.perf_counter() - t0
    r = pipe.resolution

    # 2. Data at the working resolution: ground truth as camera depth and its mask
    def at_res(samples):
        items = []
        for s in samples:
            rgb, code, mask = prepare(s, r)
            if s.depth.shape[0] == r:
                depth = s.depth
            else:  # resampled ground truth: the normalised code of the resized sample
                depth = code_to_depth(code, mask)[0]
            items.append((s.record, PIL.Image.fromarray(rgb), depth.astype(np.float32), mask))
        return items

    test_samples, skipped = load_folder(data, split)
    if not test_samples:
        raise PortraitError(f"no usable {split!r} sample in {str(data)!r}")
    if mean_face_data is not None:
        train_samples, _ = load_folder(mean_face_data, "train")
        if not train_samples:
            raise PortraitError(f"no usable 'train' sample in {str(mean_face_data)!r} for the mean face")
    else:
        train_samples, _ = load_folder(data, "train")
    every = at_res(test_samples)[offset:]  # the hole-filling check draws from all of it (--hole-samples)
    test = every[:limit] if limit else every
    if not test:
        raise PortraitError(f"--offset {offset} leaves no {split!r} sample in {str(data)!r}")
    train = at_res(train_samples) if train_samples else test
    mean_face_from = (f"the train split of {mean_face_data or data} ({len(train)} samples)" if train_samples
                      else "the evaluated samples themselves (the data has no train split)")
    mean_face = mean_face_depth(np.stack([t[2] for t in train]), np.stack([t[3] for t in train]))

    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    pipe.generate(test[0][1], num_inference_steps=timing_steps, generator=gen)
    generate_seconds = time.perf_counter() - t0

    # 3. Depth estimation: model (noise / mesh prior), face mesh, mean face
    acc = Accumulator()
    rows, profiles, no_mesh = [], [], 0
    for k, (_record, image, gt, mask) in enumerate(test):
        points = find_landmarks(image)
        mesh = mesh_depth(image, r, points)
        region = np.isfinite(mesh) if mesh is not None else None
        if mesh is None:
            no_mesh += 1
        acc.add("face mesh (mediapipe)", depth_scores(mesh, gt, mask, camera_distance=camera_distance)
                if mesh is not None else None)
        acc.add("mean face", depth_scores(mean_face, gt, mask, camera_distance=camera_distance))
        outside = mask & ~region if region is not None else None
        acc.add("mean face [outside the mesh]", depth_scores(mean_face, gt, mask, camera_distance=camera_distance,
                                                             scored=outside) if outside is not None else None)
        # the two baselines together: the mesh where it exists, continued by the mean face (no model)
        both = complete_depth(mesh, mean_face, mask) if mesh is not None else None
        acc.add("face mesh + mean face", depth_scores(both, gt, mask, camera_distance=camera_distance)
                if both is not None else None)
        acc.add("face mesh + mean face [outside the mesh]", depth_scores(both, gt, mask, camera_distance=camera_distance,
                                                                         scored=outside) if both is not None else None)
        if pipe.vae is not None:  # the ground truth through the VAE alone: the floor of any latent-mode estimate
            with torch.no_grad():
                code = torch.from_numpy(depth_to_code(gt, mask))[None, None].to(pipe.device, pipe.unet.dtype)
                z = pipe.model.encode_depth(code)
                floor = code_to_depth(pipe.model.decode_depth(z)[0, 0].float().cpu().numpy(), mask)[0]
            acc.add("VAE round trip of the ground truth", depth_scores(floor, gt, mask, camera_distance=camera_distance))
            acc.add("VAE round trip of the ground truth [mesh region]", depth_scores(floor, gt, mask, region, camera_distance)
                    if region is not None else None)
        def estimate(given: np.ndarray | None, strength: float | None, image=image, mesh=mesh, points=points,
                     region=region, k=k) -> np.ndarray:
            """One depth estimate (unblended), on the ``given`` mask or on the model's own head mask."""
            out = pipe.estimate_depth(
                image, ensemble_size=ensemble, num_inference_steps=steps, mask=given,
                depth_prior=mesh if strength is not None else None, prior_strength=strength or 1.0, prior_weight=0.0,
                generator=torch.Generator().manual_seed(seed + k))
            if given is not None:
                return out.depth[0]
            return on_mask(out.depth[0], head_mask(image, out.mask[0], points, region))

        # no mesh: the prior cannot be used, the model starts from noise (and blending leaves it as it is)
        predictions = {"model": estimate(None, None)}
        for s in prior_strengths:
            base = predictions["model"] if mesh is None else estimate(None, s)
            predictions[f"model + mesh prior {s:g}"] = base
            for w in prior_weights:  # sampled once unblended; each weight is the pipeline's own blend of it
                predictions[f"model + mesh prior {s:g} + blend {w:g}"] = blend_depth(base, _on(mesh, base), w)
        s, w = prior_strengths[-1], prior_weights[-1]
        base = predictions["model"] if mesh is None else estimate(mask, s)  # the ground-truth mask handed over
        given_name = f"model + mesh prior {s:g} + blend {w:g} [given mask]"
        given = blend_depth(base, _on(mesh, base), w)
        for name, p in (*predictions.items(), (given_name, given)):
            own = name != given_name
            acc.add(name, depth_scores(p, gt, mask, camera_distance=camera_distance, own_mask=own))
            acc.add(f"{name} [mesh region]", depth_scores(p, gt, mask, region, camera_distance)
                    if region is not None else None)
            acc.add(f"{name} [outside the mesh]", depth_scores(p, gt, mask, camera_distance=camera_distance, scored=outside)
                    if outside is not None else None)
        if k < 4:  # the nose's height, side on: the truth and the last setting's estimate, shaded
            app = predictions[f"model + mesh prior {s:g} + blend {w:g}"]
            profiles.append([np.asarray(image.resize((PROFILE_SIZE,) * 2)), profile(gt, mask, size=PROFILE_SIZE),
                             profile(app, size=PROFILE_SIZE)])
        if k < 6:
            tiles = [np.asarray(image), colorize_depth(np.where(mask, gt, np.nan))]
            tiles += [colorize_depth(p) for p in predictions.values()]
            tiles += [colorize_depth(mesh if mesh is not None else np.full(gt.shape, np.nan)),
                      colorize_depth(np.where(mask, mean_face, np.nan))]
            rows.append(tiles)
    columns = ["image", "ground truth", *predictions.keys(), "face mesh", "mean face"]

    # 4. Joint generation and editing: agreement with depth estimated back from the RGB
    by_identity: dict[str, list] = {}
    for item in test:
        by_identity.setdefault(item[0].identity, []).append(item)
    pairs = [v for v in by_identity.values() if len(v) >= 2][:joint_samples]
    joint, edit = Accumulator(), Accumulator()
    gen_rows = []
    for k, views in enumerate(pairs):
        reference = views[0][1]
        g = torch.Generator().manual_seed(seed + 1000 + k)
        result = pipe.generate(reference, num_inference_steps=steps, generator=g)
        img, depth, m = result.images[0], result.depth[0], result.mask[0]
        if m.sum() >= 16:
            back = pipe.estimate_depth(img, ensemble_size=ensemble, num_inference_steps=steps, mask=m,
                                       generator=torch.Generator().manual_seed(seed + k))
            joint.add("generated depth vs depth estimated from generated RGB",
                      depth_scores(back.depth[0], depth, m, camera_distance=camera_distance))
        else:
            joint.add("generated depth vs depth estimated from generated RGB", None)
        _, _, target, tmask = views[1]
        edited = pipe.edit(reference, target, mask=tmask, num_inference_steps=steps,
                           generator=torch.Generator().manual_seed(seed + 2000 + k))
        back = pipe.estimate_depth(edited.images[0], ensemble_size=ensemble, num_inference_steps=steps, mask=tmask,
                                   generator=torch.Generator().manual_seed(seed + k))
        edit.add("target depth vs depth estimated from edited RGB",
                 depth_scores(back.depth[0], target, tmask, camera_distance=camera_distance))
        if k < 4:
            gen_rows.append([np.asarray(reference), np.asarray(img), colorize_depth(depth),
                             colorize_depth(np.where(tmask, target, np.nan)), np.asarray(edited.images[0]),
                             colorize_depth(back.depth[0])])

    # 5. Hole filling: holes on the head's outline painted as the studio paints them, against the sample's pixels
    from .compositing import continue_from, prefill
    from .scene import OUTLINE_MARGIN
    from .studio import FILL_STEPS, dilate, paint_holes
    from .training.holes import random_holes

    holes_acc: dict[str, list[float]] = {}
    hole_rows = []
    every_identity: dict[str, list] = {}
    for item in every:
        every_identity.setdefault(item[0].identity, []).append(item)
    with_reference = [v for v in every_identity.values() if len(v) >= 2][:hole_samples]
    for k, views in enumerate(with_reference):
        _, truth, target, tmask = views[1]
        truth, depth = np.asarray(truth), np.where(tmask, target, np.nan)
        outline = dilate(tmask, max(1, round(r * OUTLINE_MARGIN)))  # the head as the studio's backdrop leaves it out
        for j in range(hole_masks):  # mask 0 of sample k is the one a single-mask run draws
            holes = random_holes(r, np.random.default_rng([seed, k] if j == 0 else [seed, k, j]), head=tmask)
            start = prefill(truth, holes, radius_px=r / 128)
            everywhere = paint_holes(pipe, views[0][1], start, holes, depth, seed=seed + k + j)
            # behind the head as the studio fills it: from the background away from the head's outline alone
            behind = continue_from(start, holes & ~tmask, ~(holes | outline))
            fills = {
                "pre-fill alone (OpenCV Telea)": start,
                BACKGROUND_FILL: behind,
                "model in every hole": everywhere,
                STUDIO_FILL: np.where(tmask[..., None], everywhere, behind),
            }
            for strength in fill_strengths:
                fills[f"model from strength {strength:g}"] = paint_holes(pipe, views[0][1], start, holes, depth,
                                                                         seed=seed + k + j, strength=strength)
            parts = (("", holes), (" [head]", holes & tmask), (" [background]", holes & ~tmask),
                     (" [background beyond the outline]", holes & ~outline))
            for name, fill in fills.items():
                for part, where in parts:
                    if where.any():
                        err = (fill[where].astype(np.float64) - truth[where]) / 255.0
                        holes_acc.setdefault(name + part, []).append(float(np.sqrt(np.mean(err**2))))
            if k < 4 and j == 0:
                shown = truth.copy()
                shown[holes] = (0.5 * shown[holes] + [127, 0, 127]).astype(np.uint8)
                hole_rows.append([truth, shown, start, everywhere])
    holes_summary = {name: {"rmse": float(np.mean(v)), "psnr": float(np.mean([20 * math.log10(1 / max(e, 1e-6)) for e in v])),
                            "n": len(v)} for name, v in holes_acc.items()}
    holes_summary["steps"] = FILL_STEPS

    # 6. Report
    summary = {
        "model": str(model or "default"), "data": str(data), "split": split, "offset": offset, "samples": len(test),
        "skipped": len(skipped), "no_mesh": no_mesh, "resolution": r, "steps": steps, "ensemble": ensemble,
        "seed": seed, "load_seconds": round(load_seconds, 2), "generate_seconds": round(generate_seconds, 2),
        "generate_steps": timing_steps,
        "camera_distance": camera_distance if camera_distance is not None else _default_distance(),
        "mean_face_from": mean_face_from,
        "depth": acc.summary(), "joint": joint.summary(), "edit": edit.summary(), "holes": holes_summary,
    }
    if sweep:
        summary["sweep"] = prior_sweep(summary["depth"], prior_strengths, prior_weights)
    (out / "eval.json").write_text(json.dumps(summary, indent=1))
    (out / "eval.md").write_text(markdown_report(summary, columns))
    if profiles:
        image_grid(profiles).save(out / "profiles.png")
    sheet = rows + gen_rows + hole_rows
    if sheet:
        width = max(len(t) for t in sheet)
        sheet = [t + [np.full_like(t[0], 255)] * (width - len(t)) for t in sheet]
        image_grid(sheet).save(out / "contact_sheet.png")
    return summary


def prior_sweep(depth: dict, strengths: tuple[float, ...], weights: tuple[float, ...]) -> dict:
    """Every prior strength x blend weight of an evaluation's ``depth`` rows, on the model's own head mask (as in
    the app), and the one of lowest RMSE: ``{"grid": [{"strength", "weight", "rmse", "mae", "n"}], "best": {...},
    "app": {"strength", "weight"}}`` (the app's current :data:`portrait.studio.DEFAULT_PRIOR_STRENGTH` and
    ``DEFAULT_PRIOR_WEIGHT``)."""
    from .studio import DEFAULT_PRIOR_STRENGTH, DEFAULT_PRIOR_WEIGHT

    grid = []
    for s in strengths:
        for w in weights:
            row = depth.get(f"model + mesh prior {s:g} + blend {w:g}", {})
            if row.get("n"):
                grid.append({"strength": s, "weight": w, "rmse": row["rmse"], "mae": row["mae"], "n": row["n"]})
    best = min(grid, key=lambda g: g["rmse"]) if grid else None
    return {"grid": grid, "best": best, "app": {"strength": DEFAULT_PRIOR_STRENGTH, "weight": DEFAULT_PRIOR_WEIGHT}}


def _on(depth: np.ndarray | None, where: np.ndarray) -> np.ndarray:
    """``depth`` (None: nothing known) where ``where`` is finite, NaN elsewhere."""
    if depth is None:
        return np.full(where.shape, np.nan, np.float32)
    return np.where(np.isfinite(where), depth, np.nan).astype(np.float32)


def _default_distance() -> float:
    from .mesh import camera_distance

    return round(camera_distance(), 3)


def markdown_report(summary: dict, columns: list[str] | None = None) -> str:
    """The evaluation as markdown tables."""
    after = f" after the first {summary['offset']}" if summary.get("offset") else ""
    lines = [
        f"# Evaluation: {summary['model']}",
        "",
        f"Data `{summary['data']}`, split `{summary['split']}`: {summary['samples']} samples"
        f"{after} at "
        f"{summary['resolution']}x{summary['resolution']} ({summary['skipped']} skipped, {summary['no_mesh']} without a "
        f"detected face mesh). {summary['steps']} denoising steps, ensemble {summary['ensemble']}, seed {summary['seed']}. "
        f"Mean face: {summary.get('mean_face_from', 'the train split')}.",
        "RMSE / MAE: after least-squares scale and shift inside the evaluated region, in units of the depth range "
        f"over the ground-truth mask (normalised to [0, 1] there). AbsRel / delta<1.25: at a camera distance of "
        f"{summary['camera_distance']:g} crop widths. Coverage: share of the ground-truth mask with a prediction.",
        "",
        "## Depth estimation",
        "",
        "| method | RMSE | MAE | AbsRel | delta<1.25 | coverage | mask IoU | n |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary["depth"].items():
        if not s.get("n"):
            lines.append(f"| {name} | - | - | - | - | - | - | 0 |")
            continue
        iou = f"{s['iou']:.3f}" if s.get("iou") is not None else "-"
        lines.append(f"| {name} | {s['rmse']:.4f} | {s['mae']:.4f} | {s['abs_rel']:.5f} | {s['delta1']:.3f} | "
                     f"{s['coverage']:.3f} | {iou} | {s['n']} |")
    lines += ["", "The model finds the head itself (its own mask made clean with the person segmentation, as in the "
              "app) and is scored where its mask and the ground truth's overlap; mask IoU: its mask against the "
              "ground truth's. The row marked [given mask] hands it the ground-truth mask instead.",
              "", "Rows marked [mesh region] align and score only where the face mesh exists (like for like with the "
              "mesh); rows marked [outside the mesh] align over the whole mask and score only where the mesh is "
              "missing (hair line, ears, neck). \"face mesh + mean face\" uses no model: the mesh where it exists, "
              "continued by the mean face aligned to it. \"model + mesh prior S + blend W\": \"model + mesh prior S\" averaged with the mesh where the "
              "mesh exists, the mesh's weight W ramping up from 0 at its edge (what the pipeline returns).", ""]
    if summary.get("sweep"):
        lines += _sweep_lines(summary)
    for title, key in (("Joint generation", "joint"), ("Editing", "edit")):
        if not summary[key]:  # not run (e.g. --joint-samples 0)
            continue
        lines += [f"## {title}", "", "| agreement | RMSE | MAE | n |", "|---|---|---|---|"]
        for name, s in summary[key].items():
            lines.append(f"| {name} | {s['rmse']:.4f} | {s['mae']:.4f} | {s['n']} |" if s.get("n") else f"| {name} | - | - | 0 |")
        lines.append("")
    holes = {k: v for k, v in summary.get("holes", {}).items() if isinstance(v, dict)}
    if holes:
        lines += ["## Hole filling", "",
                  f"Holes on the head's outline of held-out samples, painted with another view as the reference "
                  f"({summary['holes']['steps']} steps); RGB error inside the holes only ([head] / [background]: "
                  f"on the hole pixels of the head / behind it; a mean over masks).", "",
                  "| fill | RMSE | PSNR (dB) | n |", "|---|---|---|---|"]
        lines += [f"| {name} | {s['rmse']:.4f} | {s['psnr']:.2f} | {s['n']} |" for name, s in holes.items()]
        lines.append("")
    lines += [
        "## Speed",
        "",
        f"Loading: {summary['load_seconds']:.2f} s. One {summary['generate_steps']}-step generation (guidance 2, one "
        f"image) at {summary['resolution']}x{summary['resolution']}: {summary['generate_seconds']:.2f} s.",
        "",
    ]
    if columns:
        lines += ["Contact sheet columns (first rows): " + ", ".join(columns) + ". Then: reference, generated RGB, "
                  "generated depth, target depth, edited RGB, depth estimated from the edited RGB. Last rows: a "
                  "held-out sample, its holes (purple), the pre-fill, the model's painting.", ""]
    return "\n".join(lines)


def _sweep_lines(summary: dict) -> list[str]:
    sweep = summary["sweep"]
    app = sweep["app"]
    lines = ["## Prior sweep", "",
             f"\"model + mesh prior S + blend W\" on the model's own head mask, split `{summary['split']}`: the setting "
             f"of lowest RMSE is the one to give the app (now strength {app['strength']:g}, weight {app['weight']:g}). "
             "Choose it on a split apart from the reported one (e.g. `tune`, faces never reported).", "",
             "| prior strength | blend weight | RMSE | MAE | n | |", "|---|---|---|---|---|---|"]
    for g in sweep["grid"]:
        marks = [m for m, on in (("best", g == sweep["best"]),
                                 ("app", (g["strength"], g["weight"]) == (app["strength"], app["weight"]))) if on]
        lines.append(f"| {g['strength']:g} | {g['weight']:g} | {g['rmse']:.4f} | {g['mae']:.4f} | {g['n']} | "
                     f"{', '.join(marks)} |")
    if sweep["best"]:
        lines += ["", f"Best: prior strength {sweep['best']['strength']:g}, blend weight {sweep['best']['weight']:g} "
                  f"(RMSE {sweep['best']['rmse']:.4f})."]
    return lines + [""]


# --- the command ------------------------------------------------------------------------------------------


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate a model on a held-out split (depth metrics, baselines, generation, editing), or "
                     "measure edits of real photos (--edits) or an animation (--animation)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", help="model folder or hub id (default: the embedded default model)")
    p.add_argument("--data", type=Path, help="data folder (see portrait.data.folder); required unless --edits")
    p.add_argument("--edits", nargs="+", metavar="PHOTO",
                   help="instead: edit these photos (pose, expression) and measure identity, re-measured pose, "
                        "expression and background (portrait.edit_eval: edits.md, edits.json, edits_contact_sheet.png)")
    p.add_argument("--animation", type=Path, metavar="PHOTO",
                   help="instead: animate this photo by --driving CLIP and measure pose and expression error, identity "
                        "per frame and jitter (portrait.animation.evaluate: animation.md, animation.json)")
    p.add_argument("--driving", type=Path, help="with --animation: the driving clip")
    p.add_argument("--self", dest="self_reenactment", action="store_true",
                   help="with --animation: the clip was made from this photo (python -m portrait clip): also compare "
                        "every frame with the clip's (PSNR, identity)")
    p.add_argument("--variants", action="store_true",
                   help="with --edits: also mirrored, re-cropped and resized (0.5x, 2x) copies of each photo")
    p.add_argument("--method", choices=("warp", "regenerate"), help="with --edits: Studio.edit's method (default: its own)")
    p.add_argument("--out", required=True, type=Path,
                   help="output folder for eval.md, eval.json, contact_sheet.png, profiles.png")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, help="evaluate only N samples")
    p.add_argument("--offset", type=int, default=0,
                   help="skip the first N samples (e.g. tune on --offset 64 --limit 64, report on --limit 64)")
    p.add_argument("--steps", type=int, default=20, help="denoising steps")
    p.add_argument("--ensemble", type=int, default=1, help="depth ensemble size")
    p.add_argument("--prior-strength", type=float, action="append", dest="prior_strengths",
                   help="SDEdit strength of the face-mesh prior (repeatable; default 0.5)")
    p.add_argument("--prior-weight", type=float, action="append", dest="prior_weights",
                   help="weight of the mesh where it exists, averaged into the result started from it (repeatable; "
                        "default 0.5, the pipeline's)")
    p.add_argument("--sweep-prior", action="store_true",
                   help="rank every prior strength x blend weight on the model's own mask and name the best (a table "
                        "in eval.md, 'sweep' in eval.json); without --prior-strength / --prior-weight the grid is "
                        f"{' '.join(f'{v:g}' for v in SWEEP_GRID)} for each. Run it on a split apart from the reported "
                        "one (--split tune)")
    p.add_argument("--mean-face-data", type=Path,
                   help="folder whose train split gives the mean face (default: --data; e.g. the synthetic set for "
                        "the real-texture set, which has no train split)")
    p.add_argument("--joint-samples", type=int,
                   help="identities used for generation / editing checks (default 8; 0 with --sweep-prior)")
    p.add_argument("--hole-samples", type=int,
                   help="identities used for the hole-filling check, the first with two views from --offset on, "
                        "whatever --limit (default 16; 0 with --sweep-prior)")
    p.add_argument("--hole-masks", type=int, default=1, help="random hole masks per hole-filling sample")
    p.add_argument("--fill-strength", type=float, action="append", dest="fill_strengths", default=[],
                   help="also paint the holes from the pre-fill noised to this strength (repeatable; the studio's "
                        "is portrait.studio.FILL_STRENGTH)")
    p.add_argument("--camera-distance", type=float, help="for AbsRel / delta1 (default: the crop camera's)")
    p.add_argument("--timing-steps", type=int, default=20, help="steps of the timed generation")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> None:
    from .errors import PortraitError

    if args.animation:
        from .animation.evaluate import cmd_animation

        return cmd_animation(args)
    if args.edits:
        from .edit_eval import cmd_edits

        return cmd_edits(args)
    if args.data is None:
        raise PortraitError("eval needs --data DIR (a held-out split) or --edits PHOTO...")
    grid = SWEEP_GRID if args.sweep_prior else (0.5,)
    strengths = tuple(args.prior_strengths or grid)
    if any(not 0.0 < s <= 1.0 for s in strengths):
        raise PortraitError(f"--prior-strength must be in (0, 1], got {strengths}")
    weights = tuple(args.prior_weights or grid)
    if any(not 0.0 <= w <= 1.0 for w in weights):
        raise PortraitError(f"--prior-weight must be in [0, 1], got {weights}")
    if args.steps < 1:
        raise PortraitError("--steps must be at least 1")
    if args.offset < 0:
        raise PortraitError("--offset must be >= 0")
    if args.hole_masks < 1:
        raise PortraitError("--hole-masks must be at least 1")
    if any(not 0.0 < s <= 1.0 for s in args.fill_strengths):
        raise PortraitError(f"--fill-strength must be in (0, 1], got {args.fill_strengths}")
    default_joint, default_holes = (0, 0) if args.sweep_prior else (8, 16)  # a sweep only needs the depth rows
    joint_samples = default_joint if args.joint_samples is None else args.joint_samples
    hole_samples = default_holes if args.hole_samples is None else args.hole_samples
    summary = evaluate(args.model, args.data, args.out, args.split, args.limit, args.steps, args.ensemble, strengths,
                       weights, joint_samples, args.seed, args.camera_distance, args.timing_steps, args.offset,
                       hole_samples, args.mean_face_data, args.sweep_prior, args.hole_masks, tuple(args.fill_strengths))
    print((Path(args.out) / "eval.md").read_text())
    if not math.isfinite(summary["load_seconds"]):
        raise PortraitError("evaluation failed")
