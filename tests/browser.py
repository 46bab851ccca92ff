"""Headless Chromium for browser tests: Debian's /usr/bin/chromium driven by Playwright (never a
browser download). Flags keep the browser off this machine's closed network."""

import os
import shutil
from contextlib import contextmanager
from typing import Iterator

import pytest

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_path() -> str:
    """The system Chromium (FLYWHEEL_CHROMIUM overrides); fails the test set-up if it is missing."""
    path = os.environ.get("FLYWHEEL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        pytest.fail(f"Chromium not found at {path}: install Debian's chromium (apt-get install chromium), "
                    "as .ci/run does")
    return path


@contextmanager
def browser() -> Iterator:
    """A Playwright Chromium browser, closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            yield instance
        finally:
            instance.close()
