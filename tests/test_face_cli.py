"""The ``mesh``, ``landmarks`` and ``pose`` subcommands, run in-process through argparse."""

import argparse
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import trimesh  # noqa: E402
from PIL import Image  # noqa: E402

from portrait.face.commands import register  # noqa: E402

from .face_fixtures import astronaut_image, gradient_image  # noqa: E402


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="python -m portrait")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


@pytest.fixture(scope="module")
def astronaut_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("photos") / "astronaut.jpg"
    astronaut_image().resize((320, 320), Image.Resampling.LANCZOS).save(path, quality=95)
    return path


def test_mesh_command(tmp_path, capsys):
    yy, xx = np.mgrid[0:48, 0:64].astype(np.float32) / 48
    depth = (1.0 + 0.3 * (xx - 0.6) ** 2 + 0.3 * (yy - 0.5) ** 2).astype(np.float32)
    depth[:4] = np.nan
    np.save(tmp_path / "d.npy", depth)
    Image.fromarray(np.full((96, 128, 3), 200, np.uint8)).save(tmp_path / "rgb.png")
    assert run("mesh", tmp_path / "d.npy", "--rgb", tmp_path / "rgb.png", "--out", tmp_path / "out") == 0
    names = {"depth.npy", "depth.png", "depth_color.png", "mesh.glb", "mesh.ply", "mesh.obj"}
    assert names <= {p.name for p in (tmp_path / "out").iterdir()}
    assert "mesh.glb" in capsys.readouterr().out
    glb = trimesh.load(tmp_path / "out" / "mesh.glb", force="mesh")
    assert glb.visual.kind == "vertex" and (glb.visual.vertex_colors[:, :3] == 200).all()
    # the 16-bit PNG it wrote is read back as depth too
    assert run("mesh", tmp_path / "out" / "depth.png", "--out", tmp_path / "again") == 0


def test_landmarks_command(astronaut_file, tmp_path):
    out = tmp_path / "lm"
    assert run("landmarks", astronaut_file, "--out", out, "--size", "128") == 0
    assert Image.open(out / "crop.png").size == (128, 128)
    assert Image.open(out / "landmarks.png").size == (128, 128)
    assert np.load(out / "landmarks.npy").shape == (478, 3)
    mesh = trimesh.load(out / "face_mesh.ply", process=False)
    assert len(mesh.vertices) == 478 and len(mesh.faces) == 898
    assert (out / "face_mesh.obj").is_file() and (out / "face_mesh.glb").is_file()


def test_pose_command(astronaut_file, tmp_path):
    out = tmp_path / "pose"
    assert (
        run(
            "pose",
            astronaut_file,
            "--yaw",
            "20",
            "--smile",
            "0.5",
            "--jaw-open",
            "0.2",
            "--size",
            "96",
            "--out",
            out,
        )
        == 0
    )
    depth = np.load(out / "target_depth.npy")
    mask = np.asarray(Image.open(out / "target_mask.png")) > 0
    assert depth.shape == (96, 96) and np.isfinite(depth[mask]).all() and np.isnan(depth[~mask]).all()
    preview, original = (
        np.asarray(Image.open(out / "preview.png")),
        np.asarray(Image.open(out / "preview_original.png")),
    )
    assert preview.shape == (96, 96, 3) and np.abs(preview.astype(int) - original).mean() > 3
    assert np.asarray(Image.open(out / "target_depth.png")).dtype == np.uint16
    assert (out / "target_mesh.glb").is_file()


@pytest.mark.parametrize(
    "case, message",
    [("no_face", "no face"), ("corrupt", "corrupt"), ("tiny", "too small"),
     ("range", "argument --yaw: must be between -45 and 45, got 120")],
)
def test_user_errors_print_a_message_and_exit_2(tmp_path, capsys, astronaut_file, case, message):
    image = tmp_path / "input.png"
    extra = []
    if case == "no_face":
        gradient_image().save(image)
    elif case == "corrupt":
        image.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    elif case == "tiny":
        Image.new("RGB", (1, 1)).save(image)
    else:
        image, extra = astronaut_file, ["--yaw", "120"]
    with pytest.raises(SystemExit) as exit_info:
        run("pose", image, "--out", tmp_path / "o", *extra)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err  # a range is checked by the parser: its usage, then the one-line error
    last = err.strip().splitlines()[-1]
    assert "error: " in last and message in last and "Traceback" not in err
    assert err.startswith("usage: " if case == "range" else "error: ")
