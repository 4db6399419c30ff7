"""A real browser for the page tests: Playwright driving Debian's chromium (``make browser``), and the chat page
started in its own session on a free loopback port and stopped with everything it started."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import REQUIRE_ENGINES, engine_env, start_in_session, stop_process, wait_until_answers

CHROMIUM = Path("/usr/bin/chromium")


def need_browser() -> None:
    """Skip (or, under `make test`, fail) without Playwright and Debian's chromium."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing = "Playwright (sh scripts/setup_env.sh core)"
    else:
        missing = "" if CHROMIUM.exists() else "chromium (make browser: apt-get install chromium)"
    if missing:
        message = f"the browser test needs {missing}"
        pytest.fail(message) if REQUIRE_ENGINES else pytest.skip(message)


@contextlib.contextmanager
def chat_page(args: list[str], log: Path, port: int, timeout: float = 300.0) -> Iterator[str]:
    """``python -m eval.chat ARGS`` on ``port``: its URL once the page answers; stopped (servers too) on the way out."""
    proc = start_in_session([sys.executable, "-m", "eval.chat", "--port", str(port), *args], log, engine_env())
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_answers(url, proc, log, "eval.chat", timeout=timeout)
        yield url
    finally:
        stop_process(proc)


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A fresh page of a headless chromium, closed on the way out."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()
