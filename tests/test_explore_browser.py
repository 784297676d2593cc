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


def take_the_tour(checkpoint: Path, data_dir: Path, screenshot: Path) -> tuple[dict, dict, str]:
    """The screenshot tool's tour of the explorer on ``checkpoint``, then an upload: what was
    seen, the upload's outcome and the server's stderr (page errors fail the test)."""
    tool = explore_screenshot
    if not tool.CHROMIUM.exists():
        pytest.skip(f"no Chromium at {tool.CHROMIUM}: apt-get install chromium (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api")
    process, url = tool.start_explorer("--checkpoint", str(checkpoint), "--data-dir", str(data_dir))
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
    return seen, uploaded, stderr


def test_a_visitor_moves_a_slider_encodes_interpolates_and_clicks_the_map(
    tmp_path, synthetic_data_dir
):
    screenshot = tmp_path / "explorer.png"
    seen, uploaded, stderr = take_the_tour(SHIPPED, synthetic_data_dir, screenshot)
    assert seen["header"].startswith("checkpoint_best.safetensors: VAE, mog prior, 32-dim")
    # One label a dimension, none naming a group: a single-level model has none.
    assert sorted(dim for dim, _ in seen["labels"]) == list(range(32))
    assert all(label.split()[:2] == [f"z{dim}", "var"] for dim, label in seen["labels"])
    assert seen["slider_moved"] and seen["encoded"] and seen["interpolated"] and seen["map_clicked"]
    assert seen["frames"] == 10 and seen["sliders"] + seen["inactive"] == 32
    assert seen["message"] == "", seen["message"]
    # The page's upload (its own Origin, the file as application/octet-stream) is answered.
    assert uploaded["changed"] and uploaded["message"] == "", uploaded
    assert "Traceback" not in stderr, stderr
    with Image.open(screenshot) as picture:
        assert picture.width == 1360 and picture.height >= 900


def test_the_hierarchical_model_in_the_browser_labels_each_slider_with_its_group(
    tmp_path, synthetic_data_dir
):
    seen, uploaded, stderr = take_the_tour(
        ROOT / "pretrained" / "hvae" / "checkpoint_best.safetensors",
        synthetic_data_dir,
        tmp_path / "explorer.png",
    )
    assert seen["slider_moved"] and seen["encoded"] and seen["interpolated"] and seen["map_clicked"]
    assert seen["sliders"] + seen["inactive"] == 64 and seen["message"] == ""
    assert "hierarchical VAE, 4 groups drawn top-down (g1, the top, to g4)" in seen["header"]
    # 16 dimensions a group, the top group's first.
    assert sorted(dim for dim, _ in seen["labels"]) == list(range(64))
    assert all(
        label.split()[:2] == [f"z{dim}", f"g{dim // 16 + 1}"] for dim, label in seen["labels"]
    )
    assert uploaded["changed"] and "Traceback" not in stderr
