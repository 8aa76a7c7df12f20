"""app.py: its arguments and wiring, then the app served on localhost with a tiny saved model and called
through ``gradio_client`` like an API user (those tests are marked slow)."""

import contextlib
import socket
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

ROOT = Path(__file__).resolve().parent.parent
ASTRONAUT = str(ROOT / "examples" / "astronaut.png")



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_app(model_dir, cache_dir: Path, monkeypatch):
    """``app.build_demo`` on the model in ``model_dir``, launched as ``main()`` does, on a free local port.

    Gradio's upload cache and the example cache go to ``cache_dir``; yields ``(url, blocks)``.
    """
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache_dir / "uploads"))
    monkeypatch.setenv("GRADIO_EXAMPLES_CACHE", str(cache_dir / "examples"))
    import app
    from portrait.demo import load_studio

    model = None if model_dir is None else str(model_dir)  # None: the embedded default
    blocks = app.build_demo(load_studio(model), model)
    _, url, _ = blocks.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                              quiet=True, max_file_size=app.MAX_FILE_SIZE)
    try:
        yield url, blocks
    finally:
        blocks.close()


# --- without a server -------------------------------------------------------------------------------------


def test_arguments_come_from_flags_or_the_environment(monkeypatch):
    import app

    for name in ("PORTRAIT_MODEL", "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT"):
        monkeypatch.delenv(name, raising=False)
    args = app.parse_args([])
    assert (args.model, args.host, args.port, args.share) == (None, "127.0.0.1", 7860, False)
    monkeypatch.setenv("PORTRAIT_MODEL", "some/model")
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7000")
    args = app.parse_args([])
    assert (args.model, args.host, args.port) == ("some/model", "0.0.0.0", 7000)
    args = app.parse_args(["--model", "other", "--port", "7001", "--share"])
    assert (args.model, args.port, args.share) == ("other", 7001, True)


def test_main_without_a_model_says_what_is_missing(monkeypatch, tmp_path):
    import app
    from portrait.pipelines import loading

    monkeypatch.setattr(loading, "DEFAULT_MODEL_DIR", tmp_path / "default")
    with pytest.raises(SystemExit, match="no default model is installed"):
        app.main([])
    with pytest.raises(SystemExit, match="does not exist"):
        app.main(["--model", str(tmp_path / "missing")])


