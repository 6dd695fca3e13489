"""What the browser tests share: Debian's chromium, driven by Playwright, and a way to run the engine's
coroutines beside Playwright's own event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
CHROMIUM = Path("/usr/bin/chromium")
IN_CHROMIUM = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium"),
]


def launched() -> Iterator[Any]:
    """A headless chromium for a module's tests (a fixture's body)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-background-networking",
                                                 "--disable-gpu", "--disable-component-update"])
        yield browser
        browser.close()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine beside Playwright's own event loop, which owns this thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
