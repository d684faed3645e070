"""The built-in page in real headless Chromium (Debian's `chromium`, driven by Playwright; no
browser is downloaded): open it, upload images, draw digits on the canvas, check the labels,
versions and status panel it shows, and keep a screenshot as a test artifact.

The screenshot goes to $FLEETSERVE_TEST_ARTIFACTS (default: a folder under pytest's base
temporary directory, printed); with FLEETSERVE_SCREENSHOT_TO_DOCS=1 it also replaces
docs/page.png, the README's picture.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits, load_sample_images

from fleetserve.rollout.plan import RolloutPlan
from tests.support.image_models import COLOURS, colours_model, digits_without_slo
from tests.support.server import ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
CANVAS = 280
CELL = CANVAS // 8
TIMEOUT_MS = 20_000


def expect(target: Any) -> Any:
    """Playwright's auto-retrying assertions (imported late: the package may be missing)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def _chromium_or_skip() -> Any:
    """Playwright's sync API, or a skip (a failure under CI=true) when it or chromium is missing."""
    missing = []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("the playwright package (pip install -e '.[dev]')")
        sync_playwright = None
    if not CHROMIUM.exists():
        missing.append("Debian's chromium (make system-deps)")
    if missing:
        message = "web page test needs " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return sync_playwright


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("web_page") / "models"
    root.mkdir()
    digits_without_slo(root)
    colours_model(root)
    plan = RolloutPlan(model="colours", production=1, canary=2, canary_weight=100.0)
    (root / "colours" / "rollout.json").write_text(plan.model_dump_json())
    return root


@pytest.fixture(scope="module")
def srv(repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess(repo) as proc:
        yield proc


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("FLEETSERVE_TEST_ARTIFACTS") or tmp_path_factory.getbasetemp() / "artifacts")
    folder = folder / "web_page"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nweb page artifacts: {folder}")
    return folder


@pytest.fixture(scope="module")
def page(srv: ServerProcess) -> Iterator[Any]:
    sync_playwright = _chromium_or_skip()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            tab = context.new_page()
            errors: list[str] = []
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            tab.set_default_timeout(TIMEOUT_MS)
            tab.goto(srv.base + "/")
            tab.wait_for_selector("body[data-ready='true']")
            tab.errors = errors
            yield tab
        finally:
            browser.close()


def _labels(page: Any) -> list[str]:
    return page.eval_on_selector_all("#results li", "items => items.map(li => li.dataset.label)")


def _answer(page: Any, action: Any) -> None:
    """Run `action` and wait for the page to show the image route's answer to it."""
    page.evaluate("() => { document.querySelector('#answer').hidden = true; }")
    with page.expect_response(lambda r: r.url.endswith(("/image?k=5", "/image?k=3", "/image?k=1"))) as info:
        action()
    assert info.value.status == 200, info.value.text()
    page.wait_for_selector("#answer:not([hidden])")


def _draw(page: Any, ink: np.ndarray) -> None:
    """Draw an 8x8 ink map (0..1) with the mouse: one stroke per run of inked cells, row by row
    and column by column, through the cells' centres."""
    box = page.locator("#canvas").bounding_box()
    scale = box["width"] / CANVAS

    def at(row: int, col: int) -> tuple[float, float]:
        return box["x"] + (col + 0.5) * CELL * scale, box["y"] + (row + 0.5) * CELL * scale

    inked = ink >= 0.5
    for lines in (inked, inked.T):
        for i, line in enumerate(lines):
            j = 0
            while j < 8:
                if not line[j]:
                    j += 1
                    continue
                end = j
                while end + 1 < 8 and line[end + 1]:
                    end += 1
                a, b = (at(i, j), at(i, end)) if lines is inked else (at(j, i), at(end, i))
                page.mouse.move(*a)
                page.mouse.down()
                page.mouse.move(*b, steps=max(2, (end - j) * 3))
                page.mouse.up()
                j = end + 1


