"""The try-it page in a real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright) against a real `cifar-serve` process on 127.0.0.1.

Playwright's own browser download cannot work on these machines, so it only drives the
system Chromium (`apt-get install chromium`); without either, the test skips saying so.
Every wait is bounded (Playwright's expect timeouts, ServeProcess's log-driven start).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from serve_process import ServeProcess

from cifar10_runtime import ImageError, Predictor, load_image

pytestmark = pytest.mark.slow
CHROMIUM = Path(os.environ.get("CIFAR10_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "artifacts"
TIMEOUT_MS = 15_000
LATENCY = re.compile(r"^\d+\.\d\d ms")
# Chromium logs every 4xx answer to the console; the refused text file must cause exactly this.
REFUSED = "Failed to load resource: the server responded with a status of 400 (Bad Request)"


@pytest.fixture()
def server_url(exported_dir: Path, tmp_path: Path) -> Iterator[str]:
    # ServeProcess: port 0 (no race), readiness from the server's own log (no sleeps).
    srv = ServeProcess(exported_dir / "model.onnx", tmp_path / "serve.log", "--threads", "1")
    try:
        yield srv.url
    finally:
        srv.stop()


@pytest.fixture()
def browser_page() -> Iterator[tuple]:  # type: ignore[type-arg]
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(
            f"no Chromium at {CHROMIUM}: apt-get install chromium (or set CIFAR10_CHROMIUM)"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed: pip install playwright"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 720})
            context.set_default_timeout(TIMEOUT_MS)
            sync_api.expect.set_options(timeout=TIMEOUT_MS)
            page = context.new_page()
            yield page, sync_api.expect
        finally:
            browser.close()


def _changing_labels(predictor: Predictor, pngs: list[Path]) -> list[tuple[Path, str]]:
    """Five real test images whose labels differ one to the next, so each answer is new."""
    chosen: list[tuple[Path, str]] = []
    for path in pngs:
        label = predictor.predict(path).label
        if not chosen or label != chosen[-1][1]:
            chosen.append((path, label))
        if len(chosen) == 5:
            return chosen
    pytest.fail("the exported fixture model gives the same label to all its test images")


def test_choose_drop_paste_and_refuse_in_chromium(
    browser_page: tuple, exported_dir: Path, server_url: str, tmp_path: Path
) -> None:
    page, expect = browser_page
    predictor = Predictor(exported_dir / "model.onnx", threads=1)
    images = _changing_labels(predictor, sorted((exported_dir / "png").glob("*.png")))
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: console.append(f"page error: {exc}"))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    top1 = page.get_by_test_id("top1")

    def shown(path: Path, label: str) -> None:
        expect(top1).to_have_text(label)
        expect(page.locator("#top5 li")).to_have_count(5)
        expect(page.get_by_test_id("latency")).to_have_text(LATENCY)
        pixels = page.evaluate(
            "Array.from(document.getElementById('seen').getContext('2d')"
            ".getImageData(0, 0, 32, 32).data)"
        )
        seen = [v for i, v in enumerate(pixels) if i % 4 != 3]  # drop alpha
        assert seen == load_image(path).reshape(-1).tolist(), f"{path.name}: wrong 32x32 shown"

    page.goto(server_url + "/")
    expect(page.locator("#version")).to_have_text(predictor.model_version)
    page.keyboard.press("Tab")  # the first stop is the file chooser, named by its label
    assert page.evaluate("document.activeElement.id") == "file"
    file_input = page.get_by_label("Choose an image")

    # Three real test images chosen one after another; each answer replaces the last.
    for path, label in images[:3]:
        with page.expect_response(lambda r: "/v1/predict" in r.url) as answer:
            file_input.set_input_files(path)
        assert answer.value.json()["predictions"][0]["label"] == label
        shown(path, label)
    expect(page.get_by_test_id("result-version")).to_have_text(predictor.model_version)

    # A synthetic drag-and-drop, then a paste, each carrying a File.
    for path, label, event in [(*images[3], "drop"), (*images[4], "paste")]:
        encoded = base64.b64encode(path.read_bytes()).decode()
        transfer = page.evaluate_handle(
            """([b64, name]) => {
                const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const transfer = new DataTransfer();
                transfer.items.add(new File([data], name, { type: "image/png" }));
                return transfer;
            }""",
            [encoded, path.name],
        )
        if event == "drop":
            page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
        else:
            page.evaluate(
                "(t) => document.dispatchEvent("
                "new ClipboardEvent('paste', { clipboardData: t, bubbles: true }))",
                transfer,
            )
        shown(path, label)

    # A text file named .png: the server's one-line error is shown, the page stays usable.
    fake = tmp_path / "notes.png"
    fake.write_bytes(b"this is not an image, just text\n")
    with pytest.raises(ImageError) as refused:
        load_image(fake.read_bytes(), name=fake.name)
    with page.expect_console_message(lambda m: m.text == REFUSED):
        file_input.set_input_files(fake)
    console.remove(REFUSED)  # the 400 itself, logged by Chromium; any other error fails
    expect(page.get_by_test_id("error")).to_have_text(str(refused.value))
    expect(top1).to_be_hidden()
    path, label = images[0]
    file_input.set_input_files(path)
    shown(path, label)
    expect(page.get_by_test_id("error")).to_be_hidden()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "try-it.png", full_page=True)
    assert console == []
    origin = urlsplit(server_url)[:2]
    assert requests and all(urlsplit(url)[:2] == origin for url in requests), requests
