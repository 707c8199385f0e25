"""The app in a real browser (Debian's chromium through Playwright): translate, chat, screenshots.

Screenshots go to $TRANSLATOR_SCREENSHOTS (default: the test's tmp dir), and also to
benchmarks/screenshots/ when TRANSLATOR_SAVE_SCREENSHOTS=1.
"""
from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
from helpers import make_tiny_checkpoint

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO = Path(__file__).resolve().parents[1]
TIMEOUT_MS = 60_000  # the machine is shared; a first request also loads the model

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::Warning:gradio.queueing"),  # gradio's own pandas deprecations
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no chromium at {CHROMIUM} (apt-get install chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


def tiny_checkpoint(tmp_path_factory, name: str, **kwargs) -> Path:
    """One tiny checkpoint per session, shared with the app tests that ask for the same name."""
    path = tmp_path_factory.getbasetemp() / "app-checkpoints" / f"{name}.ckpt"
    if not path.exists():
        make_tiny_checkpoint(path, steps=20, **kwargs)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    from translator.serve.app import build_app

    translate = tiny_checkpoint(tmp_path_factory, "transformer", kind="transformer")
    lstm = tiny_checkpoint(tmp_path_factory, "lstm", kind="lstm")  # the Learn tab's gates view needs one
    chat = tiny_checkpoint(tmp_path_factory, "chat", kind="lstm", dataset="dailydialog", src_lang="en",
                           tgt_lang="en", context_turns=2)
    demo = build_app([translate, lstm], chat_checkpoint=chat, checkpoints_dir=None)
    _, address, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                                quiet=True)
    yield address
    demo.close()


@pytest.fixture(scope="module")
def page(url):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        yield page
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> list[Path]:
    folders = [Path(os.environ.get("TRANSLATOR_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))]
    if os.environ.get("TRANSLATOR_SAVE_SCREENSHOTS") == "1":
        folders.append(REPO / "benchmarks" / "screenshots")
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return folders


def screenshot(page, shots: list[Path], name: str) -> None:
    page.screenshot(path=str(shots[0] / name), full_page=True)
    for folder in shots[1:]:
        shutil.copy(shots[0] / name, folder / name)


def test_translate_tab(page, shots):
    page.locator("#source textarea").fill("a man runs in the park")
    page.locator("#translate-button").click()
    page.wait_for_function("document.querySelector('#translation textarea').value.trim() !== ''")
    page.locator("#attention img").wait_for()
    assert page.locator("#translation textarea").input_value().strip()
    assert "cross-attention" in page.locator("#translate-info").inner_text()
    screenshot(page, shots, "translate.png")
    assert (shots[0] / "translate.png").stat().st_size > 10_000


def test_examples_fill_the_source_box(page):
    page.get_by_text("Ein brauner Hund rennt durch das hohe Gras.").click()
    page.wait_for_function("document.querySelector('#source textarea').value.startsWith('Ein brauner Hund')")


def test_chat_tab(page, shots):
    page.get_by_role("tab", name="Chat").click()
    page.locator("#message textarea").fill("hello, how are you?")
    page.locator("#send").click()
    page.locator("#chatbot .bot-row").first.wait_for()
    assert "hello, how are you?" in page.locator("#chatbot .user-row").first.inner_text()
    assert page.locator("#chatbot .bot-row").first.inner_text().strip()
    assert page.locator("#message textarea").input_value() == ""
    # the decoding settings are shown with their defaults, and the model's language is stated
    page.get_by_text("Anti-LM weight").first.wait_for()
    assert "English" in page.locator("#chat-info").inner_text()
    screenshot(page, shots, "chat.png")
    page.locator("#clear").click()
    page.wait_for_function("document.querySelectorAll('#chatbot .bot-row').length === 0")


def test_empty_input_shows_a_message(page):
    page.get_by_role("tab", name="Translate").click()
    before = page.locator("#translation textarea").input_value()  # whatever an earlier test left there
    page.locator("#source textarea").fill("   ")
    page.locator("#translate-button").click()
    # Refused before it is queued: the validator's message is shown on the source box, and nothing
    # was translated (the handler never ran, so the output box is as it was).
    page.get_by_text("the input is empty").first.wait_for()
    assert page.locator("#translation textarea").input_value() == before


def test_learn_tab_every_view(page, shots):
    """Each Learn view in one click: its picture appears with what to look for; one screenshot per view."""
    from translator.serve.learn import DEFAULT_LAB_DIR, VIEWS

    page.get_by_role("tab", name="Learn").click()
    page.locator("#learn-text textarea").fill("a man runs in the park")
    for view in VIEWS:
        page.locator(f"#learn-{view.key}").click()
        page.locator("#learn-note").get_by_role("heading", name=view.title).wait_for()
        if view.key in ("gradients", "exposure", "bottleneck") and not (DEFAULT_LAB_DIR / f"{view.key}.json").exists():
            page.locator("#learn-note").get_by_text("No precomputed results").wait_for()
            continue
        page.wait_for_function("document.querySelector('#learn-plot img') !== null && "
                               "!document.querySelector('#learn-note').innerText.includes('⚠️')")
        page.locator("#learn-plot img").wait_for()
        assert view.look_for[:40] in page.locator("#learn-note").inner_text()
        if view.key == "beam":
            page.locator("#learn-table").get_by_text("hypothesis").first.wait_for()
        screenshot(page, shots, f"learn-{view.key}.png")
        assert (shots[0] / f"learn-{view.key}.png").stat().st_size > 10_000
