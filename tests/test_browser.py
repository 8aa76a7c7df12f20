"""End to end in a real browser: Debian's Chromium driven by playwright against the app on the embedded default.

Opens the page, uploads the astronaut example, waits until the 3D viewer shows the depth mesh and the turntable
plays, moves the light's slider in the relight panel and waits for the relit photo, moves the
yaw slider and then the smile slider in the editing tab and waits for each new image, generates portraits
(the photo moved to new poses) and picks one for 3D; in a second page, animates the photo with a short driving
clip and checks that the browser plays the result.
Screenshots go to the test's tmp folder and are copied to /tmp/app_screens/.
"""

import io
import re
import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from tests.test_app_api import ASTRONAUT, serve_app

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update"]
SCREENS = Path("/tmp/app_screens")
TIMEOUT_MS = 60_000


@pytest.fixture
def page(tmp_path, monkeypatch):
    """The page of the app on the embedded default model, as a user gets it (the screenshots show real edits)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with serve_app(None, tmp_path / "gradio", monkeypatch) as (url, _):
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url)
            yield page
            browser.close()


def screenshot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    SCREENS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SCREENS / name)


def wait_for_mesh(page, selector: str) -> None:
    """Until the viewer's canvas shows something besides its plain background."""
    canvas = page.locator(f"{selector} canvas")
    canvas.wait_for(state="visible")
    for _ in range(120):
        pixels = np.asarray(PIL.Image.open(io.BytesIO(canvas.screenshot())).convert("RGB"), dtype=float)
        if pixels.reshape(-1, 3).std(axis=0).max() > 5.0:
            return
        page.wait_for_timeout(500)
    raise AssertionError(f"the 3D viewer {selector} stayed blank")


def image_src(page, selector: str) -> str | None:
    image = page.locator(f"{selector} img")
    return image.first.get_attribute("src") if image.count() else None


def wait_for_new_image(page, selector: str, before: str | None) -> None:
    page.wait_for_function(
        "([sel, before]) => { const i = document.querySelector(sel + ' img'); return i && i.src !== before; }",
        arg=[selector, before],
    )


def drag_slider(page, name: str, fraction: float, elem_id: str | None = None) -> float:
    """Drag the control's slider (or the slider ``elem_id``) from its middle to ``fraction`` of its width and
    release; its new value."""
    elem_id = elem_id or f"control-{name}"
    slider = page.locator(f"#{elem_id} input[type=range]")
    slider.scroll_into_view_if_needed()
    box = slider.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.5, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * fraction, y, steps=8)
    page.mouse.up()
    return float(page.locator(f"#{elem_id} input[type=number]").input_value())


def links(page, selector: str) -> list[str]:
    return [a.get_attribute("href") for a in page.locator(f"{selector} a").all()]


