"""The training command on the tiny config: stages, checkpoints, loading back, resume."""

import argparse
import json
from pathlib import Path

import pytest

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
    for mix in ([1, 1], [1, -1, 0], [0, 0, 0]):
        with pytest.raises(PortraitError, match="task_mix"):
            load_config(CONFIG, {"diffusion.task_mix": mix})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    run_cli("train", "--config", str(CONFIG), "--output-dir", str(root / "run"), "--set", f"data.path={root / 'data'}")
    return root


def test_three_steps_write_a_checkpoint_that_loads(trained):
    import torch

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
