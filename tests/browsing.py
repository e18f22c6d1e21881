"""What the browser tests share: Debian's headless Chromium driven by Playwright, an app served
by uvicorn in a thread on 127.0.0.1, and pages that fail the test on any script error,
console error or request that leaves the machine. Importing this module skips the importing
test module when Playwright, httpx or Chromium is missing."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("DIGITNET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) missing")
httpx = pytest.importorskip("httpx", reason="httpx (test extra) missing")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)",
                allow_module_level=True)


@contextmanager
def served(app: Any, before_stop: Callable[[], None] | None = None,
           **config: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free port of 127.0.0.1, in a background thread; yields
    its URL. ``before_stop()`` runs before the server is asked to stop (to end event
    streams); ``config`` goes to ``uvicorn.Config``."""
    import uvicorn

    from digitnet.cli.serve import open_socket

    sock = open_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        if before_stop is not None:
            before_stop()
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def launched() -> Iterator[Any]:
    """A headless Chromium (Playwright's ``Browser``)."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def watched_page(browser: Any, url: str, ready: str, **context: Any) -> Iterator[Any]:
    """``url`` opened in a new browser context (``context``: its options, e.g. a viewport),
    once the script ``ready`` is true; fails the test (at its teardown) on any script error,
    console error (a blocked resource or a CSP violation included) or request that leaves
    ``url``."""
    browser_context = browser.new_context(**context)
    page = browser_context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console error: {msg.text}")
            if msg.type == "error" else None)

    def only_local(route: Any) -> None:
        if route.request.url.startswith(url):
            route.continue_()
        else:
            problems.append(f"request to another site: {route.request.url}")
            route.abort()

    page.route("**/*", only_local)
    page.goto(url)
    page.wait_for_function(ready)
    yield page
    browser_context.close()
    assert problems == []
