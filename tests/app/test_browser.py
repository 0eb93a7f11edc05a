"""End to end: the app on a free localhost port, driven by headless Debian Chromium (Playwright
with ``executable_path``; no browser is downloaded). ``VIN_OCR_SCREENSHOT=docs/img/app_read.png``
also saves the page for the docs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from vin_ocr.app import load_image
from vin_ocr.vin import normalize

from .conftest import LINE, app_cfg

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="apt-get install chromium"),
]
VIN_VALUE = "() => document.querySelector('#vin-read input, #vin-read textarea').value"
#: A result panel is done when its explanation holds a verdict or a message (not "processing").
DONE = "() => /valid VIN|No VIN read|⚠/.test(document.querySelector('#ID').innerText)"


@pytest.fixture(scope="module")
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    from vin_ocr.app import serve

    app = serve(app_cfg(), block=False)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            tab = browser.new_page(viewport={"width": 1200, "height": 1300})
            tab.goto(app.local_url)
            yield tab
            browser.close()
    finally:
        app.close()


def _read(page, path: Path) -> None:
    page.reload()  # a fresh page: an empty upload box and no earlier result
    page.wait_for_selector("#btn-read", timeout=30_000)
    page.set_input_files("#upload-read input[type=file]", str(path))
    page.wait_for_selector(f"#upload-read :text('{path.name}')", timeout=10_000)
    page.click("#btn-read")
    page.wait_for_function(DONE.replace("ID", "details-read"), timeout=30_000)


def test_upload_a_sample_and_read_its_vin(page, cache):
    expected = normalize(cache.get("baseline").read([load_image(LINE)], [True])[0].text)
    _read(page, LINE)
    assert page.evaluate(VIN_VALUE) == expected
    assert f"{expected} is a valid VIN" in page.inner_text("#details-read")
    if shot := os.environ.get("VIN_OCR_SCREENSHOT"):
        page.screenshot(path=shot, full_page=True)


def test_a_bad_upload_shows_a_message(page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("VIN: not really a picture")
    _read(page, bad)
    text = page.inner_text("#details-read")
    assert "notes.png is not an image" in text and "Traceback" not in text
    assert page.evaluate(VIN_VALUE) == ""
