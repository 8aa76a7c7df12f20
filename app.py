"""Portrait Depth Studio, the web app: layout and wiring only (the handlers are in ``portrait/demo.py``).

    python app.py [--model FOLDER_OR_HUB_ID] [--host 127.0.0.1] [--port 7860] [--share]

The same settings come from ``PORTRAIT_MODEL``, ``GRADIO_SERVER_NAME`` and ``GRADIO_SERVER_PORT``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import os
import signal

import gradio as gr

from portrait.demo import (
    ANIMATION_EXAMPLE,
    ANIMATION_OUTPUTS,
    EDIT_METHODS,
    EXAMPLES,
    GENERATE_SOURCES,
    SETTINGS,
    VARIATION_RANGES,
    StudioDemo,
    describe_model,
    load_studio,
    model_fingerprint,
    warm_up,
)
from portrait.errors import PortraitError
from portrait.face.controls import CONTROL_SPECS

try:  # on Hugging Face Spaces (ZeroGPU) each job runs on a GPU lent for the call, for at most `seconds`
    from spaces import GPU

    def gpu(fn, seconds: int = 60):
        return GPU(duration=seconds)(fn)
except ImportError:

    def gpu(fn, seconds: int = 60):
        return fn


MAX_FILE_SIZE = "25mb"
# the 3D viewers open at a three-quarter view, 30 degrees to the side and 10 above (alpha, beta in degrees; radius:
# the viewer's own framing); face-on (90, 90) a depth mesh looks like a flat photo
MESH_VIEW = (120, 80, None)
# an animation renders its frames on the CPU (about 0.5 s each here); the GPU paints its background once
ANIMATION_GPU_SECONDS = 300
INTRO = (
    "One diffusion model generates a portrait's RGB **and depth** together. The same model estimates a "
    "photo's facial depth, and fills in what a photo never showed when its person is moved in 3-D to a new pose "
    "or expression. A driving video's head motion and expressions animate the photo the same way."
)
METHOD_INFO = (
    "Move in 3-D: the photo's own pixels are turned and deformed with the head's depth, and the model paints only "
    "what the photo never showed (the far side of a turned face, the inside of an opened mouth); the person stays "
    "themselves. Re-generate: the model redraws the whole face to the new face shape; with a small model it "
    "loses the person's likeness."
)
ANIMATION_INFO = (
    "The driving video: one face seen from the front, starting from a neutral expression (its head motion and "
    "expressions are taken relative to its first frame); a phone clip or a webcam recording will do. Only its "
    f"first seconds are animated, at most {SETTINGS['animation_seconds'].maximum:g} s: the rest is cut."
)


def sources_note() -> str:
    """Markdown under the generation button: what each source gives."""
    ranges = ", ".join(f"{spec.label.split(' (')[0].lower()} {lo:g} to {hi:g}{spec.unit and ' ' + spec.unit}"
                       for spec in CONTROL_SPECS if spec.name in VARIATION_RANGES
                       for lo, hi in [VARIATION_RANGES[spec.name]])
    return (f"**{GENERATE_SOURCES['photo']}:** the photo itself turned and re-posed to random poses and expressions "
            f"({ranges}); the person stays themselves and the model paints only what the photo never showed. "
            f"**{GENERATE_SOURCES['model']}:** wholly new portraits drawn by the model, guided by the reference's "
            "identity; with a small model they show the model's own look more than the person.")


def photo_input(label: str, elem_id: str) -> gr.Image:
    """An image upload handed to the handlers as its file path, unread: the package's loader checks it, so a
    broken or huge file gets the package's clear message (Gradio's own preprocessing would fail decoding it)."""
    image = gr.Image(label=label, type="filepath", image_mode=None, height=320, elem_id=elem_id)
    decode = image.preprocess
    image.preprocess = lambda payload: payload.path if payload is not None and payload.path else decode(payload)
    return image


def event(handler, unit: str = "denoising", gpu_seconds: int = 60):
    """``handler`` as a Gradio function: PortraitError -> gr.Error, its ``progress(step, total)`` -> the progress
    bar, described by ``unit``; on ZeroGPU a GPU for ``gpu_seconds`` at most."""
    signature = inspect.signature(handler)  # kept, so the API shows the handler's parameter names
    with_progress = "progress" in signature.parameters

    @functools.wraps(handler)
    def run(*args):
        try:
            if not with_progress:
                return handler(*args)
            *inputs, bar = args
            return handler(*inputs, progress=lambda step, total: bar((step, total), desc=unit))
        except PortraitError as err:
            raise gr.Error(str(err)) from err

    params = [p.replace(default=gr.Progress()) if p.name == "progress" else p for p in signature.parameters.values()]
    run.__signature__ = signature.replace(parameters=params)
    return gpu(run, gpu_seconds) if with_progress else run


def setting(name: str, label: str, **kwargs) -> gr.Slider:
    s = SETTINGS[name]
    return gr.Slider(s.minimum, s.maximum, s.default, step=s.step, label=label, **kwargs)


@contextlib.contextmanager
def examples_cache(key: str):
    """Gradio's example cache (``GRADIO_EXAMPLES_CACHE``, read as examples are made) in a folder of its own per
    ``key``, so an app serving another model never shows this one's cached results."""
    base = os.environ.get("GRADIO_EXAMPLES_CACHE", os.path.join(".gradio", "cached_examples"))
    os.environ["GRADIO_EXAMPLES_CACHE"] = os.path.join(base, key)
    try:
        yield
    finally:
        os.environ["GRADIO_EXAMPLES_CACHE"] = base


