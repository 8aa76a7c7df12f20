"""The training command on the tiny config: stages, checkpoints, loading back, resume."""

import argparse
import json
from pathlib import Path

import pytest
import torch

from portrait.errors import PortraitError
from portrait.training import commands
from portrait.training.config import load_config

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "tiny.yaml"


def run_cli(*argv):
    parser = argparse.ArgumentParser(prog="python -m portrait")
    commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    args.func(args)


def test_config_rejects_unknown_keys(tmp_path):
    cfg = load_config(CONFIG, {"diffusion.steps": 7})
    assert cfg.diffusion.steps == 7 and cfg.model["resolution"] == 32
    bad = tmp_path / "bad.yaml"
    bad.write_text("output_dir: x\ndiffusion: {stepz: 3}\n")
    with pytest.raises(PortraitError, match="stepz"):
        load_config(bad)
    with pytest.raises(PortraitError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    for mix in ([1, 1], [1, -1, 0], [0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0, 1], [1, 0, True], "1,0,0"):
        with pytest.raises(PortraitError, match="task_mix"):
            load_config(CONFIG, {"diffusion.task_mix": mix})


def test_config_takes_a_hole_task_and_a_pipeline_to_start_from():
    cfg = load_config(CONFIG, {"diffusion.task_mix": [0.25, 0.4, 0.15, 0.2], "diffusion.init_pipeline": "some/folder"})
    assert cfg.diffusion.hole_task and cfg.diffusion.init_pipeline == "some/folder"
    assert not load_config(CONFIG).diffusion.hole_task  # 3 weights: no hole task
    assert not load_config(CONFIG, {"diffusion.task_mix": [1, 0, 0, 0]}).diffusion.hole_task
    with pytest.raises(PortraitError, match="hole_masks"):
        load_config(CONFIG, {"diffusion.hole_masks": 3})
    with pytest.raises(PortraitError, match="not both"):
        load_config(CONFIG, {"diffusion.init_pipeline": "a", "init_from": "b"})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    run_cli("train", "--config", str(CONFIG), "--output-dir", str(root / "run"), "--set", f"data.path={root / 'data'}")
    return root


def test_three_steps_write_a_checkpoint_that_loads(trained):
    from portrait.pipelines.loading import load_pipeline

    out = trained / "run"
    assert (out / "checkpoints" / "diffusion-0000003" / "progress.json").is_file()
    assert (out / "stage_vae" / "reconstruction.json").is_file()
    assert (out / "loss_curve.png").is_file()
    rows = (out / "loss.csv").read_text().splitlines()
    assert rows[0] == "stage,step,loss,seconds" and rows[-1].startswith("diffusion,3,")
    pipe = load_pipeline(out)
    assert pipe.resolution == 32 and pipe.vae is not None
    from .conftest import random_image

    result = pipe.generate(random_image(32), num_inference_steps=1, generator=torch.Generator().manual_seed(0))
    assert result.depth.shape == (1, 32, 32)


def test_decoder_stage_keeps_the_latent_space(trained):
    from diffusers import AutoencoderKL

    from portrait.pipelines.loading import load_pipeline

    out = trained / "run"
    before, after = (AutoencoderKL.from_pretrained(out / name).state_dict() for name in ("stage_vae", "stage_decoder"))
    assert (out / "stage_decoder" / "reconstruction.json").is_file()
    frozen = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    tuned = [k for k in before if k.startswith(("decoder.", "post_quant_conv."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in tuned)
    shipped = load_pipeline(out).vae.state_dict()  # the pipeline carries the fine-tuned decoder
    assert all(torch.allclose(shipped[k].float(), after[k].float()) for k in tuned)
    assert "decoder," in (out / "loss.csv").read_text()


def test_stages_run_one_at_a_time(tmp_path, trained, capsys):
    """Stages run alone; the decoder may be fine-tuned after the diffusion stage and still ships."""
    from diffusers import AutoencoderKL

    from portrait.pipelines.loading import load_pipeline

    out = tmp_path / "run"
    args = ("train", "--config", str(CONFIG), "--output-dir", str(out), "--set", f"data.path={trained / 'data'}")
    with pytest.raises(PortraitError, match="vae stage has not finished"):
        run_cli(*args, "--stage", "diffusion")
    run_cli(*args, "--stage", "vae")
    assert (out / "stage_vae").is_dir() and not (out / "stage_decoder").exists()
    assert not list((out / "checkpoints").glob("diffusion-*"))
    with pytest.raises(PortraitError, match="decoder stage has not finished"):
        run_cli(*args, "--stage", "diffusion")
    run_cli(*args, "--stage", "diffusion", "--set", "decoder.steps=0")  # a diffusion model on the stage-1 VAE
    run_cli(*args, "--stage", "decoder")
    capsys.readouterr()
    run_cli(*args)  # every stage finished: reloads them and saves the pipeline with the new decoder
    captured = capsys.readouterr()
    assert "decoder stage already done" in captured.out and "(step 3)" in captured.out
    assert "encoding the data set" not in captured.err  # nothing left to train: no latents to cache
    tuned = AutoencoderKL.from_pretrained(out / "stage_decoder").state_dict()
    shipped = load_pipeline(out).vae.state_dict()
    assert all(torch.allclose(shipped[k].float(), v.float()) for k, v in tuned.items())


def test_resume_continues_from_the_latest_checkpoint(trained, capsys):
    out = trained / "run"
    run_cli("train", "--config", str(CONFIG), "--output-dir", str(out), "--set", f"data.path={trained / 'data'}",
            "--set", "diffusion.steps=5")
    printed = capsys.readouterr().out
    assert "vae stage already done" in printed
    assert "resumed diffusion from" in printed and "(step 3)" in printed
    assert (out / "checkpoints" / "diffusion-0000005").is_dir()
    assert not (out / "checkpoints" / "diffusion-0000002").exists()  # keep_checkpoints: 2
    assert json.loads((out / "training_config.json").read_text())["diffusion"]["steps"] == 5


def test_eval_of_a_latent_model_reports_the_vae_floor(trained, tmp_path):
    from portrait.evaluation import evaluate

    summary = evaluate(str(trained / "run"), trained / "data", tmp_path / "eval", limit=2, steps=1, joint_samples=0,
                       timing_steps=1)
    floor = summary["depth"]["VAE round trip of the ground truth"]
    assert floor["n"] == 2 and 0 <= floor["rmse"] < 1


def test_fine_tuning_a_pipeline_on_the_hole_task(trained, tmp_path, capsys):
    """The diffusion stage starts from a saved pipeline (no VAE stages, its VAE kept) and learns the hole task."""
    import shutil

    import numpy as np

    from portrait.pipelines.loading import load_pipeline
    from portrait.training.holes import HoleBank, random_holes

    init = trained / "run"
    assert json.loads((init / "model_index.json").read_text())["clean_partial"] is False  # 3 weights
    holes = np.stack([random_holes(32, np.random.default_rng(i)) for i in range(4)])
    bank = HoleBank(holes, np.array(["x"] * 4), np.zeros((4, 5), np.float32)).save(tmp_path / "bank.npz")
    out = tmp_path / "tuned"
    args = ("train", "--config", str(CONFIG), "--output-dir", str(out), "--set", f"data.path={trained / 'data'}",
            "--set", "diffusion.task_mix=[0.25,0.4,0.15,0.2]")
    with pytest.raises(PortraitError, match="does not exist"):
        run_cli(*args, "--set", f"diffusion.hole_masks={tmp_path / 'missing.npz'}")
    capsys.readouterr()
    run_cli(*args, "--set", f"diffusion.init_pipeline={init}", "--set", f"diffusion.hole_masks={bank}")
    printed = capsys.readouterr().out
    assert "VAE kept frozen" in printed and "hole task: HoleMasks(32x32, 4 bank masks (50%)" in printed
    assert not (out / "stage_vae").exists() and (out / "checkpoints" / "diffusion-0000003").is_dir()
    index = json.loads((out / "model_index.json").read_text())
    assert index["clean_partial"] is True and index["clean_known"] is True
    before, after = load_pipeline(init), load_pipeline(out)
    assert all(torch.equal(v, after.vae.state_dict()[k]) for k, v in before.vae.state_dict().items())
    assert any(not torch.equal(v, after.unet.state_dict()[k]) for k, v in before.unet.state_dict().items())
    assert after.holds_clean(False) and not before.holds_clean(False)
    # a run from another pipeline never resumes this one's checkpoints
    other = tmp_path / "other"
    shutil.copytree(init, other, ignore=shutil.ignore_patterns("checkpoints", "stage_*"))
    with pytest.raises(PortraitError, match="comes from a run with init_pipeline"):
        run_cli(*args, "--set", f"diffusion.init_pipeline={other}", "--set", "diffusion.steps=4")


def test_fine_tuning_a_pipeline_with_its_decoder(trained, tmp_path, capsys):
    """``--stage decoder --stage diffusion`` fine-tunes the pipeline's decoder (its encoder, so the latent space,
    kept), then the diffusion stage on that VAE; a later diffusion-only resume keeps the fine-tuned decoder."""
    from portrait.pipelines.loading import load_pipeline

    init, out = trained / "run", tmp_path / "tuned"
    args = ("train", "--config", str(CONFIG), "--output-dir", str(out), "--set", f"data.path={trained / 'data'}",
            "--set", f"diffusion.init_pipeline={init}")
    with pytest.raises(PortraitError, match="the vae stage does not run"):
        run_cli(*args, "--stage", "vae", "--stage", "diffusion")
    capsys.readouterr()
    run_cli(*args, "--stage", "decoder", "--stage", "diffusion")
    assert "decoder fine-tuned first" in capsys.readouterr().out
    assert (out / "stage_decoder" / "reconstruction.json").is_file()
    before, after = load_pipeline(init), load_pipeline(out)
    vae_before, vae_after = before.vae.state_dict(), after.vae.state_dict()
    assert all(torch.equal(vae_before[k], vae_after[k]) for k in vae_before if k.startswith(("encoder.", "quant_conv.")))
    assert any(not torch.equal(vae_before[k], vae_after[k]) for k in vae_before if k.startswith("decoder."))
    run_cli(*args, "--stage", "diffusion", "--set", "diffusion.steps=5")
    assert "decoder stage already done" in capsys.readouterr().out
    again = load_pipeline(out).vae.state_dict()
    assert all(torch.equal(vae_after[k], again[k]) for k in vae_after)


def test_loader_workers_draw_the_same_run_and_the_loss_log_keeps_every_nth_step(trained, tmp_path):
    """With ``data.workers`` processes drawing the batches (hole masks included) a run is repeatable; ``log_every``
    writes a mean-loss row every that many steps and at the last."""
    from portrait.pipelines.loading import load_pipeline

    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        run_cli("train", "--config", str(CONFIG), "--output-dir", str(out), "--set", f"data.path={trained / 'data'}",
                "--set", f"diffusion.init_pipeline={trained / 'run'}", "--set", "diffusion.task_mix=[0.25,0.4,0.15,0.2]",
                "--set", "data.workers=2", "--set", "log_every=2")
        runs.append(load_pipeline(out).unet.state_dict())
        rows = [r.split(",") for r in (out / "loss.csv").read_text().splitlines()[1:]]
        assert [int(r[1]) for r in rows if r[0] == "diffusion"] == [2, 3]
    assert all(torch.equal(v, runs[1][k]) for k, v in runs[0].items())
    with pytest.raises(PortraitError, match="data.workers"):
        load_config(CONFIG, {"data.workers": -1})
    with pytest.raises(PortraitError, match="log_every"):
        load_config(CONFIG, {"log_every": 0})


def test_the_training_benchmark_times_each_piece_of_a_step(trained):
    from portrait import bench

    args = argparse.Namespace(model=str(trained / "run"), data=str(trained / "data"), batch=2, steps=1, repeats=1, workers=1)
    result = bench.bench_train(args)
    assert result["batch"] == 2 and result["parameters_M"] > 0
    assert set(result["batch_ms"]) == {"drawn by the loop", "from 1 worker", "ratio"}
    assert set(result["ema_ms"]) == {"per tensor", "fused", "ratio"}
    assert all(v > 0 for part in ("batch_ms", "ema_ms") for v in result[part].values())
    assert result["optimisation_step_ms"] > 0
