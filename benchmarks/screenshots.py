"""Screenshots of the app serving real checkpoints, in Debian's chromium (Playwright).

    python benchmarks/screenshots.py --checkpoint T.ckpt [--checkpoint L.ckpt] --chat_checkpoint C.ckpt \
        [--chat_checkpoint2 K.ckpt] [--out benchmarks/screenshots]
"""
from __future__ import annotations

import argparse
import socket
from pathlib import Path

from playwright.sync_api import sync_playwright

from translator.serve.app import build_app

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shoot(checkpoints: list[str], chat: str, out: Path, source: str, messages: list[str], tag: str) -> None:
    demo = build_app(checkpoints, chat_checkpoint=chat, checkpoints_dir=None)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(120_000)
            page.goto(url)
            if source:
                page.locator("#source textarea").fill(source)
                page.locator("#translate-button").click()
                page.wait_for_function("document.querySelector('#translation textarea').value.trim() !== ''")
                page.wait_for_timeout(1500)
                page.screenshot(path=str(out / "translate.png"), full_page=True)
                print("translation:", page.locator("#translation textarea").input_value())
            page.get_by_role("tab", name="Chat").click()
            for i, message in enumerate(messages, 1):
                page.locator("#message textarea").fill(message)
                page.locator("#send").click()
                page.wait_for_function(f"document.querySelectorAll('#chatbot .bot-row').length >= {i}")
            page.wait_for_timeout(1000)
            page.screenshot(path=str(out / f"chat-{tag}.png"), full_page=True)
            for row in page.locator("#chatbot .bot-row").all():
                print("reply:", row.inner_text().strip())
            browser.close()
    finally:
        demo.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", required=True)
    parser.add_argument("--chat_checkpoint", required=True)
    parser.add_argument("--chat_checkpoint2")
    parser.add_argument("--out", default="benchmarks/screenshots")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shoot(args.checkpoint, args.chat_checkpoint, out, "Zwei junge Männer spielen Fußball auf einem grünen Feld.",
          ["Hi, how are you doing today?", "Do you want to go to the movies tonight?"], "dailydialog")
    if args.chat_checkpoint2:
        shoot(args.checkpoint, args.chat_checkpoint2, out, "", ["안녕하세요", "오늘 너무 피곤해"], "chatbot-ko")


if __name__ == "__main__":
    main()
