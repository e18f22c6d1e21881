"""The drawing page in a real browser: Playwright drives Debian's headless Chromium.

The page is served on 127.0.0.1 by uvicorn (in a thread), a digit is drawn with mouse
events on the canvas, and what the page shows (prediction, every probability bar, the
28x28 preview) must equal what ``POST /api/predict`` answers for the same drawing.
Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from browsing import ARTIFACTS, httpx, launched, served, watched_page

from digitnet.model_io import TrainedModel
from digitnet.predict import to_model_input

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
def test_set(model: TrainedModel, request: pytest.FixtureRequest) -> Any:
    """The model's data set (its test images feed the inside view's accuracy and points)."""
    from digitnet.data import load_dataset

    if model.dataset == "mnist":
        return request.getfixturevalue("mnist")
    return load_dataset(model.dataset)


@pytest.fixture(scope="module")
def server_url(model: TrainedModel, test_set: Any) -> Iterator[str]:
    """The app served by uvicorn on a free port of 127.0.0.1, in a background thread."""
    from digitnet.web import create_app

    with served(create_app(model, allowed_hosts=["127.0.0.1"], test_set=test_set)) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched() as browser:
        yield browser


@pytest.fixture
def page(browser: Any, server_url: str) -> Iterator[Any]:
    """The drawing page, loaded; fails the test on any script error, console error (a
    blocked resource included) or request that leaves 127.0.0.1."""
    with watched_page(browser, server_url,
                      "() => document.querySelectorAll('#bars li').length > 0",
                      viewport={"width": 1100, "height": 720}) as page:
        yield page


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


# ------------------------------------------------------------------ the inside view

def settled(page: Any) -> None:
    """Wait until the page's first answers (test accuracy, points map) are in."""
    page.wait_for_function("() => document.querySelector('#scores').dataset.state === 'ready'"
                           " && Number(document.querySelector('#points').dataset.drawn) > 0",
                           timeout=20_000)


def click_unit(page: Any, layer: int, unit: int) -> None:
    page.click(f'.unit[data-layer="{layer}"][data-unit="{unit}"]')
    page.wait_for_function(
        "([l, u]) => { const r = document.querySelector('#result');"
        " const t = document.querySelector('#unit-name').textContent;"
        " return r.dataset.state === 'ready' && t.includes(`unit ${u}`)"
        " && t.startsWith(`Hidden layer ${l + 1}`); }", arg=[layer, unit], timeout=15_000)


def scores_for(page: Any, edits: dict[str, Any]) -> float:
    """The test accuracy the page shows once it has caught up with ``edits``."""
    page.wait_for_function(
        "(want) => { const s = document.querySelector('#scores');"
        " return s.dataset.state === 'ready'"
        " && s.dataset.edits === JSON.stringify(JSON.parse(want)); }",
        arg=json.dumps(edits, separators=(",", ":")), timeout=15_000)
    return float(page.get_attribute("#scores", "data-accuracy"))


def network_input(model: TrainedModel, drawing: str) -> np.ndarray:
    """The scaled input row the server computes for a drawing (a PNG data URL)."""
    import base64

    from digitnet.imageprep import preprocess_bytes
    from digitnet.predict import model_layout

    prep = preprocess_bytes(base64.b64decode(drawing.partition(",")[2]), model_layout(model))
    return model.scaler.transform(to_model_input(prep.image, model))


def test_switching_units_off_changes_the_prediction(page, server_url, model, test_set) -> None:
    from digitnet.inside import decisive_units, edited_scores

    settled(page)
    stroke(page, SEVEN)
    shown = wait_ready(page)
    before = api_answer(server_url, shown["drawing"])
    x = network_input(model, shown["drawing"])
    net = model.network
    found = decisive_units(net, x[0])  # the fewest of the strongest units that change it
    assert found is not None, "switching off the whole last hidden layer keeps the answer"
    edits, expected = found
    units = sorted(j for _, j in edits.off)
    layer, k = len(net.hidden) - 1, len(units)
    for j in units:
        click_unit(page, layer, j)
        version = page.evaluate(READ_PAGE)["version"]
        page.check("#unit-off")
        wait_ready(page, version)
    after = page.evaluate(READ_PAGE)
    assert after["prediction"] == model.class_names[int(expected.argmax())] != before["prediction"]
    for bar, p in zip(after["bars"], expected, strict=True):
        assert abs(float(bar["pct"].rstrip("%")) - 100 * p) <= 0.05 + 1e-6
    assert page.evaluate("() => document.querySelectorAll('.unit.off').length") == k
    assert f"{k} unit" in page.text_content("#edits-summary")
    assert "before your changes" in page.text_content("#confidence")
    accuracy = scores_for(page, edits.to_json())
    x_test = model.scaler.transform(test_set.x_test)
    assert accuracy == edited_scores(net, edits, x_test, test_set.y_test)["accuracy"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-units-switched-off.png"), full_page=True,
                    animations="disabled")
    version = page.evaluate(READ_PAGE)["version"]
    page.click("#reset-edits")
    wait_ready(page, version)
    assert page.text_content("#prediction") == before["prediction"]
    assert page.evaluate("() => document.querySelectorAll('.unit.off').length") == 0


