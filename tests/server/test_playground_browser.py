"""The playground in headless Chromium (Debian package) driven by Playwright, against a tiny model.

Skipped when Playwright or /usr/bin/chromium is missing. The screenshot lands in
``test-artifacts/playground.png`` under the repository root.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from server_helpers import TINY_KEY

pytestmark = [pytest.mark.server, pytest.mark.diffusers]

CHROMIUM = os.environ.get("ABSTRACTVISION_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def open_playground(browser, server, errors: list[str]):
    """Load the page, type the API key, wait for the model list; console errors go to ``errors``."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(server.url + "/")
    page.fill("#api-key", TINY_KEY)
    page.dispatch_event("#api-key", "change")
    expect(page.locator("#model option")).to_have_count(2)
    errors.clear()  # the first /v1/models call, before the key was typed, was a 401
    return page


def test_playground_generates_an_image_with_live_progress(browser, tiny_server):
    errors: list[str] = []
    page = open_playground(browser, tiny_server, errors)
    assert page.input_value("#model") == "tiny-sd"
    assert page.input_value("#task") == "text_to_image"
    page.fill("#prompt", "a watercolor lighthouse")
    page.fill("#steps", "4")
    page.fill("#seed", "42")
    page.click("#generate")
    page.wait_for_selector("#results img", timeout=120_000)
    expect(page.locator("#status")).to_have_text(re.compile("^completed"))
    steps = page.locator("#events li").all_inner_texts()
    assert any(re.match(r"\d+\. step 4/4", text) for text in steps), steps
    assert page.eval_on_selector("#progress", "el => el.value") == 1
    # the picker names each served model with whether it is loaded, and shows its tasks
    expect(page.locator("#model option[value='tiny-sd']")).to_have_text("tiny-sd · loaded")
    expect(page.locator("#model-info")).to_contain_text("tiny-sd · diffusers · loaded · runs text to image")
    wan = page.locator("#model option[value='tiny-wan']").inner_text()
    assert wan in ("tiny-wan · loaded", "tiny-wan · not loaded"), wan
    natural = page.eval_on_selector("#results img", "img => [img.naturalWidth, img.naturalHeight]")
    assert natural == [64, 64]
    page.wait_for_selector("#artifacts img")
    assert page.get_attribute("#results .download", "download").endswith(".png")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)
    assert not errors, errors
    page.close()
    assert (ARTIFACTS / "playground.png").stat().st_size > 10_000


def test_playground_cancel(browser, tiny_server):
    errors: list[str] = []
    page = open_playground(browser, tiny_server, errors)
    page.fill("#prompt", "a very long generation")
    page.fill("#steps", "5000")
    page.click("#generate")
    expect(page.locator("#status")).to_have_text(re.compile("^in_progress · step"), timeout=60_000)
    page.click("#cancel")
    expect(page.locator("#status")).to_have_text("cancelled", timeout=60_000)
    assert page.is_enabled("#generate")
    assert not errors, errors
    page.close()


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    """The models of ``serve --demo`` (built by the same function), served in this process."""
    from abstractvision.cli.demo import build_demo_models
    from abstractvision.server import create_app, serve_in_thread

    models = build_demo_models(tmp_path_factory.mktemp("demo-models"))
    with serve_in_thread(create_app(models)) as server:
        yield server


def test_playground_on_the_demo_models(browser, demo_server):
    """The noise notice, numbered event lines past 9, and the request defaults of a model."""
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(demo_server.url + "/")
    expect(page.locator("#model option")).to_have_count(2)
    assert page.input_value("#model") == "tiny-sd-noise"
    expect(page.locator("#model-note")).to_be_visible()
    expect(page.locator("#model-note")).to_contain_text("its images are noise")
    # 12 steps leave more than 9 lines in the log; no size: the model's defaults (64x64) apply
    page.fill("#prompt", "a lighthouse")
    page.fill("#steps", "12")
    page.click("#generate")
    page.wait_for_selector("#results img", timeout=120_000)
    expect(page.locator("#status")).to_have_text(re.compile("^completed"))
    lines = page.locator("#events li").all_inner_texts()
    assert len(lines) >= 12, lines
    assert [line.split(".", 1)[0] for line in lines] == [str(i) for i in range(1, len(lines) + 1)]
    twelfth = next(line for line in lines if "step 12/12" in line)
    assert re.fullmatch(r"\d\d\. step 12/12.*", twelfth), twelfth  # the two digits are there, not "2."
    # and they are inside the log's visible box (the old list marker was clipped at its left edge)
    box = page.eval_on_selector("#events", "el => el.getBoundingClientRect().left")
    numbers = page.eval_on_selector_all("#events .n", "els => els.map(e => e.getBoundingClientRect().left)")
    assert min(numbers) >= box, (numbers, box)
    natural = page.eval_on_selector("#results img", "img => [img.naturalWidth, img.naturalHeight]")
    assert natural == [64, 64]
    # the video model: its own notice, and a video with no size or frames given
    page.select_option("#model", "tiny-wan-noise")
    expect(page.locator("#model-note")).to_contain_text("its videos are noise")
    assert page.input_value("#task") == "text_to_video"
    page.fill("#steps", "2")
    page.click("#generate")
    page.wait_for_selector("#results video", timeout=120_000)
    expect(page.locator("#status")).to_have_text(re.compile("^completed"))
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "playground-demo.png"), full_page=True)
    assert not errors, errors
    page.close()


def test_playground_shows_a_live_preview_before_the_result(browser, tiny_server):
    """With "Live previews" on (the default), a preview image appears while the engine works,
    before the final image; the page records when each first shows up."""
    errors: list[str] = []
    page = open_playground(browser, tiny_server, errors)
    page.evaluate(
        """() => {
          window.seen = [];
          const start = performance.now();
          const note = (kind) => {
            if (!window.seen.some((entry) => entry[0] === kind)) window.seen.push([kind, performance.now() - start]);
          };
          new MutationObserver(() => {
            const preview = document.getElementById("preview-image");
            if (preview.src.startsWith("data:image/jpeg;base64,")) note("preview");
            if (document.querySelector("#results img")) note("result");
          }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["src"] });
        }"""
    )
    assert page.is_checked("#live-previews")
    page.fill("#prompt", "a lighthouse forming")
    page.fill("#steps", "30")
    page.fill("#seed", "7")
    page.click("#generate")
    page.wait_for_selector("#results img", timeout=120_000)
    seen = page.evaluate("window.seen")
    assert [kind for kind, _ in seen] == ["preview", "result"], seen
    assert seen[0][1] < seen[1][1]
    assert "latent_rgb" in page.inner_text("#preview-caption")
    expect(page.locator("#preview")).to_be_hidden()  # the result replaced it
    assert not errors, errors
    page.close()