def test_build_demo_names_the_endpoints(pixel_pipe, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_EXAMPLES_CACHE", str(tmp_path))
    import app
    from portrait.studio import Studio

    blocks = app.build_demo(Studio(pixel_pipe))
    public = {fn.api_name: fn for fn in blocks.fns.values() if fn.api_visibility == "public"}
    assert {"estimate_depth", "relight", "edit", "generate", "animate"} <= set(public)
    # the method and source choices come right before the session state, after the older parameters
    method, source = public["edit"].inputs[-2], public["generate"].inputs[-2]
    assert [v for _, v in method.choices] == ["warp", "regenerate"] and method.value == "warp"
    assert [v for _, v in source.choices] == ["photo", "model"] and source.value == "photo"
    # the driving video: uploaded or recorded, never mirrored (Gradio would need FFmpeg's command line tool)
    video = public["animate"].inputs[1]
    assert video.sources == ["upload", "webcam"] and not video.webcam_options.mirror and video.include_audio
    assert video.format is None
    assert {fn.concurrency_id for fn in public.values()} == {"model"}  # one diffusion job at a time, all tabs
    assert not (ROOT / "app.pyi").exists()  # no component subclass: Gradio would write a stub next to app.py
    # every 3D viewer opens at a three-quarter view (face-on, a depth mesh looks like a flat photo)
    viewers = [block for block in blocks.blocks.values() if block.get_block_name() == "model3d"]
    assert len(viewers) == 3 and all(tuple(v.camera_position) == app.MESH_VIEW for v in viewers)


# --- served -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        with serve_app(tiny_model_dir, tmp_path_factory.mktemp("gradio"), monkeypatch) as served:
            yield served


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    from gradio_client import Client

    return Client(server[0], verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    from tests.test_demo import bad_inputs

    return bad_inputs(tmp_path_factory.mktemp("bad"))


def call(client, endpoint: str, image, **kwargs):
    from gradio_client import handle_file

    fast = {"/estimate_depth": dict(ensemble_size=1, steps=2), "/edit": dict(steps=2),
            "/generate": dict(num_images=1, steps=2), "/relight": {}}[endpoint]
    return client.predict(handle_file(image) if image else None, **{**fast, **kwargs}, api_name=endpoint)


def assert_served(result) -> None:
    """A good request's answer: the files it offers for download are on disk, and a sentence for the user."""
    *_, files, info = result
    assert files and all(Path(f).is_file() and Path(f).stat().st_size > 0 for f in files)
    assert isinstance(info, str) and info.strip()


# --- the three endpoints ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_api_names_and_parameters(client):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    params = {name: [p["parameter_name"] for p in info["parameters"]] for name, info in endpoints.items()}
    assert params["/estimate_depth"] == ["image", "ensemble_size", "steps", "seed"]
    assert params["/relight"] == ["image", "azimuth", "elevation", "strength"]
    assert params["/edit"] == ["image", "yaw", "pitch", "roll", "smile", "jaw_open", "brow_raise", "eye_close",
                               "strength", "steps", "guidance", "seed", "method"]
    assert params["/generate"] == ["image", "num_images", "steps", "guidance", "seed", "source"]
    assert params["/animate"] == ["image", "video", "output", "max_seconds"]


@pytest.mark.slow
def test_estimate_depth(client):
    face, depth, uncertainty, composite, mesh, turntable, files, info = call(client, "/estimate_depth", ASTRONAUT)
    assert PIL.Image.open(composite).size == PIL.Image.open(ASTRONAUT).size
    assert mesh.endswith(".glb") and Path(mesh).stat().st_size > 0
    assert Path(turntable).suffix == ".mp4" and Path(turntable).stat().st_size > 0
    names = {Path(f).name for f in files}
    assert {"crop_rgb.png", "crop_depth.png", "crop_mesh.glb", "crop_mesh.ply", "depth.png", "alignment.json"} <= names
    depth_png = PIL.Image.open(next(f for f in files if Path(f).name == "depth.png"))
    assert np.asarray(depth_png).dtype == np.uint16 and depth_png.size == PIL.Image.open(ASTRONAUT).size
    assert "head and neck pixels" in info


@pytest.mark.slow
def test_relight(client):
    from gradio_client.exceptions import AppError

    photo, normals, files, info = call(client, "/relight", ASTRONAUT, azimuth=-60, elevation=20, strength=0.8)
    assert PIL.Image.open(photo).size == PIL.Image.open(ASTRONAUT).size
    assert {Path(f).name for f in files} == {"relit.png", "relit_face.png", "normals.png"}
    assert "Lit from the left (60 deg), 20 deg above" in info
    _, _, files, _ = call(client, "/relight", ASTRONAUT, strength=0)  # the photo itself, bit for bit
    relit = next(f for f in files if Path(f).name == "relit.png")
    assert np.array_equal(np.asarray(PIL.Image.open(relit)), np.asarray(PIL.Image.open(ASTRONAUT).convert("RGB")))
    with pytest.raises(AppError):  # refused by the slider itself
        call(client, "/relight", ASTRONAUT, azimuth=120)


@pytest.mark.slow
@pytest.mark.parametrize("method", [None, "warp", "regenerate"])  # None: an older caller, the default (warp)
def test_edit_by_keyword(client, method):
    extra = {} if method is None else {"method": method}
    composite, face, target, mesh, files, info = call(client, "/edit", ASTRONAUT, yaw=20, smile=0.5, **extra)
    assert PIL.Image.open(composite).size == PIL.Image.open(ASTRONAUT).size
    assert Path(mesh).suffix == ".glb" and "yaw (turn) 20 deg" in info
    assert ("re-generated by the model" in info) == (method == "regenerate")
    assert {"rgb.png", "depth.png", "mesh.glb", "mesh.ply"} <= {Path(f).name for f in files}


@pytest.mark.slow
def test_edit_with_an_unknown_method_is_refused(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError):  # refused by the radio itself, or by the handler naming the choices
        call(client, "/edit", ASTRONAUT, yaw=20, method="morph")


@pytest.mark.slow
def test_generate_from_the_model(client):
    gallery, mesh, files, info = call(client, "/generate", ASTRONAUT, num_images=2, seed=1, source="model")
    assert [item["caption"] for item in gallery] == ["portrait 1", "depth 1", "portrait 2", "depth 2"]
    assert Path(mesh).suffix == ".glb" and {"rgb.png", "depth.png", "mesh.ply"} <= {Path(f).name for f in files}
    assert "sampled by the model" in info


@pytest.mark.slow
@pytest.mark.parametrize("source", [None, "photo"])  # None: an older caller, the default (the photo moved)
def test_generate_from_the_photo(client, source):
    extra = {} if source is None else {"source": source}
    gallery, mesh, files, info = call(client, "/generate", ASTRONAUT, num_images=2, seed=1, **extra)
    captions = [item["caption"] for item in gallery]
    assert captions[0].startswith("portrait 1: ") and captions[1::2] == ["depth 1", "depth 2"]
    assert "moved in 3-D" in info and "composite.png" in {Path(f).name for f in files}


@pytest.mark.slow
def test_animate_then_bad_videos_then_animate_again(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from portrait.video import probe
    from tests.test_demo import bad_videos, driving_clip

    def animate(video, **kwargs):
        return client.predict(handle_file(ASTRONAUT), handle_file(video), **kwargs, api_name="/animate")

    clip = driving_clip(tmp_path / "clip.mp4")
    video, preview, depth, files, info = animate(clip, output="crop")
    for path in (video, preview, depth):
        assert (probe(path).frames, probe(path).fps) == (6, 25.0), path
    assert [Path(f).name for f in files] == ["animation.mp4", "depth.mp4", "depth.npz", "preview.mp4", "motion.json"]
    assert "6 frames at 25 fps" in info
    for name, (path, _, message) in bad_videos(tmp_path).items():
        with pytest.raises(AppError, match=message) as caught:
            animate(path)
        assert "/tmp" not in str(caught.value) and "Traceback" not in str(caught.value), name
    with pytest.raises(AppError, match="Upload a driving video"):
        client.predict(handle_file(ASTRONAUT), None, api_name="/animate")
    video, *_, info = animate(clip, output="photo", max_seconds=1)  # the next good request still succeeds
    assert probe(video).frames == 6 and probe(video).size == PIL.Image.open(ASTRONAUT).size


# --- bad input, then a good request -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("endpoint", ["/estimate_depth", "/edit", "/generate"])
def test_bad_input_gives_a_clear_error_and_the_app_recovers(client, bad_files, endpoint):
    from gradio_client.exceptions import AppError

    expected = {"text": "not a readable image", "no face": "no face was found", "oversized": "too large"}
    for name, (path, _) in bad_files.items():
        with pytest.raises(AppError, match=expected[name]) as caught:
            call(client, endpoint, path)
        assert "/tmp" not in str(caught.value) and "Traceback" not in str(caught.value)
    with pytest.raises(AppError, match="Upload a photo"):
        call(client, endpoint, None)
    with pytest.raises(AppError, match="less than minimum value"):  # checked by the slider itself
        call(client, endpoint, ASTRONAUT, steps=0)
    assert_served(call(client, endpoint, ASTRONAUT))  # the next good request still succeeds


@pytest.mark.slow
def test_files_over_the_size_limit_are_refused(client, tmp_path):
    big = tmp_path / "big.png"
    with open(big, "wb") as f:  # just over MAX_FILE_SIZE (25 MB), written sparsely
        f.truncate(26 * 1024 * 1024)
    with pytest.raises(Exception, match="(?i)size|large|413"):
        call(client, "/estimate_depth", str(big))
    assert_served(call(client, "/estimate_depth", ASTRONAUT))



def test_the_example_cache_is_keyed_by_the_model(pixel_pipe, tmp_path, monkeypatch):
    """An app serving another model never shows this one's cached example results."""
    import gradio as gr

    import app
    from portrait.demo import model_fingerprint
    from portrait.studio import Studio
    from tests.conftest import tiny_pipeline

    ours, other = model_fingerprint(Studio(pixel_pipe)), model_fingerprint(Studio(tiny_pipeline(seed=1)))
    assert ours == model_fingerprint(Studio(pixel_pipe)) and ours != other
    monkeypatch.setenv("GRADIO_EXAMPLES_CACHE", str(tmp_path))
    with gr.Blocks():
        image, text = gr.Image(), gr.Textbox()
        with app.examples_cache(ours):
            examples = gr.Examples([app.EXAMPLES[0]], image, text, lambda x: "", cache_examples=True,
                                   cache_mode="lazy")
    assert examples.cached_folder.parent == tmp_path / ours
    assert Path(app.os.environ["GRADIO_EXAMPLES_CACHE"]) == tmp_path  # restored


def test_a_job_outside_the_queue_waits_for_the_running_one(pixel_pipe):
    """Gradio runs cached examples outside its queue: the studio's lock makes them wait for a user's job."""
    import threading

    from portrait.studio import Studio

    studio = Studio(pixel_pipe)
    photo = studio.prepare(ASTRONAUT, align=False)
    done = threading.Event()
    with studio.lock:  # a user's job is running
        worker = threading.Thread(target=lambda: (studio.estimate_depth(photo, ensemble_size=1, steps=1), done.set()))
        worker.start()
        assert not done.wait(1.0)
    worker.join(60)
    assert done.is_set()
