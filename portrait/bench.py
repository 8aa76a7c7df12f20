"""Benchmarks: ``python -m portrait.bench [core|mesh|all] [options]``.

Speed and memory are measured here, never in tests. Ratios are measured side by side in one run (the
two variants interleaved, best of ``--repeats``), because absolute times on a shared machine are noisy.

- ``core``: the diffusion model at a configurable size and resolution: time per sampling step, a whole
  generation, peak memory, and two ratios: (a) generation with the reference network's states cached
  for all steps vs recomputed every step, (b) the joint RGB + depth denoiser vs an RGB-only denoiser of
  the same size. ``--preset sd15`` times an SD-1.5-shaped model (random weights, 512x512, fp16) on a GPU.
- ``mesh``: a 512x512 depth map to a GLB (the 3D viewer's path).
- ``animate``: an animation of the example photo by the example clip at the app's settings: output frames per
  second, the set-up, and the memory after the first and the last frame.
- ``load``: the app served on localhost under concurrent users over every endpoint, bad inputs interleaved:
  failures, refusals, latency per endpoint, throughput, memory and disk.
- ``train``: the diffusion stage's step, piece by piece, on the embedded default (or ``--model``) with the hole
  task at ``--batch``: a batch drawn by the loop itself vs by ``--workers`` data-loader processes, the EMA update
  per tensor vs fused, and one optimisation step, so the shares show what bounds a step on this machine.
- ``app``: the app's two interactive paths with the studio and the app's handlers, in-process: photo upload
  to depth + mesh shown, and slider release to the new image; and the peak memory.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from dataclasses import replace

PRESETS = {
    # the embedded default's architecture (configs/default.yaml; random weights unless --model is given)
    "default": dict(block_out_channels=(32, 64, 128), cross_attention_dim=64),
    "medium": dict(),  # ModelConfig's defaults: a 16 M-parameter denoiser at 128x128
    "tiny": dict(resolution=32, block_out_channels=(32, 64), down_attention=(False, True), cross_attention_dim=32,
                 vae_block_out_channels=(16, 32)),
    "sd15": dict(resolution=512, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                 down_attention=(True, True, True, False), cross_attention_dim=768, attention_head_dim=8,
                 vae_block_out_channels=(128, 256, 512, 512)),
}


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def best_of(fn, repeats: int) -> float:
    return min(timed(fn) for _ in range(repeats))


def bench_core(args) -> dict:
    import torch
    from diffusers import UNet2DConditionModel

    from .pipelines import ModelConfig, build_pipeline, load_pipeline

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if (device == "cuda" and args.preset == "sd15") else torch.float32
    if args.model:
        pipe = load_pipeline(args.model, device=device, dtype=dtype)
        label = args.model
    else:
        cfg = replace(ModelConfig(), **PRESETS[args.preset])
        if args.resolution:
            cfg = replace(cfg, resolution=args.resolution)
        pipe = build_pipeline(cfg)
        if (device, dtype) != ("cpu", torch.float32):
            pipe = pipe.to(device, dtype)
        label = f"preset {args.preset} (random weights)"
    pipe.set_progress_bar_config(disable=True)
    model = pipe.model.eval()
    res, steps = pipe.resolution, args.steps
    params = sum(p.numel() for p in pipe.unet.parameters()) / 1e6

    g = torch.Generator(device="cpu").manual_seed(0)
    ref = (torch.rand(1, 3, res, res, generator=g) * 2 - 1).to(device, dtype)
    f = model.scale_factor
    x0 = torch.randn(1, model.rgb_channels + model.depth_channels, res // f, res // f, generator=g).to(device, dtype)
    from PIL import Image

    ref_image = Image.fromarray(((ref[0].permute(1, 2, 0).float().cpu().numpy() + 1) * 127.5).astype("uint8"))

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    # The sampling loop of PortraitPipeline._sample, reduced to the model calls, with the reference either
    # cached (what the pipeline does) or recomputed at every step (what the cache saves).
    @torch.no_grad()
    def loop(cached: bool, unet=None, x=x0):
        scheduler = pipe.scheduler
        scheduler.set_timesteps(steps, device=device)
        context = model.context(ref)
        states = model.reference_states(ref) if cached else None
        for t in scheduler.timesteps:
            if unet is not None:  # RGB-only denoiser: same loop, same reference, narrower input/output
                states = states if cached else model.reference_states(ref)
                pred = unet(x, t, context, cross_attention_kwargs={"reference": states.reader()}).sample
            else:
                pred = model.denoise(x, t, context, states if cached else model.reference_states(ref))
            x = scheduler.step(pred, t, x).prev_sample
        sync()

    rgb_only = UNet2DConditionModel.from_config(
        {**pipe.unet.config, "in_channels": model.rgb_channels, "out_channels": model.rgb_channels}
    ).to(device)
    rgb_only = rgb_only.to(dtype) if dtype != torch.float32 else rgb_only
    from .models import set_reference_processors

    set_reference_processors(rgb_only)
    x_rgb = x0[:, : model.rgb_channels].contiguous()

    loop(True)  # warm-up, both denoisers
    loop(True, rgb_only, x_rgb)
    cached, recomputed, joint, rgb = [], [], [], []
    for _ in range(args.repeats):  # interleaved, so the machine's drift hits every variant alike
        cached.append(timed(lambda: loop(True)))
        recomputed.append(timed(lambda: loop(False)))
        joint.append(timed(lambda: loop(True)))
        rgb.append(timed(lambda: loop(True, rgb_only, x_rgb)))

    def generate():
        pipe.generate(ref_image, num_inference_steps=steps, guidance_scale=args.guidance,
                      generator=torch.Generator().manual_seed(0))
        sync()

    generate()
    t_generate = best_of(generate, args.repeats)
    result = {
        "model": label,
        "unet_params_M": round(params, 2),
        "resolution": res,
        "steps": steps,
        "dtype": str(dtype).replace("torch.", ""),
        "hardware": hardware(),
        "time_per_step_s": round(min(cached) / steps, 4),
        "generate_s": round(t_generate, 3),
        "generate_guidance": args.guidance,
        "ratio_cached_vs_recomputed_reference": round(min(cached) / min(recomputed), 3),
        "ratio_joint_vs_rgb_only_denoiser": round(min(joint) / min(rgb), 3),
    }
    if device == "cuda":
        result["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return result


def bench_mesh(args) -> dict:
    from .mesh import benchmark_depth_to_glb

    return {"depth_to_glb": benchmark_depth_to_glb(size=512, repeats=args.repeats)}


# The slider releases timed, each ``--repeats`` times: the bars' turns and nod, a smile, an opened jaw, a roll (the
# background continued behind the head) and the widest turn (its side stretched past ``MAX_STRETCH``: painted by the
# model; at 40 degrees the astronaut's photo still shows everywhere).
RELEASES = ({"yaw": 20.0}, {"yaw": -20.0}, {"pitch": 10.0}, {"smile": 0.8}, {"jaw_open": 0.6}, {"roll": 15.0},
            {"yaw": 45.0})


def _label(controls: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in controls.items())


def bench_app(args) -> dict:
    """The app's two interactive paths, in-process through the app's own handlers and default settings:
    photo upload -> depth + mesh shown (find/align/mesh the face, estimate depth, write the downloads and the
    GLB); the editing tab's upload (the head lifted into 3-D once per photo); and slider release -> new image
    (the prepared photo edited to each of ``RELEASES`` by warping the photo, the default, and by re-generating
    the face, interleaved, with their ratio). ``--model`` or the embedded
    default; without one installed, the default architecture with random weights (same compute)."""
    from statistics import median

    from .demo import EXAMPLES, SETTINGS, OutputStore, PhotoCache, StudioDemo, load_studio, warm_up
    from .errors import ModelNotFoundError
    from .studio import FILL_STRENGTH

    try:
        studio, label = load_studio(args.model), args.model or "embedded default"
    except ModelNotFoundError:
        if args.model:
            raise
        from .pipelines import ModelConfig, build_pipeline
        from .studio import Studio

        pipe = build_pipeline(ModelConfig())
        pipe.set_progress_bar_config(disable=True)
        studio, label = Studio(pipe), "default architecture, random weights (none installed)"
    photo = EXAMPLES[0]
    ui = StudioDemo(studio, OutputStore(keep=4))
    warm_up(studio)  # as main() does before serving

    upload, lift, release, regenerate = [], [], [], []
    by_setting = {_label(c): [] for c in RELEASES}
    state = ui.load_for_edit(photo).state  # the editing tab's upload: face found, head lifted into 3-D
    def fresh(handler):  # a new upload: nothing of the photo prepared yet (no session state, an empty cache)
        ui.photos = PhotoCache()
        return handler(photo, state=None)

    for _ in range(args.repeats):
        upload.append(timed(lambda: fresh(ui.estimate_depth)))
        lift.append(timed(lambda: fresh(ui.load_for_edit)))
        for controls in RELEASES:  # the two edit methods side by side, interleaved
            release.append(timed(lambda c=controls: ui.edit(photo, **c, state=state, method="warp")))
            by_setting[_label(controls)].append(release[-1])
            regenerate.append(timed(lambda c=controls: ui.edit(photo, **c, state=state, method="regenerate")))
    ui.store.close()
    s = {name: int(SETTINGS[name].default) for name in ("ensemble_size", "depth_steps", "edit_steps")}
    return {
        "model": label,
        "resolution": studio.resolution,
        "hardware": hardware(),
        "photo": photo.rsplit("/", 1)[-1],
        "settings": f"depth: ensemble {s['ensemble_size']}, {s['depth_steps']} steps; edit: {s['edit_steps']} steps, "
                    f"guidance {SETTINGS['guidance'].default}, holes painted from strength {FILL_STRENGTH}, "
                    f"re-generation at strength {SETTINGS['strength'].default}",
        "upload_to_depth_and_mesh_s_best": round(min(upload), 3),
        "upload_to_depth_and_mesh_s_median": round(median(upload), 3),
        "edit_upload_to_ready_s_median": round(median(lift), 3),
        "edit_output_crop_px": int(state.photo.layers[id(studio.pipe)].size),
        "release_to_image_s_median": round(median(release), 3),
        "release_to_image_s_worst": round(max(release), 3),
        "release_s_median_by_setting": {k: round(median(v), 3) for k, v in by_setting.items()},
        "release_regenerate_s_median": round(median(regenerate), 3),
        "release_regenerate_over_warp": round(median(regenerate) / median(release), 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def _rss_mb() -> float:
    """The process's resident memory now (Linux), in MB."""
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def bench_animate(args) -> dict:
    """An animation at the app's settings: the example photo driven by the example clip (``examples/driving.mp4``,
    looped to ``--seconds``), from the upload on (face found, head lifted into 3-D, the driver tracked, the
    background painted, every frame rendered and encoded). Output frames per second after the set-up, and the
    resident memory after the first frame and after the last (frames stream: it must not grow with the clip)."""
    import tempfile
    from pathlib import Path

    from .demo import EXAMPLES, load_studio, warm_up
    from .video import VideoWriter, frames, probe

    studio = load_studio(args.model)
    warm_up(studio)
    clip = Path(EXAMPLES[0]).parent / "driving.mp4"
    photo_path = EXAMPLES[0]
    with tempfile.TemporaryDirectory() as tmp:
        info = probe(clip)
        if args.seconds > info.duration + 1e-6:  # the clip looped, there and back, to the length asked
            driving = Path(tmp) / "long.mp4"
            loop = list(frames(clip))
            loop += loop[::-1]
            with VideoWriter(driving, info.fps) as video:
                for i in range(int(round(args.seconds * info.fps))):
                    video.write(loop[i % len(loop)])
        else:
            driving = clip
        marks = {}

        def progress(frame: int, total: int) -> None:
            if frame == 1:
                marks["first"], marks["rss_first"] = time.perf_counter(), _rss_mb()
            marks["last"], marks["rss_last"], marks["frames"] = time.perf_counter(), _rss_mb(), total

        start = time.perf_counter()
        photo = studio.prepare(photo_path)
        anim = studio.animate(photo, driving, Path(tmp) / "out", max_seconds=args.seconds + 1, progress=progress)
        total = time.perf_counter() - start
    rendered = max(anim.frames - 1, 1)
    return {
        "model": args.model or "embedded default",
        "hardware": hardware(),
        "photo": photo_path.rsplit("/", 1)[-1],
        "driving": f"{anim.frames} frames at {anim.fps:g} fps",
        "output_crop_px": int(photo.layers[id(studio.pipe)].size),
        "total_s": round(total, 2),
        "setup_s": round(marks["first"] - start, 2),
        "frames_per_s_after_setup": round(rendered / (marks["last"] - marks["first"]), 2),
        "rss_after_first_frame_mb": round(marks["rss_first"], 1),
        "rss_after_last_frame_mb": round(marks["rss_last"], 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def _bad_inputs(folder) -> dict[str, str]:
    """Files a user might send by mistake: each must be refused with a message."""
    import numpy as np
    import PIL.Image

    from .demo import EXAMPLES

    files = {"not an image": folder / "notes.png", "truncated JPEG": folder / "cut.jpg",
             "no face": folder / "no_face.png", "1x1": folder / "dot.png", "empty file": folder / "empty.png"}
    files["not an image"].write_text("this is a text file, renamed")
    whole = (folder / "whole.jpg")
    PIL.Image.open(EXAMPLES[-1]).save(whole, quality=90)
    files["truncated JPEG"].write_bytes(whole.read_bytes()[:4000])
    yy, xx = np.mgrid[0:256, 0:256]
    PIL.Image.fromarray(np.stack([xx, yy, np.full_like(xx, 128)], -1).astype(np.uint8)).save(files["no face"])
    PIL.Image.new("RGB", (1, 1)).save(files["1x1"])
    files["empty file"].write_bytes(b"")
    return {name: str(path) for name, path in files.items()}


def bench_load(args) -> dict:
    """The app served on localhost, ``--users`` concurrent ``gradio_client`` users each running ``--rounds`` rounds
    over every endpoint (depth, relight, edit, generate, a short animation) with a bad input interleaved in each
    round (not an image, a truncated JPEG, no face, 1x1, an empty file; each must be refused with its message).
    Reports failed good requests, refused bad ones, p50 / p95 latency per endpoint, throughput, the process's
    memory after warm-up and after the run, and the growth of the temporary folders on disk."""
    import random
    import socket
    import statistics
    import sys
    import tempfile
    import threading
    from pathlib import Path

    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import app

    from .demo import EXAMPLES, load_studio, warm_up
    from .video import VideoWriter, frames

    root = Path(tempfile.mkdtemp(prefix="portrait-load-"))
    tempfile.tempdir = str(root)  # the app's output store and Gradio's uploads land here, to be measured
    import os

    os.environ["GRADIO_TEMP_DIR"] = str(root / "gradio")
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(root / "examples")
    clip = root / "clip.mp4"
    with VideoWriter(clip, 25.0) as video:  # a short driving clip: every 8th frame of the example's turn
        for i, frame in enumerate(frames(Path(EXAMPLES[0]).parent / "driving.mp4", 48)):
            if i % 8 == 0:
                video.write(frame)
    bad = _bad_inputs(root)
    studio = load_studio(args.model)
    warm_up(studio)
    blocks = app.build_demo(studio, args.model)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _, url, _ = blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                              max_file_size=app.MAX_FILE_SIZE)

    def disk() -> int:
        return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())

    photo = EXAMPLES[0]
    calls = {  # endpoint -> its arguments after the photo
        "/estimate_depth": lambda c, p: c.predict(handle_file(p), ensemble_size=2, steps=10, seed=0,
                                                  api_name="/estimate_depth"),
        "/relight": lambda c, p: c.predict(handle_file(p), azimuth=-45, elevation=20, strength=0.8,
                                           api_name="/relight"),
        "/edit": lambda c, p: c.predict(handle_file(p), yaw=random.choice([-15, 15]), smile=0.4, api_name="/edit"),
        "/generate": lambda c, p: c.predict(handle_file(p), num_images=1, seed=0, api_name="/generate"),
        "/animate": lambda c, p: c.predict(handle_file(p), handle_file(str(clip)), output="crop", max_seconds=1,
                                           seed=0, api_name="/animate"),
    }
    latencies = {name: [] for name in calls}
    failures, refused, accepted_bad, lock = [], 0, [], threading.Lock()
    try:
        warm = Client(url, verbose=False)
        for call in calls.values():
            call(warm, photo)
        rss_warm, disk_warm = _rss_mb(), disk()

        def user(index: int) -> None:
            nonlocal refused
            client = Client(url, verbose=False)
            names = list(bad)
            for round_ in range(args.rounds):
                for name, call in calls.items():
                    start = time.perf_counter()
                    try:
                        call(client, photo)
                        with lock:
                            latencies[name].append(time.perf_counter() - start)
                    except Exception as err:  # noqa: BLE001 - every failure of a good request is counted
                        with lock:
                            failures.append(f"{name}: {err}")
                bad_name = names[(index + round_) % len(names)]
                try:
                    calls["/estimate_depth"](client, bad[bad_name])
                    with lock:
                        accepted_bad.append(bad_name)
                except AppError as err:
                    with lock:
                        refused += bool(str(err).strip()) and "Traceback" not in str(err)
                except Exception as err:  # noqa: BLE001 - refused, but not with the app's message
                    with lock:
                        accepted_bad.append(f"{bad_name}: {err.__class__.__name__}: {err}")

        start = time.perf_counter()
        threads = [threading.Thread(target=user, args=(i,)) for i in range(args.users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
    finally:
        blocks.close()
    good = sum(len(v) for v in latencies.values())

    def quantile(values, q):
        return round(statistics.quantiles(values, n=20)[int(q * 20) - 1], 2) if len(values) >= 2 else None

    return {
        "model": args.model or "embedded default", "hardware": hardware(),
        "users": args.users, "rounds": args.rounds,
        "good_requests": good + len(failures), "good_failed": len(failures), "failures": failures[:5],
        "bad_requests": args.users * args.rounds, "bad_refused_with_a_message": refused, "bad_not_refused_by_the_app": accepted_bad,
        "latency_s": {name: {"p50": round(statistics.median(v), 2) if v else None, "p95": quantile(v, 0.95)}
                      for name, v in latencies.items()},
        "throughput_requests_per_s": round((good + args.users * args.rounds) / wall, 2),
        "rss_after_warm_up_mb": round(rss_warm, 1), "rss_after_run_mb": round(_rss_mb(), 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "disk_after_warm_up_mb": round(disk_warm / 2**20, 1), "disk_after_run_mb": round(disk() / 2**20, 1),
    }


def bench_train(args) -> dict:
    import tempfile
    from pathlib import Path

    import torch
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    from .data.folder import PortraitDataset
    from .data.spec import SyntheticSpec
    from .data.synthetic import write_dataset
    from .pipelines import load_pipeline
    from .training.config import DiffusionStageConfig
    from .training.holes import HoleMasks
    from .training.train import (
        DiffusionObjective,
        LatentDataset,
        PreEncodedJointDiffusion,
        WithHoles,
        batch_loader,
        diffusion_trainable,
        forever,
    )

    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipe = load_pipeline(args.model, device=device)
    res, batch, n = pipe.resolution, args.batch, args.steps
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.data) if args.data else Path(tmp)
        if not args.data:  # a small synthetic set: the timings do not depend on its size
            write_dataset(folder, SyntheticSpec(identities=24, views=4, size=res, seed=0, test_fraction=0.0))
        data = PortraitDataset(folder, res, split=None, flip=True)
        dataset = WithHoles(LatentDataset(data, pipe.vae, 16, device), HoleMasks(res))

        def draw(workers: int) -> float:  # ms per batch once the loader runs (its start-up left out)
            batches = forever(batch_loader(dataset, batch, workers))
            next(batches)
            t0 = time.perf_counter()
            for _ in range(n):
                next(batches)
            return (time.perf_counter() - t0) / n * 1e3

        loop_ms, workers_ms = [], []
        for _ in range(args.repeats):  # interleaved
            loop_ms.append(draw(0))
            workers_ms.append(draw(args.workers))
        sample = next(iter(batch_loader(dataset, batch, 0)))

    model = PreEncodedJointDiffusion(pipe.unet, pipe.reference_net, pipe.vae, pipe.image_encoder, pipe.context_embedding)
    dc = DiffusionStageConfig(task_mix=[0.25, 0.4, 0.15, 0.2])  # the hole task in the mix
    objective = DiffusionObjective(model, DDPMScheduler.from_config(pipe.scheduler.config), dc.reference_dropout,
                                   dc.depth_weight, dc.task_mix)
    params = [p for p in diffusion_trainable(pipe).train().parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    sample = {k: v.to(device) if torch.is_tensor(v) else v for k, v in sample.items()}
    generator = torch.Generator(device=device).manual_seed(0)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def optimise():
        for _ in range(n):
            objective(sample, generator).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        sync()

    emas = {name: EMAModel(params, decay=dc.ema_decay, foreach=fused) for name, fused in (("per tensor", False), ("fused", True))}

    def ema_step(ema):
        def run():
            for _ in range(n):
                ema.step(params)
            sync()
        return run

    optimise()  # warm-up
    step_ms = best_of(optimise, args.repeats) / n * 1e3
    ema_ms = {name: [] for name in emas}
    for _ in range(args.repeats):  # interleaved
        for name, ema in emas.items():
            ema_ms[name].append(timed(ema_step(ema)) / n * 1e3)
    ema_ms = {name: min(values) for name, values in ema_ms.items()}
    loader = f"from {args.workers} worker" + ("s" if args.workers != 1 else "")
    return {
        "hardware": hardware(), "batch": batch, "parameters_M": round(sum(p.numel() for p in params) / 1e6, 2),
        "batch_ms": {"drawn by the loop": min(loop_ms), loader: min(workers_ms),
                     "ratio": min(loop_ms) / max(min(workers_ms), 1e-9)},
        "ema_ms": {**ema_ms, "ratio": ema_ms["per tensor"] / max(ema_ms["fused"], 1e-9)},
        "optimisation_step_ms": step_ms,
    }


SECTIONS = {"core": bench_core, "mesh": bench_mesh, "app": bench_app, "animate": bench_animate, "load": bench_load,
            "train": bench_train}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m portrait.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", nargs="?", default="all", choices=[*SECTIONS, "all"],
                        help="all: every section but load (it serves the app) and train")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS), help="model size (core)")
    parser.add_argument("--model", help="time a saved model folder instead of a preset")
    parser.add_argument("--resolution", type=int, help="override the preset's working resolution")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=2.0, help="guidance of the timed generation")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="animate: the driving clip's length (looped)")
    parser.add_argument("--users", type=int, default=8, help="load: concurrent users")
    parser.add_argument("--rounds", type=int, default=3, help="load: rounds over every endpoint per user")
    parser.add_argument("--batch", type=int, default=32, help="train: batch size")
    parser.add_argument("--workers", type=int, default=2, help="train: data-loader processes to compare with none")
    parser.add_argument("--data", help="train: a data folder (default: a small synthetic set rendered first)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    args = parser.parse_args(argv)

    import torch
    from diffusers.utils import logging

    logging.set_verbosity_error()
    if args.preset == "sd15" and not torch.cuda.is_available() and args.section in ("core", "all") and not args.model:
        parser.error("--preset sd15 needs a GPU (it times fp16 at 512x512)")
    from .errors import PortraitError

    results = {}
    try:
        for name, fn in SECTIONS.items():
            if args.section == name or (args.section == "all" and name not in ("load", "train")):
                results[name] = fn(args)
    except PortraitError as err:  # a bad --model or --data: the message, not a traceback
        parser.exit(2, f"error: {err}\n")
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for section, values in results.items():
        print(f"[{section}]")
        for key, value in _flatten(values):
            print(f"  {key}: {round(value, 4) if isinstance(value, float) else value}")


def _flatten(values: dict, prefix: str = ""):
    for key, value in values.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


if __name__ == "__main__":
    main()
