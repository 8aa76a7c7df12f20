"""The model subcommands of ``python -m portrait`` on a tiny saved model."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from portrait.__main__ import build_parser, main
from portrait.depth import png16_to_depth
from tests.conftest import random_image, square_depth


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


def check_depth_files(out, prefix=""):
    depth = np.load(out / f"{prefix}depth.npy")
    assert depth.dtype == np.float32 and depth.shape == (32, 32)
    png = np.asarray(Image.open(out / f"{prefix}depth.png"))
    assert png.dtype == np.uint16
    np.testing.assert_array_equal(png == 0, np.isnan(depth))
    back = png16_to_depth(png)
    valid = np.isfinite(depth)
    if valid.sum() > 1:
        lo, hi = depth[valid].min(), depth[valid].max()
        np.testing.assert_allclose(back[valid], (depth[valid] - lo) / max(hi - lo, 1e-12), atol=1e-4)
    assert Image.open(out / f"{prefix}depth_color.png").mode == "RGB"
    assert (out / f"{prefix}mesh.glb").stat().st_size > 0 and (out / f"{prefix}mesh.ply").exists()


def test_depth_command_writes_every_file(tiny_model_dir, astronaut, tmp_path):
    out = tmp_path / "depth"
    assert main(["depth", str(astronaut), "--model", str(tiny_model_dir), "--out", str(out), "--steps", "2",
                 "--ensemble", "2"]) == 0
    check_depth_files(out, "crop_")  # the aligned crop's files
    assert Image.open(out / "crop_rgb.png").size == (32, 32)
    assert Image.open(out / "composite.png").size == (512, 512)  # over the photo at its resolution
    assert np.load(out / "crop_uncertainty.npy").shape == (32, 32)

    # the depth in the photo's own pixels, and the crop -> photo transform that links the two
    depth = np.load(out / "depth.npy")
    assert depth.dtype == np.float32 and depth.shape == (512, 512) and np.isfinite(depth).sum() > 1000
    png = np.asarray(Image.open(out / "depth.png"))
    assert png.dtype == np.uint16 and png.shape == depth.shape
    np.testing.assert_array_equal(png == 0, np.isnan(depth))
    alignment = json.loads((out / "alignment.json").read_text())
    assert alignment["crop_size"] == [32, 32] and alignment["photo_size"] == [512, 512]
    assert "photo_xy = A @ crop_xy + t" in alignment["usage"]
    m = np.array(alignment["crop_to_photo"])
    crop = np.load(out / "crop_depth.npy")
    y, x = np.mgrid[0:32, 0:32] + 0.5  # crop pixel centres, carried into the photo as the usage says
    at = np.stack([x, y], -1)[np.isfinite(crop)] @ m[:, :2].T + m[:, 2]
    landed = depth[at[:, 1].astype(int).clip(0, 511), at[:, 0].astype(int).clip(0, 511)]
    assert np.isfinite(landed).mean() > 0.9  # the crop's head lands on the photo's


def test_generate_command_writes_one_folder_per_portrait(tiny_model_dir, astronaut, tmp_path):
    out = tmp_path / "gen"
    assert main(["generate", str(astronaut), "--model", str(tiny_model_dir), "--out", str(out), "--steps", "2",
                 "--num", "2", "--seed", "3", "--source", "model"]) == 0
    for sub in ("000", "001"):
        check_depth_files(out / sub)
    a = np.asarray(Image.open(out / "000" / "rgb.png"))
    b = np.asarray(Image.open(out / "001" / "rgb.png"))
    assert not np.array_equal(a, b)


def test_generate_command_from_the_photo(tiny_model_dir, astronaut, tmp_path, capsys):
    out = tmp_path / "moved"
    assert main(["generate", str(astronaut), "--model", str(tiny_model_dir), "--out", str(out), "--steps", "2",
                 "--num", "2", "--seed", "3"]) == 0  # --source photo is the default
    a, b = (np.asarray(Image.open(out / sub / "composite.png")) for sub in ("000", "001"))
    assert a.shape == (512, 512, 3) and not np.array_equal(a, b)
    for sub in ("000", "001"):
        assert np.load(out / sub / "depth.npy").shape == Image.open(out / sub / "rgb.png").size[::-1]
        assert (out / sub / "mesh.glb").stat().st_size > 0
    assert "yaw (turn)" in capsys.readouterr().out  # says which pose each one got


def test_edit_command_by_pose_and_by_target_depth(tiny_model_dir, astronaut, tmp_path, capsys):
    out = tmp_path / "pose"
    assert main(["edit", str(astronaut), "--model", str(tiny_model_dir), "--out", str(out), "--steps", "2",
                 "--yaw", "20", "--smile", "0.5", "--method", "regenerate"]) == 0
    check_depth_files(out)
    assert (out / "target_depth_color.png").exists()
    assert "re-generated" in capsys.readouterr().out

    out = tmp_path / "warp"  # the default method: the photo moved in 3-D, at the output crop's size
    assert main(["edit", str(astronaut), "--model", str(tiny_model_dir), "--out", str(out), "--steps", "2",
                 "--yaw", "20", "--smile", "0.5"]) == 0
    assert "painted by the model" in capsys.readouterr().out
    assert Image.open(out / "rgb.png").size == (512, 512)
    assert np.load(out / "depth.npy").shape == (512, 512)
    assert Image.open(out / "composite.png").size == (512, 512)
    for name in ("depth.png", "depth_color.png", "mesh.glb", "mesh.ply", "mesh.obj"):
        assert (out / name).exists(), name
    assert not (out / "target_depth_color.png").exists()  # the depth the warp followed is the depth itself

    crop = tmp_path / "crop.png"
    random_image(64).save(crop)
    np.save(tmp_path / "target.npy", square_depth(64))
    out = tmp_path / "target"
    assert main(["edit", str(crop), "--no-align", "--target-depth", str(tmp_path / "target.npy"), "--model",
                 str(tiny_model_dir), "--out", str(out), "--steps", "2", "--strength", "1"]) == 0
    held = np.isfinite(square_depth(32))
    assert np.isfinite(np.load(out / "depth.npy")[held]).all()

    # a target depth is followed by re-generating; warp cannot take one, nor move a face it did not find
    assert main(["edit", str(crop), "--no-align", "--target-depth", str(tmp_path / "target.npy"), "--method",
                 "warp", "--model", str(tiny_model_dir), "--out", str(out)]) == 2
    assert "--method regenerate" in capsys.readouterr().err
    assert main(["edit", str(crop), "--no-align", "--yaw", "10", "--model", str(tiny_model_dir), "--out",
                 str(out)]) == 2
    assert "--no-align" in capsys.readouterr().err


@pytest.mark.parametrize(
    "make_input,message",
    [
        (lambda p: p.write_text("not an image"), "image"),
        (lambda p: Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(p, format="PNG"), "face"),
    ],
)
def test_bad_inputs_exit_2_with_a_message_and_no_traceback(tiny_model_dir, tmp_path, make_input, message):
    bad = tmp_path / "bad.png"
    make_input(bad)
    run = subprocess.run(
        [sys.executable, "-m", "portrait", "depth", str(bad), "--model", str(tiny_model_dir), "--out",
         str(tmp_path / "out"), "--steps", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and message in last.lower()
    assert "Traceback" not in run.stderr


def test_missing_model_is_a_clear_error(tmp_path, astronaut, capsys):
    assert main(["depth", str(astronaut), "--model", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["depth", "--steps", "0"], "argument --steps: must be between 1 and 50, got 0"),
        (["depth", "--ensemble", "-1"], "argument --ensemble: must be between 1 and 8, got -1"),
        (["depth", "--seed", "-5"], "argument --seed: must be between 0 and 2147483647, got -5"),
        (["depth", "--steps", "2.5"], "argument --steps: must be a whole number between 1 and 50, got '2.5'"),
        (["generate", "--num", "0"], "argument --num: must be between 1 and 4, got 0"),
        (["generate", "--guidance", "99"], "argument --guidance: must be between 1 and 5, got 99"),
        (["edit", "--strength", "2"], "argument --strength: must be between 0.1 and 1, got 2"),
        (["edit", "--yaw", "90"], "argument --yaw: must be between -45 and 45, got 90"),
        (["edit", "--smile", "nan"], "argument --smile: must be between -1 and 1, got nan"),
    ],
)
def test_numbers_out_of_range_are_refused_while_parsing(argv, message, tmp_path, capsys, monkeypatch):
    import portrait.cli

    def no_model(args):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(portrait.cli, "_studio", no_model)
    command, *flags = argv
    with pytest.raises(SystemExit) as exit_info:
        main([command, str(tmp_path / "x.jpg"), "--out", str(tmp_path / "o"), *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"python -m portrait {command}: error: {message}"
    assert err.count("error:") == 1 and "Traceback" not in err


def test_number_flags_take_their_ranges_from_the_app_settings():
    from portrait.demo import SETTINGS

    top = {name: f"{limits.maximum:.10g}" for name, limits in SETTINGS.items()}
    args = build_parser().parse_args(["depth", "x.jpg", "--out", "o", "--steps", top["depth_steps"],
                                      "--ensemble", top["ensemble_size"], "--seed", top["seed"]])
    assert (args.steps, args.ensemble, args.seed) == (50, 8, 2**31 - 1)
    args = build_parser().parse_args(["edit", "x.jpg", "--out", "o", "--strength", "0.1", "--guidance",
                                      top["guidance"], "--yaw", "-45"])
    assert (args.strength, args.guidance, args.yaw) == (0.1, 5.0, -45.0)