def test_depth_then_edit_then_generate(page, tmp_path):
    # 1. Depth estimation: an example (computed on first use, then cached), then an upload, which runs it;
    #    each time the depth over the photo changes and the mesh appears in the 3D viewer
    page.get_by_text("Estimate depth").wait_for()
    page.locator("#depth-examples button.gallery-item").nth(1).click()
    page.locator("#depth-overlay img").wait_for()
    wait_for_mesh(page, "#depth-mesh")
    example = image_src(page, "#depth-overlay")
    page.locator("#depth-photo input[type=file]").set_input_files(ASTRONAUT)
    wait_for_new_image(page, "#depth-overlay", example)
    wait_for_mesh(page, "#depth-mesh")
    page.get_by_text("head and neck pixels").wait_for()
    turntable = page.locator("#depth-turntable video")
    turntable.wait_for()
    page.wait_for_function("v => v.readyState >= 2 && v.duration > 0", arg=turntable.element_handle())
    screenshot(page, tmp_path, "01_depth_estimation.png")

    #    relighting: the light moved to the right, then to the left; each release re-shades the photo
    assert drag_slider(page, "azimuth", 0.9, "light-azimuth") > 45
    wait_for_new_image(page, "#relit-photo", None)
    page.get_by_text("Lit from the right").wait_for()
    before = image_src(page, "#relit-photo")
    assert drag_slider(page, "azimuth", 0.1, "light-azimuth") < -45
    wait_for_new_image(page, "#relit-photo", before)
    page.get_by_text("Lit from the left").wait_for()
    page.locator("#depth-normals img").wait_for()
    wait_for_mesh(page, "#depth-mesh")
    screenshot(page, tmp_path, "01_depth_relight.png")

    # 2. Editing: upload (the head is lifted into 3-D), then drag the yaw slider and then the smile slider; on
    #    each release a new edited photo (the photo moved in 3-D, the default method) replaces the old one
    page.get_by_role("tab", name="Depth-driven editing").click()
    page.locator("#edit-photo input[type=file]").set_input_files(ASTRONAUT)
    page.locator("#edited-photo img").wait_for()
    page.get_by_text("lifted into 3-D").wait_for()
    before = image_src(page, "#edited-photo")
    assert drag_slider(page, "yaw", 0.8) > 10
    wait_for_new_image(page, "#edited-photo", before)
    page.get_by_text("Re-rendered to: yaw").wait_for()
    page.get_by_text("painted by the model").wait_for()
    wait_for_mesh(page, "#edit-mesh")
    screenshot(page, tmp_path, "02_editing_yaw.png")
    before = image_src(page, "#edited-photo")
    assert drag_slider(page, "smile", 0.85) > 0.2
    wait_for_new_image(page, "#edited-photo", before)
    page.get_by_text(re.compile(r"Re-rendered to: yaw .*, smile ")).wait_for()
    wait_for_mesh(page, "#edit-mesh")
    screenshot(page, tmp_path, "02_editing_yaw_smile.png")

    # 3. Generation: a gallery of portraits (the photo moved to new poses, the default source) and depths;
    #    clicking the second portrait shows its mesh
    page.get_by_role("tab", name="Joint generation").click()
    page.locator("#generate-photo input[type=file]").set_input_files(ASTRONAUT)
    page.get_by_role("button", name="Generate", exact=True).click()
    page.get_by_text("portrait(s), seed").wait_for()
    page.get_by_text("moved in 3-D to random poses").wait_for()
    wait_for_mesh(page, "#generate-mesh")
    first = links(page, "#generate-files")
    page.locator("#gallery button img").nth(2).click()  # portrait 2 (portraits and depths alternate)
    page.wait_for_function(
        "first => { const a = document.querySelector('#generate-files a'); return a && a.href !== first; }",
        arg=first[0],
    )
    assert len(links(page, "#generate-files")) == len(first)
    screenshot(page, tmp_path, "03_generation.png")

    # 4. A bad file gets the package's message, and what was computed stays on show: the depth over the photo
    #    and the mesh, with no error badge over them
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page.get_by_role("tab", name="Depth estimation").click()
    overlay = image_src(page, "#depth-overlay")
    page.locator("#depth-photo button[aria-label='Remove Image']").first.click()
    page.locator("#depth-photo input[type=file]").set_input_files(str(bad))
    page.get_by_text("not a readable image").first.wait_for()
    page.wait_for_timeout(600)  # the message slides in
    assert image_src(page, "#depth-overlay") == overlay
    for viewer in ("#depth-overlay", "#depth-mesh"):
        assert page.locator(f"{viewer} .error").count() == 0, f"{viewer} shows an error badge"
    wait_for_mesh(page, "#depth-mesh")
    page.screenshot(path=str(tmp_path / "04_bad_file.png"))  # the viewport, with the message on top
    shutil.copy(tmp_path / "04_bad_file.png", SCREENS / "04_bad_file.png")


def test_animation(page, tmp_path):
    from portrait.video import probe
    from tests.test_demo import driving_clip

    clip = driving_clip(tmp_path / "driving.mp4", frames=10, every=3)  # 10 frames of a turn (~0.5 s a frame)
    page.get_by_role("tab", name="Animation").click()
    page.locator("#animate-examples").wait_for()  # the example row: the astronaut and the example clip
    page.locator("#animate-photo input[type=file]").set_input_files(ASTRONAUT)
    page.locator("#animate-driving input[type=file]").set_input_files(clip)
    page.locator("#animate-driving video").wait_for()
    page.get_by_role("button", name="Animate", exact=True).click()
    page.get_by_text("10 frames at 25 fps").wait_for(timeout=3 * TIMEOUT_MS)
    video = page.locator("#animation video")
    video.wait_for()
    # the browser decodes it and plays it (autoplay, looped)
    page.wait_for_function("v => v.readyState >= 2 && v.duration > 0", arg=video.element_handle())
    state = video.evaluate("v => ({duration: v.duration, loop: v.loop, error: v.error, src: v.currentSrc})")
    start = video.evaluate("v => v.currentTime")
    page.wait_for_function("([v, t]) => !v.paused && v.currentTime !== t", arg=[video.element_handle(), start])
    assert state["error"] is None and state["loop"]
    assert abs(state["duration"] * 25 - 10) < 1.5  # 10 frames at 25 fps
    served = tmp_path / "served.mp4"  # the very file the page got
    served.write_bytes(page.request.get(state["src"]).body())
    assert (probe(served).frames, probe(served).fps) == (10, 25.0)
    for selector in ("#animation-depth", "#animation-preview"):
        page.wait_for_function("v => v.readyState >= 2 && v.duration > 0",
                               arg=page.locator(f"{selector} video").element_handle())
    assert len(links(page, "#animation-files")) == 5
    page.wait_for_timeout(500)  # a frame into the loop
    screenshot(page, tmp_path, "animation.png")

    # a driving video that is no video gets the package's message, and the animation stays on show
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    page.locator("#animate-driving button[aria-label='Clear']").first.click()
    page.locator("#animate-driving input[type=file]").set_input_files(str(bad))
    page.get_by_role("button", name="Animate", exact=True).click()
    page.get_by_text("is not a video that can be read").first.wait_for()
    assert video.evaluate("v => v.currentSrc") == state["src"]
    for viewer in ("#animation", "#animation-depth"):
        assert page.locator(f"{viewer} .error").count() == 0, f"{viewer} shows an error badge"
