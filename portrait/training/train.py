"""The accelerate training loop: one command on a CPU, one GPU, or several GPUs / nodes (``accelerate launch``).

Stages, each resumable from its latest checkpoint in ``OUTPUT/checkpoints/STAGE-STEP/``:

1. ``vae`` (latent mode from scratch only): the small ``AutoencoderKL`` learns to reconstruct the data's RGB
   and depth codes; saved to ``OUTPUT/stage_vae/`` with a reconstruction check (numbers + picture) that can
   stop the run before stage 2.
   ``decoder`` (optional, ``decoder.steps > 0``): the decoder alone is fine-tuned on latents of the frozen
   encoder; saved to ``OUTPUT/stage_decoder/`` with the same check. The latent space stays as it was, so
   this stage may also run after (or beside) the diffusion stage.
2. ``diffusion``: the joint denoiser, reference network and learned context (``JointDiffusion.training_loss``)
   with EMA weights. With ``cache_latents`` the frozen VAE encodes the data set once, up front. With a hole
   task in ``task_mix`` every sample carries a hole mask (:mod:`portrait.training.holes`). With
   ``diffusion.init_pipeline`` the stage starts from an existing pipeline folder (e.g. the embedded default:
   fine-tuning it) and the VAE stages are skipped: its VAE is kept, frozen.

The end result is a :class:`PortraitPipeline` with the EMA weights, saved with ``save_pretrained`` into
``OUTPUT/`` (load it with ``portrait.load_pipeline(OUTPUT)``), next to ``loss.csv`` and ``loss_curve.png``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from ..data.folder import PortraitDataset, image_grid
from ..depth import FOREGROUND_MAX, code_to_depth, colorize_depth
from ..errors import PortraitError
from ..models import JointDiffusion
from ..models.joint import vae_encode
from .config import TrainConfig
from .holes import HoleMasks

logger = logging.getLogger(__name__)


# --- objectives: `loss = objective(batch)`, so DDP sees a forward ------------------------------------------


class VAEObjective(torch.nn.Module):
    """Reconstruction (L1 + MSE) + KL of the autoencoder on ``[B, 3, H, W]`` images in [-1, 1]."""

    def __init__(self, vae, kl_weight: float):
        super().__init__()
        self.vae, self.kl_weight = vae, kl_weight

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        posterior = self.vae.encode(x).latent_dist
        recon = self.vae.decode(posterior.sample(generator)).sample
        rec = F.l1_loss(recon.float(), x.float()) + F.mse_loss(recon.float(), x.float())
        return rec + self.kl_weight * posterior.kl().mean()


class DecoderObjective(torch.nn.Module):
    """Reconstruction (L1 + MSE) of the VAE decoder alone from latents of the frozen encoder.

    A depth code is scored on the mean of the three output channels, which is how the pipeline reads it.
    """

    def __init__(self, vae):
        super().__init__()
        self.vae = vae
        for frozen in (vae.encoder, vae.quant_conv):
            if frozen is not None:
                frozen.requires_grad_(False)

    def forward(self, z: torch.Tensor, target: torch.Tensor, is_depth: torch.Tensor) -> torch.Tensor:
        recon = self.vae.decode(z).sample.float()
        recon = torch.where(is_depth, recon.mean(1, keepdim=True).expand_as(recon), recon)
        return F.l1_loss(recon, target.float()) + F.mse_loss(recon, target.float())


class PreEncodedJointDiffusion(JointDiffusion):
    """:class:`JointDiffusion` whose batches already hold VAE latents (``cache_latents``): encoding is identity."""

    def encode_rgb(self, rgb: torch.Tensor) -> torch.Tensor:
        return rgb

    def encode_depth(self, code: torch.Tensor) -> torch.Tensor:
        return code


class DiffusionObjective(torch.nn.Module):
    """The joint denoising loss of one batch (see ``JointDiffusion.training_loss``)."""

    def __init__(self, model: JointDiffusion, noise_scheduler, reference_dropout: float, depth_weight: float,
                 task_mix=(1.0, 0.0, 0.0, 0.0)):
        super().__init__()
        self.model, self.noise_scheduler = model, noise_scheduler
        self.reference_dropout, self.depth_weight, self.task_mix = reference_dropout, depth_weight, tuple(task_mix)

    def forward(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.model.training_loss(batch, self.noise_scheduler, self.reference_dropout, self.depth_weight, generator,
                                        self.task_mix)


# --- data -------------------------------------------------------------------------------------------------


class LatentDataset:
    """The data set encoded once by the frozen VAE: items hold latents ``[C, h, w]`` (both mirror images) and the
    head mask ``[1, R, R]`` at pixel resolution."""

    def __init__(self, data: PortraitDataset, vae, batch_size: int, device):
        rgb_lat, depth_lat = [], []
        flips = (False, True) if data.flip else (False,)
        with torch.no_grad():
            for start in tqdm(range(0, len(data), batch_size), desc="encoding the data set", leave=False):
                idx = range(start, min(start + batch_size, len(data)))
                rgb = torch.from_numpy(data.rgb[idx.start : idx.stop]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
                code = torch.from_numpy(data.code[idx.start : idx.stop])[:, None]
                per_flip_rgb, per_flip_depth = [], []
                for flip in flips:
                    r, c = (rgb.flip(-1), code.flip(-1)) if flip else (rgb, code)
                    per_flip_rgb.append(vae_encode(vae, r.to(device)).cpu())
                    per_flip_depth.append(vae_encode(vae, c.to(device)).cpu())
                rgb_lat.append(torch.stack(per_flip_rgb, 1))
                depth_lat.append(torch.stack(per_flip_depth, 1))
        self.rgb = torch.cat(rgb_lat)  # [N, F, C, h, w]
        self.depth = torch.cat(depth_lat)  # [N, F, C, h, w]
        self.mask = torch.from_numpy(data.mask)  # [N, R, R] bool
        self.others = data.others

    def __len__(self) -> int:
        return len(self.rgb)

    def __getitem__(self, i: int) -> dict:
        others = self.others[i]
        j = others[int(torch.randint(len(others), ()))]
        f, g = (int(torch.randint(self.rgb.shape[1], ())) for _ in range(2))
        mask = self.mask[i].flip(-1) if f else self.mask[i]
        return {"rgb": self.rgb[i, f], "depth": self.depth[i, f], "reference": self.rgb[j, g],
                "mask": mask[None].float()}


class WithHoles:
    """A diffusion data set whose items also hold ``holes`` ``[1, R, R]`` (1 = a hole) for the hole task, drawn from
    ``masks`` (random ones on the outline of the item's head ``mask``), seeded by torch's generator."""

    def __init__(self, data, masks: HoleMasks):
        self.data, self.masks = data, masks

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.data[i])
        rng = np.random.default_rng(int(torch.randint(2**62, ())))
        head = item["mask"][0].numpy() > 0.5 if "mask" in item else None
        item["holes"] = torch.from_numpy(self.masks.sample(rng, head))[None].float()
        return item


class DecoderDataset:
    """Latents of the frozen encoder (unscaled, as the decoder reads them) next to the pixels they encode."""

    def __init__(self, data: PortraitDataset, latents: LatentDataset, scaling_factor: float):
        self.data, self.latents, self.scale = data, latents, scaling_factor

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict:
        f = int(torch.randint(self.latents.rgb.shape[1], ()))  # 0: as is, 1: mirrored
        rgb = torch.from_numpy(self.data.rgb[i].copy()).permute(2, 0, 1).float() / 127.5 - 1.0
        code = torch.from_numpy(self.data.code[i].copy())[None]
        if f:
            rgb, code = rgb.flip(-1), code.flip(-1)
        return {"rgb_latent": self.latents.rgb[i, f] / self.scale, "depth_latent": self.latents.depth[i, f] / self.scale,
                "rgb": rgb, "code": code}


def batch_loader(dataset, batch_size: int, workers: int) -> torch.utils.data.DataLoader:
    """Shuffled batches (a last partial one dropped when there is more than one batch), drawn by ``workers``
    processes (``data.workers``) beside the training step, or by the loop itself with 0: with a hole task, each
    sample's hole mask is drawn there. Deterministic for a given seed and number of workers."""
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=len(dataset) > batch_size,
                                       num_workers=workers, persistent_workers=workers > 0,
                                       pin_memory=workers > 0 and torch.cuda.is_available())


