"""The drawing page in a real browser: Playwright drives Debian's headless Chromium.

The page is served on 127.0.0.1 by uvicorn (in a thread), a digit is drawn with mouse
events on the canvas, and what the page shows (prediction, every probability bar, the
28x28 preview) must equal what ``POST /api/predict`` answers for the same drawing.
Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from digitnet.model_io import TrainedModel

CHROMIUM = os.environ.get("DIGITNET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) missing")
httpx = pytest.importorskip("httpx", reason="httpx (test extra) missing")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)",
                allow_module_level=True)

pytestmark = pytest.mark.slow

# Everything the page shows, read at once.
READ_PAGE = """() => {
  const result = document.querySelector('#result');
  const preview = document.querySelector('#preview');
  const data = preview.getContext('2d').getImageData(0, 0, preview.width, preview.height).data;
  return {
    state: result.dataset.state,
    version: Number(result.dataset.version),
    prediction: document.querySelector('#prediction').textContent,
    bars: [...document.querySelectorAll('#bars li')].map((li) => ({
      name: li.querySelector('.label').textContent,
      pct: li.querySelector('.pct').textContent,
      width: li.querySelector('.fill').style.width,
      top: li.classList.contains('top'),
    })),
    drawing: document.querySelector('#pad').toDataURL('image/png'),
    preview: Array.from(data).filter((_, i) => i % 4 === 0),
    previewShape: [preview.height, preview.width],
  };
}"""


@pytest.fixture(scope="module")
def server_url(model: TrainedModel) -> Iterator[str]:
    """The app served by uvicorn on a free port of 127.0.0.1, in a background thread."""
    import uvicorn

    from digitnet.cli.serve import open_socket
    from digitnet.web import create_app

    sock = open_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    app = create_app(model, allowed_hosts=["127.0.0.1"])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
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
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, server_url: str) -> Iterator[Any]:
    """The drawing page, loaded; fails the test on any script error, console error (a
    blocked resource included) or request that leaves 127.0.0.1."""
    context = browser.new_context(viewport={"width": 1100, "height": 720})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console error: {msg.text}")
            if msg.type == "error" else None)  # CSP violations are console errors

    def only_local(route: Any) -> None:
        if route.request.url.startswith(server_url):
            route.continue_()
        else:
            problems.append(f"request to another site: {route.request.url}")
            route.abort()

    page.route("**/*", only_local)
    page.goto(server_url)
    page.wait_for_function("() => document.querySelectorAll('#bars li').length > 0")
    yield page
    context.close()
    assert problems == []


def stroke(page: Any, points: list[tuple[float, float]], steps: int = 12) -> None:
    """Draw a polyline with the mouse; points are fractions of the canvas's size."""
    box = page.locator("#pad").bounding_box()

    def at(p: tuple[float, float]) -> tuple[float, float]:
        return box["x"] + p[0] * box["width"], box["y"] + p[1] * box["height"]

    page.mouse.move(*at(points[0]))
    page.mouse.down()
    for p in points[1:]:
        page.mouse.move(*at(p), steps=steps)
    page.mouse.up()


def wait_ready(page: Any, after_version: int = 0) -> dict[str, Any]:
    page.wait_for_function(
        "(v) => { const r = document.querySelector('#result');"
        " return r.dataset.state === 'ready' && Number(r.dataset.version) > v; }",
        arg=after_version, timeout=15_000,
    )
    return page.evaluate(READ_PAGE)  # type: ignore[no-any-return]


