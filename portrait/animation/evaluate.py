"""Measuring an animation: ``python -m portrait eval --animation PHOTO --driving CLIP --out DIR``.

The photo is animated by the clip (:func:`portrait.animation.animate`), then the driver's and the result's faces
are both tracked with mediapipe, each against its own first frame (the result's first frame is the photo as
photographed: the driver's first face is the motion's origin):

- pose error (APD): mean absolute difference of yaw, pitch and roll, degrees (:func:`~portrait.face.measure.head_rotation`);
- expression error (AED): the lips', lids' and brows' landmarks after removing each face's pose (similarity
  alignment of its rigid points onto its first frame), as displacements from the first frame in that face's own
  axes and eye distances; the mean distance between the driver's and the result's;
- identity: dlib's face-recognition distance from the photo to every result frame (under 0.6: the same person);
- jitter: the mean frame-to-frame acceleration of the landmarks (second difference, eye distances per frame²),
  of the result, of the driver, and of the photo's own scripted clip (``python -m portrait clip``: the same
  person in smooth, known motion). The tracker's own noise differs from face to face (glasses, hair), so the
  result passes when it shakes no more than the driver or than its own person in smooth motion. The ratio to
  that bar comes with a 95 % interval (a seeded bootstrap over blocks of ``JITTER_BLOCK`` frames, paired
  frame by frame where the two clips are as long): a few per cent either way is the tracker's noise;
- self-reenactment (``--self``, when the clip was made from this photo by ``python -m portrait clip``): PSNR and
  identity distance of every result frame to the clip's frame.

Writes ``animation.md`` (the pass bars and the numbers), ``animation.json`` (every number per frame) and the
animation's own files under ``DIR/animation``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..face.controls import FaceFrame
from ..face.measure import RIGID, head_rotation, similarity_transform
from ..face.mesh import FaceMesh, eye_centres, region
from .driving import NAMES

EXPRESSION_POINTS = region("upper_lip_outer", "lower_lip_outer", "upper_lip_inner", "lower_lip_inner",
                           "right_eye_upper", "right_eye_lower", "left_eye_upper", "left_eye_lower",
                           "right_eyebrow", "left_eyebrow")
BARS = {"pose_error_deg": 3.0, "identity_max": 0.45}  # jitter: no larger than the driver's or the photo's own clip
JITTER_BLOCK = 10  # frames per bootstrap block: the tracker's errors are correlated over a few frames


def track_video(path) -> np.ndarray:
    """``[N, 478, 3]`` landmarks of the face through a video (NaN where it is lost)."""
    from ..face.tracking import track_landmarks
    from ..video import frames

    return track_landmarks(frames(path))


def _iod(points: np.ndarray) -> float:
    right, left = eye_centres(points)
    return float(np.linalg.norm(left - right))


def poses(track: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``[N, 3]`` yaw, pitch, roll of every frame against ``reference`` (NaN where lost)."""
    return np.array([head_rotation(reference, p) if np.isfinite(p).all() else (np.nan,) * 3 for p in track])


