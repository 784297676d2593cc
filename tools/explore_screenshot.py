"""The explorer in a real browser: start ``explore``, drive its page in headless Chromium with
Playwright (move a slider, encode a test image, interpolate, click the latent map) and save a
screenshot. tests/test_explore_browser.py takes the same tour on a tiny data set; this script
draws the picture for README.md and docs/gallery.md:

    VAE_DATA_DIR=../shared/data poetry run python tools/explore_screenshot.py  # images/explorer.png

Chromium is Debian's (``apt-get install chromium``): Playwright cannot download its own here.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
# Headless, as root in CI (no sandbox there), and quiet: without the background-networking
# flags Chromium keeps calling Google's hosts, which a closed network refuses.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000


def start_explorer(*arguments: str) -> tuple[subprocess.Popen[str], str]:
    """The installed ``explore`` command on a free port (``--port 0``), and its page's address,
    read from its first line."""
    command = [str(Path(sys.executable).parent / "explore"), "--port", "0", "--no-open"]
    process = subprocess.Popen(
        [*command, *arguments],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    line = process.stdout.readline()
    if not line.startswith("vae explore: http://"):
        process.kill()
        raise RuntimeError(f"explore did not start: {line}{process.stderr.read()}")
    return process, line.split()[2]


def launch(playwright: Any) -> Any:
    """Headless Debian Chromium."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
    )


def _changes(page: Any, selector: str, before: str | None) -> str:
    """Wait until the ``src`` of ``selector`` is set and differs from ``before``; the new one."""
    page.wait_for_function(
        "([selector, before]) => { const src = document.querySelector(selector).getAttribute('src');"
        " return src && src !== before; }",
        arg=[selector, before],
        timeout=TIMEOUT_MS,
    )
    return page.get_attribute(selector, "src")


def tour(page: Any, url: str) -> dict[str, Any]:
    """Use every part of the page as a visitor would; what was seen, for the test to check."""
    seen: dict[str, Any] = {}
    page.goto(url)
    page.wait_for_selector("body[data-usable='true']", timeout=TIMEOUT_MS)
    first = _changes(page, "#decoded", None)
    slider = page.locator("#sliders input[type='range']").first
    slider.fill(slider.get_attribute("max") or "3")
    seen["slider_moved"] = _changes(page, "#decoded", first) != first
    page.wait_for_selector("body[data-ready='true']", timeout=TIMEOUT_MS)
    seen["sliders"] = page.locator("#sliders input[type='range']").count()
    seen["inactive"] = page.locator("#inactive-sliders input[type='range']").count()
    seen["header"] = page.locator("#model-line").text_content()
    # Each slider's dimension and the label beside it, active ones first.
    seen["labels"] = page.evaluate(
        "() => [...document.querySelectorAll('#sliders input, #inactive-sliders input')]"
        ".filter((input) => input.type === 'range')"
        ".map((input) => [Number(input.dataset.dim), input.previousElementSibling.textContent])"
    )

    before = page.get_attribute("#decoded", "src")
    page.locator("#strip img").nth(1).click()
    original = _changes(page, "#original", None)
    seen["encoded"] = _changes(page, "#decoded", before) == page.get_attribute(
        "#reconstruction", "src"
    )
    page.locator("#set-a").click()
    page.locator("#strip img").nth(3).click()
    _changes(page, "#original", original)
    page.locator("#set-b").click()
    page.wait_for_function(
        "() => document.querySelectorAll('#frames img').length === 10", timeout=TIMEOUT_MS
    )
    seen["frames"] = page.locator("#frames img").count()
    before = page.get_attribute("#decoded", "src")
    page.locator("#t").fill("0.5")
    seen["interpolated"] = _changes(page, "#decoded", before) != before

    original = page.get_attribute("#original", "src")
    box = page.locator("#map").bounding_box()
    page.locator("#map").click(position={"x": box["width"] * 0.3, "y": box["height"] * 0.6})
    seen["map_clicked"] = _changes(page, "#original", original) != original
    seen["message"] = (
        page.locator("#message").text_content() if page.locator("#message").is_visible() else ""
    )
    return seen


def main(argv: list[str] | None = None) -> int:
    """Take the tour with the shipped model and write the screenshot."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--checkpoint", default="pretrained/checkpoint_best.safetensors")
    parser.add_argument("--output", type=Path, default=ROOT / "images" / "explorer.png")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    process, url = start_explorer("--checkpoint", args.checkpoint)
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            seen = tour(page, url)
            page.screenshot(path=str(args.output), full_page=True)
            browser.close()
    finally:
        process.terminate()
        process.communicate(timeout=30)
    seen["labels"] = len(seen["labels"])  # how many; the test reads them one by one
    print(f"wrote {args.output}: {seen}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