def forever(loader):
    while True:
        yield from loader


def _vae_batch(batch: dict, depth_fraction: float, crop: int | None, generator: torch.Generator) -> torch.Tensor:
    """Mix RGB images and depth codes (replicated to 3 channels) into one ``[B, 3, H, W]`` batch, cropped."""
    rgb, depth = batch["rgb"], batch["depth"].repeat(1, 3, 1, 1)
    is_depth = (torch.rand(rgb.shape[0], generator=generator) < depth_fraction).to(rgb.device).view(-1, 1, 1, 1)
    x = torch.where(is_depth, depth, rgb)
    if crop is not None and crop < x.shape[-1]:
        y0, x0 = (int(torch.randint(x.shape[-1] - crop + 1, (), generator=generator)) for _ in range(2))
        x = x[..., y0 : y0 + crop, x0 : x0 + crop]
    return x


def _decoder_batch(batch: dict, depth_fraction: float, crop: int | None, factor: int, generator: torch.Generator):
    """(latents, pixel targets, is-depth flags) of one decoder batch, each sample RGB or depth, cropped alike."""
    z_rgb = batch["rgb_latent"]
    is_depth = (torch.rand(z_rgb.shape[0], generator=generator) < depth_fraction).to(z_rgb.device).view(-1, 1, 1, 1)
    z = torch.where(is_depth, batch["depth_latent"], z_rgb)
    target = torch.where(is_depth, batch["code"].repeat(1, 3, 1, 1), batch["rgb"])
    if crop is not None and crop < target.shape[-1]:
        c = max(crop // factor, 1)
        y0, x0 = (int(torch.randint(z.shape[-1] - c + 1, (), generator=generator)) for _ in range(2))
        z = z[..., y0 : y0 + c, x0 : x0 + c]
        target = target[..., y0 * factor : (y0 + c) * factor, x0 * factor : (x0 + c) * factor]
    return z, target, is_depth


# --- checkpoints and logs ---------------------------------------------------------------------------------


def _checkpoints(out: Path, stage: str) -> list[Path]:
    return sorted((out / "checkpoints").glob(f"{stage}-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))


def _save_checkpoint(accelerator: Accelerator, out: Path, stage: str, step: int, keep: int, origin: dict | None = None) -> None:
    path = out / "checkpoints" / f"{stage}-{step:07d}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        origin = {k: v for k, v in (origin or {}).items() if v is not None}
        (path / "progress.json").write_text(json.dumps({"stage": stage, "step": step, **origin}))
        for old in _checkpoints(out, stage)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)


def _latest(out: Path, stage: str) -> tuple[Path | None, int]:
    """The latest complete checkpoint of ``stage`` and its step (``None, 0`` if none)."""
    found = [p for p in _checkpoints(out, stage) if (p / "progress.json").is_file()]
    if not found:
        return None, 0
    return found[-1], int(json.loads((found[-1] / "progress.json").read_text())["step"])


def _origin(cfg: TrainConfig) -> dict:
    """What the diffusion stage starts from, recorded in its checkpoints."""
    return {"init_pipeline": str(Path(cfg.diffusion.init_pipeline)) if cfg.diffusion.init_pipeline else None}


def _check_origin(out: Path, stage: str, origin: dict) -> None:
    """Raise unless the latest checkpoint of ``stage`` (if any) comes from a run that started from ``origin``
    (e.g. ``{"init_pipeline": PATH or None}``, as its ``progress.json`` says): a run never resumes another's."""
    path, _ = _latest(out, stage)
    if path is None:
        return
    saved = json.loads((path / "progress.json").read_text())
    for key, value in origin.items():
        if saved.get(key) != value:
            raise PortraitError(
                f"the {stage} checkpoint {str(path)!r} comes from a run with {key}={saved.get(key)!r}, not {value!r}: "
                "give this run its own --output-dir"
            )


def _resume(accelerator: Accelerator, out: Path, stage: str) -> int:
    """Load the latest checkpoint of ``stage``; return its step (0 = none)."""
    path, step = _latest(out, stage)
    if path is not None:
        accelerator.load_state(str(path))
        accelerator.print(f"resumed {stage} from {path} (step {step})")
    return step


class LossLog:
    """Appends ``stage,step,loss,seconds`` rows to ``OUTPUT/loss.csv`` (the main process writes them): a row every
    ``every`` steps (``log_every``) and at a stage's last step, with the mean loss since the row before.

    The losses are summed where they were computed and read back only for a row, so the loop does not wait for
    the accelerator at every step. Every process calls :meth:`add` (a row gathers the processes' losses)."""

    def __init__(self, path: Path, enabled: bool, every: int = 1):
        self.path, self.enabled, self.every = path, enabled, max(1, int(every))
        self._sum, self._count = None, 0
        if enabled and not path.exists():
            path.write_text("stage,step,loss,seconds\n")

    def add(self, accelerator: Accelerator, stage: str, step: int, loss: torch.Tensor, seconds: float,
            last: bool = False) -> float | None:
        """Count one step's ``loss``; returns the mean written when this step writes a row, else None."""
        loss = loss.detach().float()
        self._sum, self._count = (loss if self._sum is None else self._sum + loss), self._count + 1
        if step % self.every and not last:
            return None
        value = accelerator.gather(self._sum[None]).mean().item() / self._count
        self._sum, self._count = None, 0
        if self.enabled:
            with self.path.open("a") as f:
                f.write(f"{stage},{step},{value:.6f},{seconds:.3f}\n")
        return value


def plot_loss_curve(csv_path: Path, png_path: Path) -> Path | None:
    """A PNG of the loss per stage (raw and smoothed) from ``loss.csv``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows: dict[str, dict[int, float]] = {}
    with csv_path.open() as f:
        for row in csv.DictReader(f):  # a resumed run rewrites steps after its checkpoint: keep the last
            rows.setdefault(row["stage"], {})[int(row["step"])] = float(row["loss"])
    if not rows:
        return None
    fig, axes = plt.subplots(1, len(rows), figsize=(4.5 * len(rows), 3.2), squeeze=False)
    in_order = sorted(rows.items(), key=lambda item: STAGES.index(item[0]) if item[0] in STAGES else len(STAGES))
    for ax, (stage, points) in zip(axes[0], in_order):
        steps, losses = np.array(sorted(points.items()), dtype=np.float64).T
        ax.plot(steps, losses, lw=0.6, alpha=0.4, label="loss")
        k = max(1, len(losses) // 20)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1 :], smooth, lw=1.5, label=f"mean of {k}")
        ax.set_yscale("log")
        ax.set_title(f"{stage} stage")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)
    return png_path


def _accelerator(cfg: TrainConfig) -> Accelerator:
    mp = cfg.mixed_precision
    if mp == "auto":
        mp = "fp16" if torch.cuda.is_available() else "no"
    elif mp == "fp16" and not torch.cuda.is_available():
        logger.warning("fp16 mixed precision needs a GPU; training in full precision")
        mp = "no"
    return Accelerator(mixed_precision=mp, gradient_accumulation_steps=cfg.diffusion.gradient_accumulation_steps)


# --- stage 1: the VAE -------------------------------------------------------------------------------------


def _finished(out: Path, stage: str, run: bool):
    """The saved VAE of a finished ``stage`` (``OUTPUT/stage_STAGE``), else None; raises if it may not run."""
    from diffusers import AutoencoderKL

    final = out / f"stage_{stage}"
    if (final / "config.json").is_file():
        print(f"{stage} stage already done: loading {final}")
        return AutoencoderKL.from_pretrained(final)
    if not run:
        raise PortraitError(f"the {stage} stage has not finished in {str(out)!r}: run it first (--stage {stage})")
    return None


def _autoencoder_loop(cfg: TrainConfig, accelerator: Accelerator, stage: str, steps: int, step: int, log: LossLog,
                      optimizer, params: list, next_loss) -> None:
    """The plain loop of the VAE and decoder stages: ``next_loss()`` -> step, log, checkpoint, up to ``steps``."""
    out = Path(cfg.output_dir)
    bar = tqdm(total=steps, initial=step, desc=stage, disable=not accelerator.is_main_process)
    t0 = time.time()
    while step < steps:
        loss = next_loss()
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        if (value := log.add(accelerator, stage, step, loss, time.time() - t0, last=step == steps)) is not None:
            bar.set_postfix(loss=f"{value:.4f}")
        if step % cfg.checkpoint_every == 0 and step < steps:
            _save_checkpoint(accelerator, out, stage, step, cfg.keep_checkpoints)
    bar.close()


def train_vae(cfg: TrainConfig, data: PortraitDataset, log: LossLog, run: bool = True):
    """Train (or resume, or reload) the small autoencoder; returns it with its latent scaling set."""
    from ..pipelines.build import ModelConfig, build_vae

    out = Path(cfg.output_dir)
    final = out / "stage_vae"
    if (done := _finished(out, "vae", run)) is not None:
        return done
    accelerator = _accelerator(cfg)
    set_seed(cfg.seed)
    vae = build_vae(ModelConfig(**cfg.model))
    objective = VAEObjective(vae, cfg.vae.kl_weight)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.vae.learning_rate, weight_decay=0.0)
    loader = batch_loader(data, cfg.vae.batch_size, cfg.data.workers)
    objective, optimizer, loader = accelerator.prepare(objective, optimizer, loader)
    step = _resume(accelerator, out, "vae")
    generator = torch.Generator().manual_seed(cfg.seed + step)
    batches = forever(loader)
    _autoencoder_loop(cfg, accelerator, "vae", cfg.vae.steps, step, log, optimizer, list(objective.parameters()),
                      lambda: objective(_vae_batch(next(batches), cfg.vae.depth_fraction, cfg.vae.crop, generator)))
    vae = accelerator.unwrap_model(objective).vae.eval()

    # latents of unit variance, as the denoiser expects
    with torch.no_grad():
        probe = torch.from_numpy(data.rgb[:64]).permute(0, 3, 1, 2).float().to(accelerator.device) / 127.5 - 1.0
        z = vae.encode(probe).latent_dist.mode()
    vae.register_to_config(scaling_factor=float(1.0 / max(z.std().item(), 1e-6)))
    if accelerator.is_main_process:
        vae.save_pretrained(final)
    accelerator.wait_for_everyone()
    check_reconstruction(vae, data, final, cfg.vae.check_max_depth_rmse)
    return vae


@torch.no_grad()
def check_reconstruction(vae, data: PortraitDataset, out: Path, max_depth_rmse: float | None, count: int = 16) -> dict:
    """Encode + decode ``count`` samples: RGB PSNR and depth RMSE inside the mask in face-depth-range units.

    Writes ``reconstruction.json`` and ``reconstruction.png`` (rows: RGB, its reconstruction, depth, its
    reconstruction) into ``out``; raises if the depth RMSE is above ``max_depth_rmse``.
    """
    device = next(vae.parameters()).device
    n = min(count, len(data))
    rgb = torch.from_numpy(data.rgb[:n]).permute(0, 3, 1, 2).float().to(device) / 127.5 - 1.0
    code = torch.from_numpy(data.code[:n])[:, None].to(device)
    rgb_rec = vae.decode(vae.encode(rgb).latent_dist.mode()).sample.clamp(-1, 1)
    code_rec = vae.decode(vae.encode(code.repeat(1, 3, 1, 1)).latent_dist.mode()).sample.mean(1, keepdim=True).clamp(-1, 1)
    mse = F.mse_loss((rgb_rec + 1) / 2, (rgb + 1) / 2).item()
    mask = torch.from_numpy(data.mask[:n])[:, None].to(device)
    err = (code_rec - code)[mask] / (FOREGROUND_MAX + 1.0)  # code span of the face = 1.6
    result = {
        "rgb_psnr_db": round(10 * math.log10(1.0 / max(mse, 1e-12)), 2),
        "depth_rmse_face_range": round(err.pow(2).mean().sqrt().item(), 4),
        "mask_iou": round(((code_rec < 0.8) & mask).sum().item() / max(((code_rec < 0.8) | mask).sum().item(), 1), 4),
        "samples": n,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "reconstruction.json").write_text(json.dumps(result, indent=1))
    to_u8 = lambda t: ((t.permute(0, 2, 3, 1).cpu().numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)  # noqa: E731
    k = min(n, 8)
    rows = [list(to_u8(rgb[:k])), list(to_u8(rgb_rec[:k])),
            [colorize_depth(code_to_depth(c)[0]) for c in code[:k, 0].cpu().numpy()],
            [colorize_depth(code_to_depth(c)[0]) for c in code_rec[:k, 0].cpu().numpy()]]
    image_grid(rows).save(out / "reconstruction.png")
    print(f"vae reconstruction check: {result}")
    if max_depth_rmse is not None and result["depth_rmse_face_range"] > max_depth_rmse:
        raise PortraitError(
            f"VAE reconstruction check failed: depth RMSE {result['depth_rmse_face_range']} > {max_depth_rmse} "
            f"(see {out / 'reconstruction.png'}); train the VAE longer (vae.steps)"
        )
    return result


def train_decoder(cfg: TrainConfig, data: PortraitDataset, vae, log: LossLog, run: bool = True):
    """Fine-tune (or resume, or reload) the decoder of ``vae`` with its encoder frozen; returns the VAE."""
    out = Path(cfg.output_dir)
    final = out / "stage_decoder"
    if (done := _finished(out, "decoder", run)) is not None:
        return done
    dc = cfg.decoder
    accelerator = _accelerator(cfg)
    set_seed(cfg.seed)
    vae = vae.to(accelerator.device).float()
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if dc.crop is not None and dc.crop % factor:
        raise PortraitError(f"decoder.crop must be a multiple of the VAE's downsampling {factor}, got {dc.crop}")
    latents = LatentDataset(data, vae.eval(), 16, accelerator.device)
    dataset = DecoderDataset(data, latents, vae.config.scaling_factor)
    objective = DecoderObjective(vae.train())
    params = [p for p in objective.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=dc.learning_rate, weight_decay=0.0)
    loader = batch_loader(dataset, dc.batch_size, cfg.data.workers)
    objective, optimizer, loader = accelerator.prepare(objective, optimizer, loader)
    step = _resume(accelerator, out, "decoder")
    generator = torch.Generator().manual_seed(cfg.seed + 7 + step)
    batches = forever(loader)
    _autoencoder_loop(cfg, accelerator, "decoder", dc.steps, step, log, optimizer, params,
                      lambda: objective(*_decoder_batch(next(batches), dc.depth_fraction, dc.crop, factor, generator)))
    vae = accelerator.unwrap_model(objective).vae.eval()
    vae.requires_grad_(True)  # as a freshly loaded model; JointDiffusion freezes it again
    if accelerator.is_main_process:
        vae.save_pretrained(final)
    accelerator.wait_for_everyone()
    check_reconstruction(vae, data, final, cfg.vae.check_max_depth_rmse)
    return vae


# --- stage 2: the joint diffusion model -------------------------------------------------------------------


def _init_pipeline(cfg: TrainConfig):
    """The pipeline of ``diffusion.init_pipeline`` (float32, on the CPU) to fine-tune."""
    from ..pipelines.loading import load_pipeline

    return load_pipeline(cfg.diffusion.init_pipeline, dtype=torch.float32)


def _pipeline(cfg: TrainConfig, vae):
    from ..pipelines.build import ModelConfig, build_from_stable_diffusion, build_pipeline

    if cfg.diffusion.init_pipeline:
        return _init_pipeline(cfg)
    if cfg.init_from:
        if not Path(cfg.init_from).is_dir():
            raise PortraitError(f"init_from folder {cfg.init_from!r} does not exist")
        return build_from_stable_diffusion(cfg.init_from)
    return build_pipeline(ModelConfig(**cfg.model), vae=vae, seed=cfg.seed)


def hole_bank_path(cfg: TrainConfig) -> Path | None:
    """The hole task's mask bank: ``diffusion.hole_masks`` (which must exist), else ``DATA/holes.npz`` if it exists."""
    if cfg.diffusion.hole_masks:
        path = Path(cfg.diffusion.hole_masks)
        if not path.is_file():
            raise PortraitError(f"diffusion.hole_masks {str(path)!r} does not exist; make the bank with "
                                f"python -m portrait holes --data {cfg.data.path} --out {path}")
        return path
    default = Path(cfg.data.path) / "holes.npz"
    return default if default.is_file() else None


def diffusion_trainable(pipe) -> torch.nn.ModuleDict:
    """What the diffusion stage trains of ``pipe``: the denoiser, the reference network and the learned context."""
    trainable = torch.nn.ModuleDict({"unet": pipe.unet, "reference_net": pipe.reference_net})
    if pipe.context_embedding is not None:
        trainable["context_embedding"] = pipe.context_embedding
    return trainable


def train_diffusion(cfg: TrainConfig, data: PortraitDataset, vae, log: LossLog, pipe=None) -> Path:
    """The diffusion stage on ``pipe`` (default: built from ``cfg``, or loaded from ``diffusion.init_pipeline``)."""
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    out = Path(cfg.output_dir)
    dc = cfg.diffusion
    origin = _origin(cfg)
    accelerator = _accelerator(cfg)
    set_seed(cfg.seed)
    pipe = pipe if pipe is not None else _pipeline(cfg, vae)
    pipe.set_progress_bar_config(disable=True)
    if pipe.vae is not None:
        pipe.vae.to(accelerator.device)
    if pipe.image_encoder is not None:
        pipe.image_encoder.to(accelerator.device)
    trainable = diffusion_trainable(pipe).train()  # a loaded pipeline comes in eval mode

    # 1. Data: pixels, or latents encoded once by the frozen VAE (not needed to save a finished run)
    if pipe.vae is not None and dc.cache_latents and _latest(out, "diffusion")[1] < dc.steps:
        dataset = LatentDataset(data, pipe.vae, max(dc.batch_size, 8), accelerator.device)
        model = PreEncodedJointDiffusion(pipe.unet, pipe.reference_net, pipe.vae, pipe.image_encoder, pipe.context_embedding)
    else:
        dataset, model = data, pipe.model
    if dc.hole_task:  # every sample gets a hole mask: a bank mask half the time, a random one otherwise
        masks = HoleMasks.load(hole_bank_path(cfg), data.resolution)
        accelerator.print(f"hole task: {masks}")
        dataset = WithHoles(dataset, masks)
    loader = batch_loader(dataset, dc.batch_size, cfg.data.workers)

    # 2. Objective, optimiser, EMA
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    objective = DiffusionObjective(model, noise_scheduler, dc.reference_dropout, dc.depth_weight, dc.task_mix)
    # a model trained on the conditional jobs is sampled with its known channels given clean; one trained on
    # the hole task, with a partly known modality given clean too (PortraitPipeline.holds_clean)
    pipe.register_to_config(clean_known=any(w > 0 for w in dc.task_mix[1:]), clean_partial=dc.hole_task)
    params = [p for p in trainable.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=dc.learning_rate, weight_decay=1e-2)
    lr_scheduler = get_scheduler(dc.lr_schedule, optimizer, num_warmup_steps=dc.warmup_steps, num_training_steps=dc.steps)
    ema = EMAModel(params, decay=dc.ema_decay, foreach=True)  # one fused update, not one per tensor
    objective, optimizer, loader, lr_scheduler = accelerator.prepare(objective, optimizer, loader, lr_scheduler)
    accelerator.register_for_checkpointing(ema)
    # the VAE is frozen here: its copy in a checkpoint must not replace a decoder fine-tuned since
    vae_state = {k: v.detach().clone() for k, v in pipe.vae.state_dict().items()} if pipe.vae is not None else None
    step = _resume(accelerator, out, "diffusion")
    ema.to(accelerator.device)  # after the resume, which loads the EMA weights on the CPU
    if vae_state is not None:
        pipe.vae.load_state_dict(vae_state)
    generator = torch.Generator(device=accelerator.device).manual_seed(cfg.seed * 1000 + step + accelerator.process_index)

    # 3. Loop
    bar = tqdm(total=dc.steps, initial=step, desc="diffusion", disable=not accelerator.is_main_process)
    batches = forever(loader)
    t0 = time.time()
    running = None
    while step < dc.steps:
        with accelerator.accumulate(objective):
            loss = objective(next(batches), generator)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(params, dc.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        if not accelerator.sync_gradients:
            continue
        ema.step(params)
        step += 1
        bar.update(1)
        if (value := log.add(accelerator, "diffusion", step, loss, time.time() - t0, last=step == dc.steps)) is not None:
            running = value if running is None else 0.8 * running + 0.2 * value
            bar.set_postfix(loss=f"{running:.4f}")
        if step % cfg.checkpoint_every == 0 and step < dc.steps:
            _save_checkpoint(accelerator, out, "diffusion", step, cfg.keep_checkpoints, origin)
            if accelerator.is_main_process:
                plot_loss_curve(out / "loss.csv", out / "loss_curve.png")
    bar.close()

    # 4. Final checkpoint, then the pipeline with the EMA weights
    _save_checkpoint(accelerator, out, "diffusion", step, cfg.keep_checkpoints, origin)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        ema.copy_to(params)
        pipe.to("cpu")
        if cfg.save_dtype == "float16":
            pipe.to(dtype=torch.float16)
        pipe.save_pretrained(out, safe_serialization=True)
        (out / "training_config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    accelerator.wait_for_everyone()
    return out


# --- the whole run ----------------------------------------------------------------------------------------


STAGES = ("vae", "decoder", "diffusion")


def train(cfg: TrainConfig, stages: tuple[str, ...] | None = None) -> Path:
    """Run ``stages`` of ``cfg`` (resuming where a previous run stopped); returns the output folder.

    Default: every stage, or with ``diffusion.init_pipeline`` the diffusion stage alone; a fine-tune may add
    the decoder stage, which then fine-tunes the pipeline's own decoder (its encoder, and so the latent space,
    frozen) before the diffusion stage. A stage left out of ``stages`` must have finished already if a later
    one needs it.
    """
    if stages is None:
        stages = ("diffusion",) if cfg.diffusion.init_pipeline else STAGES
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise PortraitError(f"unknown stage(s) {unknown}; stages: {', '.join(STAGES)}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    resolution = cfg.model.get("resolution", 128) if not cfg.init_from else cfg.model.get("resolution", 512)
    latent = cfg.model.get("latent", True) or bool(cfg.init_from)
    if "diffusion" in stages:  # what the diffusion stage needs, checked before the VAE stages run
        _check_origin(out, "diffusion", _origin(cfg))
        if cfg.diffusion.hole_task:
            hole_bank_path(cfg)
    pipe = None
    if cfg.diffusion.init_pipeline:  # fine-tuning: the pipeline sets the architecture and brings its VAE
        if "diffusion" not in stages or "vae" in stages:
            raise PortraitError("diffusion.init_pipeline fine-tunes a pipeline in the diffusion stage (after the "
                                "decoder stage, if asked); the vae stage does not run with it (its encoder is kept)")
        pipe = _init_pipeline(cfg)
        resolution = pipe.resolution
        tuned = "decoder fine-tuned first" if "decoder" in stages else "VAE kept frozen"
        print(f"diffusion stage from the pipeline in {cfg.diffusion.init_pipeline} ({resolution}x{resolution}, "
              f"{tuned}); the config's model section and the vae stage are not used")

    # 0. Data (render the synthetic set first if asked and missing)
    data_dir = Path(cfg.data.path)
    if cfg.data.synthetic is not None and not (data_dir / "manifest.json").is_file():
        from ..data.synthetic import write_dataset

        print(f"rendering the synthetic data set into {data_dir}")
        write_dataset(data_dir, cfg.data.synthetic, progress=True)
    data = PortraitDataset(data_dir, resolution, split=cfg.data.split, flip=cfg.data.flip)
    print(f"data: {len(data)} samples of {data.num_identities} identities from {data_dir}"
          + (f" ({len(data.skipped)} skipped)" if data.skipped else ""))
    log = LossLog(out / "loss.csv", enabled=int(os.environ.get("RANK", "0")) == 0, every=cfg.log_every)
    t0 = time.time()

    # 1. VAE stage, 2. diffusion stage
    vae = None
    if pipe is not None and pipe.vae is not None and ("decoder" in stages or (out / "stage_decoder").is_dir()):
        pipe.vae = train_decoder(cfg, data, pipe.vae, log, run="decoder" in stages)  # a fine-tune's own decoder
    elif latent and not cfg.init_from and pipe is None:
        if cfg.vae.steps <= 0 and not (out / "stage_vae" / "config.json").is_file():
            raise PortraitError("a from-scratch latent model needs a VAE stage: set vae.steps > 0")
        vae = train_vae(cfg, data, log, run="vae" in stages)
        if cfg.decoder.steps > 0 and {"decoder", "diffusion"} & set(stages):
            vae = train_decoder(cfg, data, vae, log, run="decoder" in stages)
    if "diffusion" in stages:
        train_diffusion(cfg, data, vae, log, pipe)
        print(f"saved the pipeline to {out} ({time.time() - t0:.0f} s in this run)")
    plot_loss_curve(out / "loss.csv", out / "loss_curve.png")
    return out
