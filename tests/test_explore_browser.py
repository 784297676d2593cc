"""``vae explore`` in a real browser: Debian's Chromium, headless, driven by Playwright through
the tour of tools/explore_screenshot.py (a slider, an encoding, an interpolation, a click on
the latent map), then a screenshot. CI installs Chromium (.ci/run); elsewhere the test skips
when it is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import explore_screenshot  # noqa: E402

SHIPPED = ROOT / "pretrained" / "checkpoint_best.safetensors"


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
    assert "Traceback" not in stderr, stderr
    with Image.open(screenshot) as picture:
        assert picture.width == 1360 and picture.height >= 900