def test_page_lists_models_versions_and_the_rollout(page: Any) -> None:
    options = page.eval_on_selector_all("#model option", "os => os.map(o => o.value)")
    assert sorted(options) == ["colours", "digits"]
    assert page.input_value("#model") == "digits"  # the default when it is there
    page.select_option("#model", "colours")
    expect(page.locator("#version option")).to_have_count(3)
    versions = page.eval_on_selector_all("#version option", "os => os.map(o => o.value)")
    assert versions == ["", "1", "2"]
    page.wait_for_selector("#status-table tr[data-model='colours'][data-version='2']")
    rows = page.eval_on_selector_all(
        "#status-table tr", "rs => rs.map(r => [...r.children].map(td => td.textContent))"
    )
    by_key = {(r[0], r[1]): r for r in rows}
    assert by_key[("colours", "2")][2:4] == ["READY", "canary 100%"], rows
    assert by_key[("colours", "1")][3] == "production 0%", rows
    assert by_key[("digits", "1")][2:4] == ["READY", "production 100%"], rows


def test_uploading_an_image_shows_its_top_k_and_the_version(page: Any, tmp_path: Path) -> None:
    page.select_option("#model", "colours")
    page.select_option("#version", "")
    red = tmp_path / "red.png"
    Image.new("RGB", (50, 40), (220, 10, 10)).save(red)
    _answer(page, lambda: page.set_input_files("#file", str(red)))
    assert _labels(page)[0] == "red" and sorted(_labels(page)) == sorted(COLOURS)
    assert page.text_content("#answer-version") == "2"  # the canary takes all unnamed traffic
    assert page.text_content("#answer-model") == "colours"
    assert page.text_content("#answer-latency").endswith(" ms")
    page.select_option("#version", "1")
    blue = tmp_path / "blue.jpg"
    Image.new("RGB", (64, 64), (0, 0, 240)).save(blue)
    _answer(page, lambda: page.set_input_files("#file", str(blue)))
    assert _labels(page)[0] == "blue" and page.text_content("#answer-version") == "1"
    # dropped on the drop zone, as a file dragged from the desktop
    green = io.BytesIO()
    Image.new("RGB", (30, 30), (0, 200, 0)).save(green, "PNG")
    transfer = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "green.png", { type: "image/png" }));
            return transfer;
        }""",
        base64.b64encode(green.getvalue()).decode(),
    )
    _answer(page, lambda: page.dispatch_event("#drop", "drop", {"dataTransfer": transfer}))
    assert _labels(page)[0] == "green" and page.text_content("#answer-version") == "1"
    # a sample photo on the digits model (turned grey): any top-5 of digit labels
    page.select_option("#model", "digits")
    expect(page.locator("#version option")).to_have_count(2)
    photo = tmp_path / "china.jpg"
    shutil.copyfile(load_sample_images().filenames[0], photo)
    _answer(page, lambda: page.set_input_files("#file", str(photo)))
    labels = _labels(page)
    assert len(labels) == 5 and set(labels) <= {str(d) for d in range(10)}
    widths = page.eval_on_selector_all("#results .fill", "fs => fs.map(f => f.getBoundingClientRect().width)")
    assert widths == sorted(widths, reverse=True) and widths[0] > 0


def test_drawing_digits_shows_their_labels(page: Any, artifacts: Path) -> None:
    page.select_option("#model", "digits")
    page.select_option("#version", "")
    digits = load_digits()
    drawn: list[tuple[int, str]] = []
    for wanted in (0, 1, 7):
        index = int(np.flatnonzero(digits.target == wanted)[0])
        page.click("#clear")
        _draw(page, digits.images[index] / 16.0)
        _answer(page, lambda: page.click("#classify-drawing"))
        drawn.append((wanted, _labels(page)[0]))
        page.screenshot(path=str(artifacts / f"drawn-{wanted}.png"))
    assert all(str(w) == got for w, got in drawn), drawn
    assert page.text_content("#answer-version") == "1"
    ok_count = page.locator("#status-table tr[data-model='digits'] td.num").first
    expect(ok_count).not_to_have_text("0")  # the panel's live count has caught up
    shot = artifacts / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert Image.open(shot).size[0] == 1280
    if os.environ.get("FLEETSERVE_SCREENSHOT_TO_DOCS") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, ROOT / "docs" / "page.png")
    assert not page.errors, page.errors