def test_a_units_arithmetic_is_the_librarys(page, server_url, model) -> None:
    from digitnet.inside import Edits, unit_math

    stroke(page, SEVEN)
    shown = wait_ready(page)
    click_unit(page, 0, 3)
    x = network_input(model, shown["drawing"])[0]
    expected = unit_math(model.network, x, 0, 3, Edits())
    z = float(page.get_attribute("#unit-math", "data-z"))
    assert z == pytest.approx(expected["z"], abs=1e-5)
    text = page.text_content("#unit-math")
    assert f"{expected['bias']:.3f}" in text and f"{expected['z']:.3f}" in text
    # a bias shift moves z by just that much
    page.evaluate("""() => { const s = document.querySelector('#unit-bias');
      s.value = '2'; s.dispatchEvent(new Event('input', {bubbles: true})); }""")
    page.wait_for_function("(z) => Math.abs(Number(document.querySelector('#unit-math')"
                           ".dataset.z) - z) < 1e-5", arg=expected["z"] + 2, timeout=15_000)
    assert "shifted +2.0" in page.text_content("#unit-math")


def test_temperature_changes_the_softmax_not_the_answer(page, server_url) -> None:
    stroke(page, SEVEN)
    shown = wait_ready(page)
    page.evaluate("""() => { const s = document.querySelector('#temperature');
      s.value = '0.6'; s.dispatchEvent(new Event('input', {bubbles: true})); }""")
    hot = wait_ready(page, shown["version"])
    assert hot["prediction"] == shown["prediction"]
    body = page.evaluate("() => window.digitnetLastResult")
    t = 10 ** 0.6  # the slider is log10(T)
    assert body["softmax"]["temperature"] == pytest.approx(t)
    z = np.array(body["softmax"]["logits"])
    expected = np.exp(z / t - (z / t).max())
    np.testing.assert_allclose(body["probabilities"], expected / expected.sum(), rtol=1e-6)
    assert page.text_content("#temperature-value") == f"{t:.2f}"
    assert max(body["probabilities"]) < max(api_answer(server_url, shown["drawing"])[
        "probabilities"])  # less sure
    top = page.text_content("#softmax tr.top")
    assert top is not None and top.startswith(shown["prediction"])


def test_points_map_shows_the_image_under_the_pointer(page, server_url, test_set,
                                                       model) -> None:
    from digitnet.projection import sample_indices

    settled(page)
    points = httpx.post(server_url + "api/points", json={}).json()
    layer = int(page.get_attribute("#points", "data-layer"))
    xy = np.array(points["layers"][layer]["points"])
    # where the page puts point i: the same scaling as inside.js (12 px margin, y upwards)
    size, pad = 520, 12
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    at = pad + (xy - lo) * (size - 2 * pad) / np.maximum(hi - lo, 1e-12)
    at[:, 1] = size - at[:, 1]
    gaps = np.linalg.norm(at[:, None] - at[None], axis=2) + np.eye(len(at)) * 1e9
    i = int(gaps.min(axis=1).argmax())  # the loneliest point: nothing else under the pointer
    page.locator("#points").scroll_into_view_if_needed()
    box = page.locator("#points").bounding_box()
    page.mouse.move(box["x"] + at[i, 0] * box["width"] / size,
                    box["y"] + at[i, 1] * box["height"] / size)
    page.wait_for_selector("#points-tip", state="visible")
    assert page.get_attribute("#points-tip", "data-index") == str(i)
    idx = sample_indices(len(test_set.y_test), 1000, seed=0)[i]
    truth = model.class_names[int(test_set.y_test[idx])]
    assert page.text_content("#points-tip-text").startswith((truth, f"true {truth}"))
    page.click('#points-layers button[data-layer="0"]')
    assert page.get_attribute("#points", "data-layer") == "0"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-points-map.png"), full_page=True,
                    animations="disabled")


def test_how_fast_the_page_answers_a_stroke(page) -> None:
    """Time from each pointer event to the answer that includes it on screen, measured in
    the browser (``performance.now()``) and written to test-artifacts/page-latency.json;
    reported, never asserted (machines are noisy)."""
    settled(page)
    page.evaluate("() => { window.digitnetTimings = []; }")
    for i in range(4):
        stroke(page, [(0.3 + 0.1 * i, 0.2), (0.35 + 0.1 * i, 0.8)], steps=15)
        wait_ready(page, page.evaluate(READ_PAGE)["version"] - 1)
    timings = page.evaluate("() => window.digitnetTimings")
    assert len(timings) >= 40 and all(t >= 0 for t in timings)
    ms = np.array(timings)
    report = {"events": len(ms), "median_ms": round(float(np.median(ms)), 1),
              "p90_ms": round(float(np.percentile(ms, 90)), 1),
              "max_ms": round(float(ms.max()), 1), "share_within_100_ms":
              round(float(np.mean(ms <= 100)), 3)}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "page-latency.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"page latency: {report}")
