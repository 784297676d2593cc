"""``vae explore`` in a real browser: Debian's Chromium, headless, driven by Playwright through
the tour of tools/explore_screenshot.py (a slider, an encoding, an interpolation, a click on
the latent map), then a screenshot. CI installs Chromium (.ci/run); elsewhere the test skips
when it is missing."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import explore_screenshot  # noqa: E402

SHIPPED = ROOT / "pretrained" / "checkpoint_best.safetensors"


def upload_a_digit(page) -> dict:
    """Choose an image file in the page's upload field, as a visitor does; wait for its
    encoding to replace the original on show."""
    digit = np.zeros((56, 40), np.uint8)
    digit[10:46, 18:22] = 255
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, format="PNG")
    before = page.get_attribute("#original", "src")
    page.set_input_files(
        "#upload",
        files=[{"name": "digit.png", "mimeType": "image/png", "buffer": buffer.getvalue()}],
    )
    page.wait_for_function(
        "(before) => { const src = document.querySelector('#original').getAttribute('src');"
        " return (src && src !== before) || !document.querySelector('#message').hidden; }",
        arg=before,
        timeout=explore_screenshot.TIMEOUT_MS,
    )
    message = page.locator("#message")
    return {
        "changed": page.get_attribute("#original", "src") != before,
        "message": message.text_content() if message.is_visible() else "",
    }


def test_a_visitor_moves_a_slider_encodes_interpolates_and_clicks_the_map(
    tmp_path, synthetic_data_dir
):
    tool = explore_screenshot
    if not tool.CHROMIUM.exists():
        pytest.skip(f"no Chromium at {tool.CHROMIUM}: apt-get install chromium (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api")
    process, url = tool.start_explorer(
        "--checkpoint", str(SHIPPED), "--data-dir", str(synthetic_data_dir)
    )
    screenshot = tmp_path / "explorer.png"
    try:
        with sync_api.sync_playwright() as playwright:
            browser = tool.launch(playwright)
            try:
                page = browser.new_page(viewport={"width": 1360, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                seen = tool.tour(page, url)
                uploaded = upload_a_digit(page)
                page.screenshot(path=str(screenshot), full_page=True)
            finally:
                browser.close()
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert not errors, errors
    assert seen["slider_moved"] and seen["encoded"] and seen["interpolated"] and seen["map_clicked"]
    assert seen["frames"] == 10 and seen["sliders"] + seen["inactive"] == 32
    assert seen["message"] == "", seen["message"]
    # The page's upload (its own Origin, the file as application/octet-stream) is answered.
    assert uploaded["changed"] and uploaded["message"] == "", uploaded
    assert "Traceback" not in stderr, stderr
    with Image.open(screenshot) as picture:
        assert picture.width == 1360 and picture.height >= 900