def api_answer(server_url: str, drawing: str) -> dict[str, Any]:
    response = httpx.post(server_url + "api/predict", json={"image": drawing}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def assert_page_shows(shown: dict[str, Any], answer: dict[str, Any]) -> None:
    """The page's prediction, bars and preview are the API's answer for its drawing."""
    assert shown["prediction"] == answer["prediction"]
    assert [bar["name"] for bar in shown["bars"]] == answer["class_names"]
    for bar, p in zip(shown["bars"], answer["probabilities"], strict=True):
        assert abs(float(bar["pct"].rstrip("%")) - 100 * p) <= 0.05 + 1e-9, (bar, p)
        assert abs(float(bar["width"].rstrip("%")) - 100 * p) <= 0.005 + 1e-9, (bar, p)
    assert [bar["top"] for bar in shown["bars"]] == [
        i == answer["index"] for i in range(len(answer["probabilities"]))]
    assert shown["previewShape"] == answer["input"]["shape"]
    assert shown["preview"] == answer["input"]["pixels"]


SEVEN = [(0.28, 0.22), (0.72, 0.22), (0.42, 0.85)]


def test_drawn_digit_is_predicted_as_the_api_predicts_it(page, server_url, model) -> None:
    before = page.evaluate(READ_PAGE)
    assert before["state"] == "empty" and before["prediction"] == "?"
    stroke(page, SEVEN)
    shown = wait_ready(page, before["version"])
    answer = api_answer(server_url, shown["drawing"])
    assert_page_shows(shown, answer)
    if model.dataset == "mnist":
        assert shown["prediction"] == "7"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-drawn-seven.png"), full_page=True,
                    animations="disabled")


def test_prediction_updates_as_you_draw(page, server_url, model) -> None:
    stroke(page, [(0.66, 0.2), (0.44, 0.85)])  # a slanted stroke: a 1
    first = wait_ready(page)
    assert_page_shows(first, api_answer(server_url, first["drawing"]))
    stroke(page, [(0.3, 0.2), (0.66, 0.2)])  # a bar on top makes it a 7
    second = wait_ready(page, first["version"])
    assert second["drawing"] != first["drawing"]
    assert_page_shows(second, api_answer(server_url, second["drawing"]))
    if model.dataset == "mnist":
        assert (first["prediction"], second["prediction"]) == ("1", "7")


def test_prediction_updates_while_the_pen_is_down(page) -> None:
    box = page.locator("#pad").bounding_box()
    x, y, w = box["x"], box["y"], box["width"]
    page.mouse.move(x + 0.5 * w, y + 0.2 * w)
    page.mouse.down()
    page.mouse.move(x + 0.5 * w, y + 0.5 * w, steps=8)
    page.wait_for_function("() => document.querySelector('#prediction').textContent !== '?'")
    assert page.evaluate("() => document.querySelector('#result').dataset.state") != "empty"
    page.mouse.up()


def test_clear_button_resets_everything(page) -> None:
    stroke(page, SEVEN)
    wait_ready(page)
    page.click("#clear")
    shown = page.evaluate(READ_PAGE)
    assert shown["state"] == "empty" and shown["prediction"] == "?"
    assert all(bar["pct"] == "0.0%" and not bar["top"] for bar in shown["bars"])
    assert set(shown["preview"]) == {0}
    blank = page.evaluate("""() => {
      const pad = document.querySelector('#pad');
      const d = pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data;
      return d.every((v) => v === 255);
    }""")
    assert blank


def test_model_description_is_shown(page, model) -> None:
    assert page.text_content("#model-architecture") == model.network.describe()
    accuracy = model.info["test_accuracy"]
    assert page.text_content("#model-accuracy") == f"{100 * accuracy:.2f}%"


def test_touch_drawing_on_a_phone(browser, server_url, model) -> None:
    """A finger draws (pointer events of type touch) on a phone-sized page."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True,
                                  is_mobile=True, device_scale_factor=2)
    page = context.new_page()
    try:
        page.goto(server_url)
        page.wait_for_function("() => document.querySelectorAll('#bars li').length > 0")
        page.evaluate("""(points) => {
          const pad = document.querySelector('#pad');
          const r = pad.getBoundingClientRect();
          const fire = (type, [fx, fy]) => pad.dispatchEvent(new PointerEvent(type, {
            pointerId: 7, pointerType: 'touch', isPrimary: true, bubbles: true,
            cancelable: true, clientX: r.left + fx * r.width, clientY: r.top + fy * r.height,
            button: 0, buttons: 1}));
          fire('pointerdown', points[0]);
          for (let i = 1; i < points.length; i++) fire('pointermove', points[i]);
          fire('pointerup', points[points.length - 1]);
        }""", [[0.5, 0.15 + 0.07 * i] for i in range(11)])
        shown = wait_ready(page)
        assert_page_shows(shown, api_answer(server_url, shown["drawing"]))
        if model.dataset == "mnist":
            assert shown["prediction"] == "1"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser-phone.png"), full_page=True,
                        animations="disabled")
    finally:
        context.close()
