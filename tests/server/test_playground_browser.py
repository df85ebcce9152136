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
    assert any(text.startswith("step 4/4") for text in steps), steps
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