def expressions(track: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``[N, E, 3]`` the expression landmarks' displacement from ``reference`` with the pose removed, in the
    reference face's own axes and eye distances (NaN where lost)."""
    axes = FaceFrame.of(FaceMesh(vertices=np.asarray(reference, np.float64))).axes
    iod = _iod(reference)
    out = np.full((len(track), len(EXPRESSION_POINTS), 3), np.nan)
    for i, p in enumerate(track):
        if not np.isfinite(p).all():
            continue
        s, rot, t = similarity_transform(p[RIGID], reference[RIGID])  # this frame's rigid points onto the reference's
        aligned = (s * (rot @ np.asarray(p, np.float64).T)).T + t
        out[i] = (aligned[EXPRESSION_POINTS] - reference[EXPRESSION_POINTS]) @ axes.T / iod
    return out


def accelerations(track: np.ndarray) -> np.ndarray:
    """``[N - 2]`` mean landmark acceleration ``|p[i+1] - 2 p[i] + p[i-1]|`` per frame, in eye distances (NaN
    where a face of the three is lost)."""
    iod = np.array([_iod(p) if np.isfinite(p).all() else np.nan for p in track])
    return np.linalg.norm(track[2:] - 2 * track[1:-1] + track[:-2], axis=2).mean(axis=1) / iod[1:-1]


def jitter(track: np.ndarray) -> float:
    """Mean landmark acceleration over the frames all found (:func:`accelerations`)."""
    accel = accelerations(track)
    return float(np.nanmean(accel)) if np.isfinite(accel).any() else float("nan")


def jitter_ratio(result: np.ndarray, reference: np.ndarray, draws: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """``(ratio, low, high)``: the result's jitter over the reference's and its 95 % bootstrap interval. Blocks
    of ``JITTER_BLOCK`` frames are drawn at the same places in both tracks when they are as long (paired), else
    independently."""
    a, b = accelerations(result), accelerations(reference)
    paired = len(a) == len(b)
    if not paired:
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    ratio = float(np.nanmean(a) / np.nanmean(b))
    if min(len(a), len(b)) < 2 * JITTER_BLOCK:
        return ratio, float("nan"), float("nan")
    rng = np.random.default_rng(seed)

    def resample(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
        return x[(starts[:, None] + np.arange(JITTER_BLOCK)).ravel()]

    ratios = []
    for _ in range(draws):
        starts = rng.integers(0, len(a) - JITTER_BLOCK + 1, len(a) // JITTER_BLOCK)
        other = starts if paired else rng.integers(0, len(b) - JITTER_BLOCK + 1, len(b) // JITTER_BLOCK)
        ratios.append(np.nanmean(resample(a, starts)) / np.nanmean(resample(b, other)))
    low, high = np.nanpercentile(ratios, [2.5, 97.5])
    return ratio, float(low), float(high)


def evaluate_animation(studio, photo_path, driving, out_dir, *, self_reenactment: bool = False,
                       max_seconds: float = 30.0) -> dict:
    """Animate, measure, write ``animation.md`` and ``animation.json``; returns the summary."""
    import time

    import PIL.Image

    from ..face.measure import face_descriptor, psnr
    from ..video import frames

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    photo = studio.prepare(photo_path)
    start = time.perf_counter()
    anim = studio.animate(photo, driving, out / "animation", max_seconds=max_seconds)
    seconds = time.perf_counter() - start

    driver = anim.motion.landmarks
    result = track_video(anim.paths["video"])
    first = int(np.argmax(np.isfinite(driver[:, 0, 0])))
    apd = np.abs(poses(driver, driver[first]) - poses(result, result[first])).mean(axis=1)
    aed = np.linalg.norm(expressions(driver, driver[first]) - expressions(result, result[first]), axis=2).mean(axis=1)

    if self_reenactment:  # the driver is the photo's own scripted clip
        scripted = driver
    else:
        from .script import write_clip

        scripted = track_video(write_clip(studio, photo, out / "scripted.mp4"))
    floor, driver_jitter = jitter(scripted), jitter(driver)
    ratio = jitter_ratio(result, driver if driver_jitter >= floor else scripted)

    reference = face_descriptor(photo.image)
    identity, self_psnr, self_identity = [], [], []
    clip = frames(driving) if self_reenactment else None
    for i, frame in enumerate(frames(anim.paths["video"])):
        landmarks = result[i] if np.isfinite(result[i]).all() else None
        identity.append(float(np.linalg.norm(face_descriptor(frame, landmarks) - reference)))
        if clip is not None:
            target = next(clip)
            shown = np.asarray(PIL.Image.fromarray(frame).resize(target.shape[1::-1], PIL.Image.Resampling.LANCZOS))
            self_psnr.append(psnr(shown, target))
            self_identity.append(float(np.linalg.norm(face_descriptor(shown) - face_descriptor(target))))

    summary = {
        "photo": str(photo_path), "driving": str(driving), "frames": anim.frames, "fps": anim.fps,
        "driver_lost": anim.lost, "result_lost": int((~np.isfinite(result[:, 0, 0])).sum()),
        "seconds": seconds, "seconds_per_frame": seconds / max(anim.frames, 1),
        "pose_error_deg": float(np.nanmean(apd)), "expression_error": float(np.nanmean(aed)),
        "identity_mean": float(np.mean(identity)), "identity_max": float(np.max(identity)),
        "jitter_result": jitter(result), "jitter_driver": driver_jitter, "jitter_photo_scripted": floor,
        "jitter_ratio": ratio[0], "jitter_ratio_95": list(ratio[1:]),
        # the driver's motion as tracked, before smoothing: each control's value farthest from rest
        "driver_peak": {name: float(column[np.argmax(np.abs(column))]) for name, column in zip(NAMES, anim.motion.raw.T)},
        "per_frame": {"pose_error_deg": apd.tolist(), "expression_error": aed.tolist(), "identity": identity},
    }
    if self_reenactment:
        summary.update(self_psnr=float(np.mean(self_psnr)), self_identity=float(np.mean(self_identity)))
        summary["per_frame"].update(self_psnr=self_psnr, self_identity=self_identity)
    summary["pass"] = {
        "pose_error_deg": summary["pose_error_deg"] <= BARS["pose_error_deg"],
        "identity_max": summary["identity_max"] <= BARS["identity_max"],
        "jitter": summary["jitter_result"] <= max(summary["jitter_driver"], floor),
    }
    clean = json.loads(json.dumps(summary, default=float).replace("NaN", "null"))
    (out / "animation.json").write_text(json.dumps(clean, indent=1))
    (out / "animation.md").write_text(markdown_report(summary))
    return summary


def markdown_report(s: dict) -> str:
    def mark(ok: bool) -> str:
        return "pass" if ok else "FAIL"

    lines = [
        f"# Animation of {Path(s['photo']).name} by {Path(s['driving']).name}", "",
        f"{s['frames']} frames at {s['fps']:g} fps in {s['seconds']:.1f} s ({s['seconds_per_frame']:.2f} s per frame, "
        f"set-up included); driver's face lost in {s['driver_lost']}, result's in {s['result_lost']}.", "",
        "| measure | value | bar |", "|---|---|---|",
        f"| pose error (mean abs. yaw, pitch, roll difference) | {s['pose_error_deg']:.2f} deg | "
        f"<= {BARS['pose_error_deg']:g}: {mark(s['pass']['pose_error_deg'])} |",
        f"| expression error (pose removed, eye distances) | {s['expression_error']:.4f} | |",
        f"| identity distance to the photo, mean / worst frame | {s['identity_mean']:.3f} / {s['identity_max']:.3f} | "
        f"worst <= {BARS['identity_max']:g}: {mark(s['pass']['identity_max'])} |",
        f"| jitter, result / driver / the photo's own scripted clip (eye distances per frame²) | "
        f"{s['jitter_result']:.4f} / {s['jitter_driver']:.4f} / {s['jitter_photo_scripted']:.4f} | "
        f"result <= driver or own clip: {mark(s['pass']['jitter'])} |",
        f"| ... the result's over the larger of the two, with its 95 % interval | {s['jitter_ratio']:.2f} "
        f"({s['jitter_ratio_95'][0]:.2f}-{s['jitter_ratio_95'][1]:.2f}) | {_reading(s['jitter_ratio_95'])} |",
    ]
    peaks = ", ".join(f"{name} {value:+.2f}" for name, value in s["driver_peak"].items())
    lines.append(f"| the driver's motion as tracked (unsmoothed), each control's value farthest from rest | {peaks} | |")
    if "self_psnr" in s:
        lines.append(f"| self-reenactment: PSNR / identity distance to the clip's frames | {s['self_psnr']:.2f} dB / "
                     f"{s['self_identity']:.3f} | |")
    return "\n".join(lines) + "\n"


def _reading(interval) -> str:
    """What a jitter ratio's 95 % ``interval`` says: the result smoother or rougher than the rougher of the driver
    and the photo's own clip, or no different within the tracker's noise."""
    low, high = interval
    if high < 1:
        return "the interval below 1: smoother"
    if low > 1:
        return "the interval above 1: rougher"
    return "the interval holds 1: within the tracker's noise"


def cmd_animation(args) -> None:
    """``python -m portrait eval --animation PHOTO --driving CLIP --out DIR [--self] [--model M]``."""
    from ..errors import PortraitError
    from ..studio import Studio

    if args.driving is None:
        raise PortraitError("--animation needs --driving CLIP")
    summary = evaluate_animation(Studio.load(args.model), args.animation, args.driving, args.out,
                                 self_reenactment=args.self_reenactment)
    print((Path(args.out) / "animation.md").read_text())
    if not math.isfinite(summary["pose_error_deg"]):
        raise PortraitError("the result's face could not be tracked")