def build_demo(studio, model: str | None = None) -> gr.Blocks:
    """The page for one loaded studio (``model``: what was loaded, for the header; None = the default)."""
    ui = StudioDemo(studio)
    on_model = dict(concurrency_id="model", concurrency_limit=1)  # one diffusion job at a time, all tabs

    def inputs_first(triggers, inputs, state, check=ui.photo, **kwargs):
        """``check(*inputs, state)`` as an event of its own before a job, which follows with ``.success``: the photo
        found, aligned and meshed (cached for every tab; with an animation the video probed too). It shows no
        progress, so a bad file's message leaves every output showing what it showed."""
        return gr.on(triggers, event(check), [*inputs, state], state, show_progress="hidden",
                     api_visibility="private", **kwargs)

    def photo_or_none(image, state):  # a cleared photo passes: the job then clears the outputs
        return state if image is None else ui.photo(image, state)

    with gr.Blocks(title="Portrait Depth Studio", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(f"# Portrait Depth Studio\n{INTRO}\n\n{describe_model(studio, model)}")

        with gr.Tab("Depth estimation"):
            with gr.Row():
                with gr.Column(scale=1):
                    d_image = photo_input("Photo", "depth-photo")
                    d_run = gr.Button("Estimate depth", variant="primary")
                    d_info = gr.Markdown()
                    with gr.Accordion("Advanced", open=False):
                        d_ensemble = setting("ensemble_size", "Ensemble size",
                                             info="samples merged; their spread is the uncertainty")
                        d_steps = setting("depth_steps", "Denoising steps")
                        d_seed = gr.Number(0, label="Seed", precision=0)
                    d_examples = gr.Column()
                with gr.Column(scale=2):
                    with gr.Row():
                        d_face = gr.Image(label="Aligned face", height=200, format="png")
                        d_depth = gr.Image(label="Depth (bright = near)", height=200, format="png")
                        d_spread = gr.Image(label="Uncertainty (bright = less sure)", height=200, format="png")
                    with gr.Row():
                        d_composite = gr.Image(label="Depth over the photo", height=320, elem_id="depth-overlay")
                        d_mesh = gr.Model3D(label="3D mesh", height=320, camera_position=MESH_VIEW,
                                            elem_id="depth-mesh")
                        d_turntable = gr.Video(label="Turntable", autoplay=True, loop=True, height=320,
                                               elem_id="depth-turntable")
                    d_files = gr.File(label="Downloads (PNG, 16-bit depth PNG, depth .npy, normals PNG, GLB, PLY, OBJ, "
                                      "turntable MP4)", file_count="multiple", height=180)
            with gr.Accordion("Relight", open=True, elem_id="relight"):
                with gr.Row():
                    with gr.Column(scale=1):
                        r_azimuth = setting("light_azimuth", "Light direction (azimuth), deg",
                                            info="- = from your left, + = from your right, 0 = from the camera",
                                            elem_id="light-azimuth")
                        r_elevation = setting("light_elevation", "Light height (elevation), deg",
                                              info="+ = from above", elem_id="light-elevation")
                        r_strength = setting("light_strength", "Strength", info="0 = the photo as it is",
                                             elem_id="light-strength")
                        r_run = gr.Button("Relight")
                        r_info = gr.Markdown(elem_id="relight-info")
                    with gr.Column(scale=2):
                        with gr.Row():
                            r_photo = gr.Image(label="Relit photo", height=320, elem_id="relit-photo")
                            r_normals = gr.Image(label="Normals of the head (from its depth)", height=320,
                                                 format="png", elem_id="depth-normals")
                        r_files = gr.File(label="Downloads (relit photo, relit face, normals PNG)",
                                          file_count="multiple", height=120)
            d_state = gr.State(time_to_live=3600)
            d_outputs = [d_face, d_depth, d_spread, d_composite, d_mesh, d_turntable, d_files, d_info]
            inputs_first([d_run.click, d_image.upload], [d_image], d_state).success(
                event(ui.estimate_depth), [d_image, d_ensemble, d_steps, d_seed, d_state], [*d_outputs, d_state],
                api_name="estimate_depth", show_progress_on=[d_composite, d_mesh], **on_model)
            # relighting reuses the tab's depth estimate (in d_state), estimating one first when there is none
            inputs_first([r_run.click, *(s.release for s in (r_azimuth, r_elevation, r_strength))], [d_image], d_state,
                         trigger_mode="always_last").success(
                event(ui.relight), [d_image, r_azimuth, r_elevation, r_strength, d_state],
                [r_photo, r_normals, r_files, r_info, d_state], api_name="relight", show_progress_on=r_photo, **on_model)

            def depth_example(image, progress=None):  # cached results keep no session state
                return ui.estimate_depth(image, progress=progress)[:-1]

            with d_examples, examples_cache(model_fingerprint(studio)):  # under the inputs, once the outputs exist
                gr.Examples(EXAMPLES, d_image, d_outputs, event(depth_example), cache_examples=True,
                            cache_mode="lazy", elem_id="depth-examples")

        with gr.Tab("Depth-driven editing"):
            with gr.Row():
                with gr.Column(scale=1):
                    e_image = photo_input("Photo", "edit-photo")
                    controls = [gr.Slider(s.minimum, s.maximum, s.default, step=s.step, info=s.help,
                                          label=f"{s.label}, {s.unit}" if s.unit else s.label,
                                          elem_id=f"control-{s.name}")
                                for s in CONTROL_SPECS]
                    with gr.Row():
                        e_reset = gr.Button("Reset")
                        e_run = gr.Button("Re-render", variant="primary")
                    e_info = gr.Markdown()
                    with gr.Accordion("Advanced", open=False):
                        e_method = gr.Radio([(label, value) for value, label in EDIT_METHODS.items()],
                                            value="warp", label="Method", info=METHOD_INFO, elem_id="edit-method")
                        e_strength = setting("strength", "Strength",
                                             info="Re-generate only: 1 = from noise; lower keeps more of the photo")
                        e_steps = setting("edit_steps", "Denoising steps")
                        e_guidance = setting("guidance", "Identity guidance")
                        e_seed = gr.Number(0, label="Seed", precision=0)
                    gr.Examples(EXAMPLES, e_image)
                with gr.Column(scale=2):
                    e_composite = gr.Image(label="Edited photo", height=360, elem_id="edited-photo")
                    with gr.Row():
                        e_face = gr.Image(label="Edited face", height=220, format="png")
                        e_target = gr.Image(label="Depth of the edited head", height=220, format="png")
                        e_mesh = gr.Model3D(label="3D mesh", height=220, camera_position=MESH_VIEW, elem_id="edit-mesh")
                    e_files = gr.File(label="Downloads", file_count="multiple", height=180)
            e_state = gr.State(time_to_live=3600)
            e_outputs = [e_composite, e_face, e_target, e_mesh, e_files, e_info, e_state]
            # an upload lifts the head into 3-D (a depth estimate by the model), so it queues with the model jobs
            inputs_first([e_image.change], [e_image], e_state, photo_or_none).success(
                gpu(event(ui.load_for_edit)), [e_image, e_state], e_outputs, api_visibility="private",
                show_progress_on=e_composite, **on_model)
            e_reset.click(gpu(event(ui.reset)), [e_image, e_state], [*controls, *e_outputs],
                          api_visibility="private", **on_model)
            gr.on([e_run.click, *(c.release for c in controls)], event(ui.edit),
                  [e_image, *controls, e_strength, e_steps, e_guidance, e_seed, e_method, e_state], e_outputs,
                  api_name="edit", trigger_mode="always_last", show_progress_on=e_composite, **on_model)

        with gr.Tab("Joint generation"):
            with gr.Row():
                with gr.Column(scale=1):
                    g_image = photo_input("Reference photo (identity)", "generate-photo")
                    g_count = setting("num_images", "Portraits")
                    g_source = gr.Radio([(label, value) for value, label in GENERATE_SOURCES.items()],
                                        value="photo", label="Source", elem_id="generate-source")
                    g_seed = gr.Number(0, label="Seed", precision=0)
                    g_run = gr.Button("Generate", variant="primary")
                    gr.Markdown(sources_note())
                    g_info = gr.Markdown()
                    with gr.Accordion("Advanced", open=False):
                        g_steps = setting("generate_steps", "Denoising steps")
                        g_guidance = setting("guidance", "Identity guidance")
                    gr.Examples(EXAMPLES, g_image)
                with gr.Column(scale=2):
                    g_gallery = gr.Gallery(label="Portraits and their depth (click one for 3D)", columns=4, format="png",
                                           elem_id="gallery")
                    with gr.Row():
                        g_mesh = gr.Model3D(label="3D mesh", height=300, camera_position=MESH_VIEW,
                                            elem_id="generate-mesh")
                        g_files = gr.File(label="Downloads", file_count="multiple", height=300, elem_id="generate-files")
            g_state, g_results = gr.State(time_to_live=3600), gr.State(time_to_live=3600)
            inputs_first([g_run.click], [g_image], g_state).success(
                event(ui.generate), [g_image, g_count, g_steps, g_guidance, g_seed, g_source, g_state],
                [g_gallery, g_mesh, g_files, g_info, g_results, g_state], api_name="generate",
                show_progress_on=g_gallery, **on_model)

            def pick(results, selected: gr.SelectData):
                return ui.select(results, selected.index)

            g_gallery.select(event(pick), g_results, [g_mesh, g_files], api_visibility="private")

        with gr.Tab("Animation"):
            with gr.Row():
                with gr.Column(scale=1):
                    a_image = photo_input("Photo", "animate-photo")
                    # no mirroring: Gradio would flip webcam recordings with FFmpeg's command line tool
                    a_video = gr.Video(label="Driving video",
                                       sources=["upload", "webcam"], webcam_options=gr.WebcamOptions(mirror=False),
                                       elem_id="animate-driving")
                    a_seconds = setting("animation_seconds", "Seconds animated",
                                        info="the clip's first seconds; the rest is cut")
                    a_output = gr.Radio([(label, value) for value, label in ANIMATION_OUTPUTS.items()],
                                        value="crop", label="Output", elem_id="animate-output")
                    a_run = gr.Button("Animate", variant="primary")
                    gr.Markdown(ANIMATION_INFO)
                    a_info = gr.Markdown(elem_id="animation-info")
                    gr.Examples([ANIMATION_EXAMPLE], [a_image, a_video], elem_id="animate-examples")
                with gr.Column(scale=2):
                    with gr.Row():
                        a_result = gr.Video(label="Animation", autoplay=True, loop=True, height=360,
                                            elem_id="animation")
                        a_depth = gr.Video(label="Depth (bright = near)", autoplay=True, loop=True, height=360,
                                           elem_id="animation-depth")
                    a_preview = gr.Video(label="Driver | animation | depth", autoplay=True, loop=True, height=300,
                                         elem_id="animation-preview")
                    a_files = gr.File(label="Downloads (animation and depth MP4, per-frame depth .npz, preview MP4, "
                                      "motion JSON)", file_count="multiple", elem_id="animation-files")
            a_state = gr.State(time_to_live=3600)
            inputs_first([a_run.click], [a_image, a_video], a_state, ui.animation_inputs).success(
                event(ui.animate, "frames", gpu_seconds=ANIMATION_GPU_SECONDS),
                [a_image, a_video, a_output, a_seconds, a_state], [a_result, a_preview, a_depth, a_files, a_info, a_state],
                api_name="animate", show_progress_on=[a_result, a_depth], **on_model)
    return demo.queue(default_concurrency_limit=1, max_size=32)


def parse_args(argv=None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description="Portrait Depth Studio web app")
    parser.add_argument("--model", default=env("PORTRAIT_MODEL") or None,
                        help="model folder or hub id (default: the embedded default model)")
    parser.add_argument("--host", default=env("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="e.g. 0.0.0.0 to serve the network")
    parser.add_argument("--port", type=int, default=int(env("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", help="also serve through a public gradio.live link")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        studio = load_studio(args.model)
    except PortraitError as err:
        raise SystemExit(f"error: {err}") from None
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl+C: temporary files are removed
    print(f"Loaded {args.model or 'the embedded default model'}; warming up...", flush=True)
    warm_up(studio)
    build_demo(studio, args.model).launch(server_name=args.host, server_port=args.port, share=args.share,
                                          max_file_size=MAX_FILE_SIZE)


if __name__ == "__main__":
    main()
