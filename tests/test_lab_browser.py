"""The lab page in a real browser: Playwright drives Debian's headless Chromium.

``digitnet lab``'s application is served on 127.0.0.1 by uvicorn (in a thread) with the
bundled digits set; the page starts short runs, and what it shows (the state, the curves,
the statistics, the change log, the gradient check) must follow what the server's run does.
The page is also checked on a phone-sized screen (touch, 390x844), and a live run on a
subset of the real MNIST (``mnist`` marker: skipped without ``DIGITNET_DATA_DIR``).
Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from browsing import ARTIFACTS, launched, served, watched_page

pytestmark = pytest.mark.slow

TIMEOUT = 30_000  # ms: a busy 2-core machine trains, serves and renders at once
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from digitnet.data import load_dataset
    from digitnet.web.lab import Lab

    lab = Lab(runs_dir=tmp_path_factory.mktemp("lab-runs"),
              datasets={"digits": load_dataset("digits")})
    yield lab
    lab.close()


@contextmanager
def serving(lab: Any) -> Iterator[str]:
    """``lab``'s application served on 127.0.0.1 (a free port) in a thread; yields its URL."""
    from digitnet.web.lab import create_lab_app

    app = create_lab_app(lab, allowed_hosts=["127.0.0.1"])
    # lab.close() ends the event streams, which would otherwise hold the shutdown up
    with served(app, before_stop=lab.close, timeout_graceful_shutdown=2) as url:
        yield url


@pytest.fixture(scope="module")
def lab_url(lab: Any) -> Iterator[str]:
    with serving(lab) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched() as browser:
        yield browser


@contextmanager
def open_page(browser: Any, lab_url: str, lab: Any, device: dict[str, Any]) -> Iterator[Any]:
    """The lab page on ``device`` (the browser context's options), loaded with no run; fails
    the test (at its teardown) on any script error, console error (a blocked resource
    included) or request that leaves 127.0.0.1."""
    if lab.session is not None:  # each test starts from a page without a run
        lab.session.stop()
        lab.session.join(10)
        lab.session = None
    with watched_page(browser, lab_url,
                      "() => document.querySelectorAll('#experiments li').length >= 6",
                      **device) as page:
        yield page


@pytest.fixture
def page(browser: Any, lab_url: str, lab: Any) -> Iterator[Any]:
    with open_page(browser, lab_url, lab, DESKTOP) as page:
        yield page


@pytest.fixture
def phone(browser: Any, lab_url: str, lab: Any) -> Iterator[Any]:
    """The lab page on a phone: 390x844 CSS pixels, 2 device pixels each, touch."""
    with open_page(browser, lab_url, lab, PHONE) as page:
        yield page


def shot(page: Any, name: str, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    if full_page:  # the sticky control bar is drawn where the view is: at the top
        page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page, animations="disabled")


def stoppable(page: Any, server: Any) -> None:
    """Wait for the Stop button to be enabled (the page waits for no request); if it is
    not, fail saying what the server's run and the page are doing."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("() => !document.querySelector('#btn-stop').disabled",
                               timeout=TIMEOUT)
    except PlaywrightTimeout:
        pytest.fail(f"Stop stayed disabled: the server's run is {server.state} "
                    f"({server.message!r}, {server.steps} steps); the page shows "
                    f"{page.get_attribute('#state', 'data-state')!r}")


def snapshot(page: Any) -> dict[str, Any]:
    return page.evaluate("() => window.labSnapshot")  # type: ignore[no-any-return]


def wait_state(page: Any, *states: str) -> None:
    page.wait_for_function("(states) => states.includes(document.querySelector('#state')"
                           ".dataset.state)", arg=list(states), timeout=TIMEOUT)


def wait_steps(page: Any, more_than: int) -> int:
    page.wait_for_function("(n) => Number(document.querySelector('#state').dataset.steps) > n",
                           arg=more_than, timeout=TIMEOUT)
    return int(page.get_attribute("#state", "data-steps"))


def set_field(page: Any, selector: str, value: str) -> None:
    """Type a value into an input (or choose it in a select) and commit it: the change
    event the page listens to."""
    if page.evaluate(f"() => document.querySelector('{selector}').tagName") == "SELECT":
        page.select_option(selector, value)  # fires input and change
    else:
        page.fill(selector, value)
        page.dispatch_event(selector, "change")


def slow_motion(page: Any, notch: int = 1) -> None:
    """The slow-motion slider to ``notch`` (1: 10 ms after every step)."""
    page.evaluate("""(n) => { const s = document.querySelector('#slow');
      s.value = String(n); s.dispatchEvent(new Event('input', {bubbles: true})); }""", notch)


def new_run(lab: Any, old: Any, state: str = "done") -> Any:
    """The run that replaced ``old``, once it is in ``state``."""
    deadline = time.monotonic() + TIMEOUT / 1000
    while lab.session is old or lab.session.state != state:
        assert time.monotonic() < deadline, "the new run did not get there"
        time.sleep(0.01)
    return lab.session


def start(page: Any, **settings: Any) -> None:
    """Fill the set-up form and press Start a new run."""
    for name, value in settings.items():
        field = f'#setup [name="{name}"]'
        if page.evaluate(f"() => document.querySelector('{field}').tagName") == "SELECT":
            page.select_option(field, str(value))
        else:
            page.fill(field, str(value))
    page.click("#btn-start")


def test_a_short_run_shows_its_curves_and_statistics_updating(page: Any, lab: Any) -> None:
    slow_motion(page)  # 10 ms after every step
    start(page, epochs=40)
    wait_state(page, "running")
    first = wait_steps(page, 30)
    before = {
        "loss": int(page.get_attribute("#chart-loss", "data-points")),
        "grad": int(page.get_attribute("#chart-grad", "data-points")),
        "renders": page.evaluate("() => window.labRenders"),
    }
    later = wait_steps(page, first + 60)
    page.wait_for_function("() => Number(document.querySelector('#chart-loss').dataset.epochs)"
                           " >= 2", timeout=TIMEOUT)
    s = snapshot(page)
    assert later > first and page.evaluate("() => window.labRenders") > before["renders"]
    assert int(page.get_attribute("#chart-loss", "data-points")) > before["loss"]
    assert int(page.get_attribute("#chart-grad", "data-points")) > before["grad"]
    assert int(page.get_attribute("#chart-dead", "data-points")) > 0
    assert page.get_attribute("#histograms", "data-layers") == "3"
    assert page.get_attribute("#tiles", "data-units") == "64"
    assert page.get_attribute("#augment", "data-kind") == "none"
    # the page shows the server's numbers
    server = lab.session
    assert s["config"] == server.config.to_dict() and s["network"] == "64-128-64-10 relu"
    assert s["delay"] == 0.01
    text = page.text_content("#where")
    assert "64-128-64-10 relu" in text and "1317 training images" in text
    assert "epoch" in page.text_content("#numbers")
    shot(page, "lab-running.png")
    page.click("#btn-stop")
    wait_state(page, "stopped")


def test_changing_the_learning_rate_mid_run_is_recorded(page: Any, lab: Any) -> None:
    slow_motion(page)
    start(page, epochs=40, optimizer="momentum", lr="0.02")
    wait_state(page, "running")
    wait_steps(page, 20)
    set_field(page, "#live-lr", "0.005")
    page.wait_for_function("() => document.querySelector('#changes').dataset.count === '1'",
                           timeout=TIMEOUT)
    row = page.locator("#changes tbody tr").first
    assert row.get_attribute("data-setting") == "lr"
    cells = [c.strip() for c in row.locator("td").all_text_contents()]
    change = lab.session.changes[0]
    assert cells == [str(change.step), str(change.epoch), "learning rate", "0.02", "0.005"]
    assert change.step >= 20 and change.old == 0.02 and change.new == 0.005
    assert snapshot(page)["settings"]["lr"] == 0.005 == lab.session.settings["lr"]
    # the batch size too changes at the next step (the rest of the epoch in the new size)
    set_field(page, "#live-batch_size", "64")
    page.wait_for_function("() => document.querySelector('#changes').dataset.count === '2'",
                           timeout=TIMEOUT)
    assert lab.session.changes[1].at == "step" and lab.session.changes[1].setting == "batch_size"
    set_field(page, "#live-dropout", "0.3")
    # a per-epoch setting waits for the next epoch
    set_field(page, "#live-augment", "affine")
    page.wait_for_function("() => document.querySelector('#augment').dataset.kind === 'affine'",
                           timeout=TIMEOUT)
    augment = next(c for c in lab.session.changes if c.setting == "augment")
    assert augment.at == "epoch_start" and augment.step in lab.session.epoch_steps
    page.click("#btn-pause")
    wait_state(page, "paused")
    page.locator("#live-title").scroll_into_view_if_needed()
    shot(page, "lab-change-log.png", full_page=False)
    page.locator("#aug-title").scroll_into_view_if_needed()
    shot(page, "lab-augmentation.png", full_page=False)
    page.click("#btn-stop")
    wait_state(page, "stopped")


def test_pause_step_epoch_and_resume(page: Any, lab: Any) -> None:
    slow_motion(page)
    start(page, epochs=40)
    wait_state(page, "running")
    wait_steps(page, 10)
    page.click("#btn-pause")
    wait_state(page, "paused")
    paused = lab.session.steps
    time.sleep(0.5)
    assert lab.session.steps == paused
    page.wait_for_function("(n) => document.querySelector('#state').dataset.steps === String(n)",
                           arg=paused, timeout=TIMEOUT)
    assert page.is_disabled("#btn-pause") and page.is_enabled("#btn-resume")
    page.click("#btn-step")
    page.wait_for_function("(n) => document.querySelector('#state').dataset.steps === String(n)",
                           arg=paused + 1, timeout=TIMEOUT)
    wait_state(page, "paused")
    page.click("#btn-epoch")
    page.wait_for_function("() => { const s = window.labSnapshot; return s.state === 'paused'"
                           " && s.epoch_progress === 0 && s.steps % s.steps_per_epoch === 0"
                           " && s.steps > 0; }", timeout=TIMEOUT)
    assert lab.session.epoch_seen == 0 and lab.session.epochs_done >= 1
    page.click("#btn-resume")
    wait_state(page, "running")
    wait_steps(page, lab.session.steps + 5)
    page.click("#btn-stop")
    wait_state(page, "stopped")
    assert page.is_disabled("#btn-stop")


def test_an_answer_older_than_the_events_shown_is_not_shown(
        browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer to "+1 epoch" is the state when the epoch began; here it arrives after the
    events that showed the epoch done and the run paused (as on a busy machine). The page
    must go on showing "paused" (with Run enabled), not put "running" back. (A lab of its
    own: serving it with the answer delayed, then closing it, ends its event streams.)"""
    from digitnet.data import load_dataset
    from digitnet.web.lab import Lab

    answer = Lab.control

    def late(self: Any, payload: Any) -> dict[str, Any]:
        out = answer(self, payload)
        if payload.get("action") == "epoch":
            assert out["state"] == "running"
            self.session.wait_idle(TIMEOUT / 1000)  # the epoch is done: paused
            time.sleep(1.0)  # the events stream shows that first
        return out

    monkeypatch.setattr(Lab, "control", late)
    lab = Lab(runs_dir=tmp_path, datasets={"digits": load_dataset("digits")})
    with serving(lab) as url, open_page(browser, url, lab, DESKTOP) as page:
        start(page, epochs=40)
        wait_state(page, "running")
        page.click("#btn-pause")
        wait_state(page, "paused")
        paused = lab.session.steps
        page.click("#btn-epoch")
        # the epoch done, from the events; the answer still to come
        page.wait_for_function("(n) => { const s = window.labSnapshot; return s.state === "
                               "'paused' && s.epoch_progress === 0 && s.steps > n; }",
                               arg=paused, timeout=TIMEOUT)
        page.wait_for_function("() => !document.querySelector('#btn-gradcheck').disabled",
                               timeout=TIMEOUT)  # the answer has come: nothing waits for it
        assert page.get_attribute("#state", "data-state") == "paused"
        assert page.is_enabled("#btn-resume")
        page.click("#btn-stop")
        wait_state(page, "stopped")


def test_the_gradient_check_in_the_page(page: Any, lab: Any) -> None:
    start(page, epochs=3)
    wait_state(page, "done")
    page.click("#btn-gradcheck")
    page.wait_for_function("() => document.querySelector('#gradcheck').dataset.ok === 'true'",
                           timeout=TIMEOUT)
    rows = page.locator("#gradcheck tbody tr")
    assert rows.count() == 3
    result = lab.session.last_gradient_check
    assert result["ok"] and all(r["error"] < 1e-6 for r in result["layers"])
    for i, r in enumerate(result["layers"]):
        cells = rows.nth(i).locator("td").all_text_contents()
        assert cells[0] == f"layer {r['layer']}" and cells[1] == "\u00d7".join(map(str, r["shape"]))
        assert float(cells[2]) == pytest.approx(r["W"], rel=0.06)  # two digits shown
        assert cells[4] == "✓"
    assert "backpropagation computes the gradient" in page.text_content("#gradcheck-note")
    page.locator("#gc-title").scroll_into_view_if_needed()
    shot(page, "lab-gradient-check.png", full_page=False)


def test_an_exploding_loss_is_stopped_and_the_hint_fixes_it(page: Any, lab: Any) -> None:
    page.click('#experiments button[data-experiment="lr-too-high"]')
    wait_state(page, "diverged")
    message = page.text_content("#message")
    assert "diverged" in message and "check_loss" in message
    assert "error" in page.get_attribute("#message", "class")
    page.wait_for_selector('#hints .hint[data-id="diverged"]', timeout=TIMEOUT)
    page.evaluate("() => window.scrollTo(0, 0)")
    shot(page, "lab-diverged.png", full_page=False)
    page.click('#hints .hint[data-id="diverged"] button')
    page.wait_for_function("() => window.labSnapshot.config.lr === 0.5"
                           " && window.labSnapshot.state !== 'diverged'", timeout=TIMEOUT)
    assert lab.session.config.train.lr == 0.5
    lab.session.stop()


def test_an_experiment_shows_vanishing_gradients_and_its_hint(page: Any, lab: Any) -> None:
    slow_motion(page)
    page.click('#experiments button[data-experiment="sigmoid-tiny-init"]')
    page.wait_for_selector('#hints .hint[data-id="vanishing-gradients"]', timeout=TIMEOUT)
    assert snapshot(page)["config"]["activation"] == "sigmoid"
    wait_steps(page, 60)
    page.click("#btn-pause")
    wait_state(page, "paused")
    page.locator("#layers-title").scroll_into_view_if_needed()
    shot(page, "lab-vanishing.png", full_page=False)
    page.click("#btn-stop")
    wait_state(page, "stopped")


def test_saving_from_the_page(page: Any, lab: Any) -> None:
    start(page, epochs=2)
    wait_state(page, "done")
    page.click("#btn-save")
    page.wait_for_function("() => document.querySelector('#saved').dataset.folder",
                           timeout=TIMEOUT)
    folder = Path(page.get_attribute("#saved", "data-folder"))
    assert (folder / "model.npz").is_file() and (folder / "report.html").is_file()
    assert json.loads((folder / "lab.json").read_text())["steps"] == lab.session.steps
    assert f"digitnet serve --model {folder}" in page.text_content("#saved")


def test_how_fast_the_lab_trains_with_the_page_watching(page: Any, lab: Any) -> None:
    """The default digits run trained with the page open (rendering every snapshot) and
    without anyone watching, in this process; written to test-artifacts/lab-speed.json,
    reported, never asserted (machines are noisy). ``python -m benchmarks.lab_speed``
    compares with ``digitnet train``."""
    from digitnet.lab import LabConfig, LabSession

    watched = []
    for _ in range(3):
        old = lab.session
        start(page)
        watched.append(new_run(lab, old).train_seconds)
    alone = []
    for _ in range(3):
        s = LabSession(LabConfig.from_dict({"dataset": "digits"}), lab.dataset("digits"))
        s.run()
        alone.append(s.train_seconds)
    report = {"watched_seconds": watched, "alone_seconds": alone,
              "median_ratio": sorted(watched)[1] / sorted(alone)[1],
              "steps": lab.session.steps, "renders": page.evaluate("() => window.labRenders")}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "lab-speed.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"lab speed: {report}")


# The page's layout, measured in the page: the screen's width against the page's, the
# control bar, every card, the controls a finger has to hit, and the pictures.
LAYOUT = """() => {
  const box = (e) => { const r = e.getBoundingClientRect();
    return { left: r.left, right: r.right, top: r.top, width: r.width, height: r.height }; };
  const main = document.querySelector('main');
  const style = getComputedStyle(main);
  const inner = main.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const controls = document.querySelectorAll('#bar button, #slow, #live input, #live select,'
    + ' #setup input, #setup select, #setup button, #experiments button, #loss-log');
  return {
    innerWidth: window.innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
    main: inner,
    bar: box(document.querySelector('#bar')),
    cards: [...main.querySelectorAll(':scope > .card')].map((c) => ({
      id: c.getAttribute('aria-labelledby'), ...box(c), overflow: c.scrollWidth - c.clientWidth })),
    controls: [...controls].map((c) => ({
      id: c.id || c.name || c.dataset.experiment || c.textContent.trim(), ...box(c),
      visible: c.checkVisibility(),
      // a checkbox is hit through its label
      target: c.type === 'checkbox' ? c.closest('label').getBoundingClientRect().height : null,
      clipped: c.tagName === 'BUTTON' && c.scrollWidth > c.clientWidth })),
    canvases: [...main.querySelectorAll('canvas')].map((c) => ({
      id: c.id || c.closest('figure').querySelector('figcaption').textContent.slice(0, 8),
      ...box(c), inside: c.clientWidth, pixels: c.width,
      chart: !!c.closest('.charts, .histograms') })),
    ratio: window.devicePixelRatio,
  };
}"""


def test_the_page_fits_a_phone(phone: Any, lab: Any) -> None:
    """On a 390-pixel touch screen: nothing wider than the screen (a phone's browser would
    zoom the page out), one column of full-width cards, a control bar that leaves most of
    the screen to the charts, every control a finger can hit and whose label is not cut
    off, charts that fit and are drawn at the screen's resolution; the bar stays on top
    while the charts scroll under it, and works there."""
    page = phone
    slow_motion(page)
    page.fill('#setup [name="epochs"]', "40")
    page.tap("#btn-start")
    wait_state(page, "running")
    wait_steps(page, 60)
    page.wait_for_function("() => Number(document.querySelector('#chart-loss').dataset.epochs)"
                           " >= 2", timeout=TIMEOUT)
    page.tap("#btn-pause")
    wait_state(page, "paused")
    page.wait_for_function("() => document.querySelector('#histograms').dataset.layers === '3'",
                           timeout=TIMEOUT)
    page.evaluate("() => window.scrollTo(0, 0)")
    layout = page.evaluate(LAYOUT)
    screen = PHONE["viewport"]
    assert layout["innerWidth"] == screen["width"]  # not zoomed out to a wider page
    assert layout["scrollWidth"] <= layout["innerWidth"]  # no sideways scrolling
    assert layout["bar"]["height"] <= screen["height"] / 4
    for card in layout["cards"]:
        assert card["width"] >= layout["main"] - 1, card  # one column, the screen's width
        assert card["left"] >= 0 and card["right"] <= layout["innerWidth"], card
        assert card["overflow"] <= 0, card  # nothing inside sticks out
    assert len(layout["controls"]) >= 8 + 6 + 17 + 6
    for control in layout["controls"]:
        assert control["visible"], control
        assert (control["target"] or control["height"]) >= 32, control
        assert control["left"] >= 0 and control["right"] <= layout["innerWidth"], control
        assert not control["clipped"], control
    assert len(layout["canvases"]) == 5 + 2 + 3  # the charts, tiles and images, histograms
    for canvas in layout["canvases"]:
        assert canvas["left"] >= 0 and canvas["right"] <= layout["innerWidth"], canvas
        assert canvas["width"] >= 0.8 * layout["main"], canvas
        if canvas["chart"]:  # sharp: a canvas pixel per screen pixel (inside the border)
            assert abs(canvas["pixels"] - canvas["inside"] * layout["ratio"]) <= 1, canvas
    shot(page, "lab-phone.png")
    # scrolled down to the statistics: the bar is still at the top, and a tap on it works
    page.locator("#layers-title").scroll_into_view_if_needed()
    assert page.evaluate("() => window.scrollY") > 1000
    assert page.locator("#bar").bounding_box()["y"] == 0
    paused = lab.session.steps
    page.tap("#btn-step")
    page.wait_for_function("(n) => document.querySelector('#state').dataset.steps === String(n)",
                           arg=paused + 1, timeout=TIMEOUT)
    shot(page, "lab-phone-scrolled.png", full_page=False)
    page.tap("#btn-stop")
    wait_state(page, "stopped")


@pytest.fixture(scope="module")
def mnist_lab(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A lab that reads MNIST from the real files, as ``digitnet lab --data-dir`` does."""
    from digitnet.web.lab import Lab

    lab = Lab(data_dir=str(mnist_dir), runs_dir=tmp_path_factory.mktemp("lab-mnist-runs"))
    yield lab
    lab.close()


@pytest.fixture
def mnist_page(browser: Any, mnist_lab: Any) -> Iterator[Any]:
    with serving(mnist_lab) as url, open_page(browser, url, mnist_lab, DESKTOP) as page:
        yield page


@pytest.mark.mnist
def test_a_live_run_on_an_mnist_subset(mnist_page: Any, mnist_lab: Any) -> None:
    """The page starts a run on 2,000 MNIST images (the data set's own recipe, as the form
    fills it in: batches of 256, so 8 steps an epoch), watches it learn and stops it."""
    page = mnist_page
    page.select_option("#setup-dataset", "mnist")  # the form takes MNIST's defaults
    assert page.input_value('#setup [name="hidden"]') == "256 128"
    assert page.input_value('#setup [name="batch_size"]') == "256"
    slow_motion(page, 2)  # 30 ms a step: 320 steps in >= 10 s, still running when stopped
    start(page, subset=2000, epochs=40)
    wait_state(page, "running")  # MNIST loaded from the files, the run started
    first = wait_steps(page, 20)
    before = {"loss": int(page.get_attribute("#chart-loss", "data-points")),
              "grad": int(page.get_attribute("#chart-grad", "data-points")),
              "renders": page.evaluate("() => window.labRenders")}
    later = wait_steps(page, first + 40)
    page.wait_for_function("() => Number(document.querySelector('#chart-loss').dataset.epochs)"
                           " >= 3", timeout=TIMEOUT)
    page.wait_for_function("() => window.labSnapshot.tiles !== undefined"
                           " && window.labSnapshot.preview !== undefined", timeout=TIMEOUT)
    s = snapshot(page)
    server = mnist_lab.session
    assert later > first and page.evaluate("() => window.labRenders") > before["renders"]
    assert int(page.get_attribute("#chart-loss", "data-points")) > before["loss"]
    assert int(page.get_attribute("#chart-grad", "data-points")) > before["grad"]
    assert int(page.get_attribute("#chart-dead", "data-points")) > 0
    # the page shows the server's run: MNIST, 2,000 of its images, 784 pixels in
    assert s["config"] == server.config.to_dict()
    assert s["config"]["dataset"] == "mnist" and s["config"]["subset"] == 2000
    assert s["n_train"] == 2000 == len(server.x_train) and s["steps_per_epoch"] == 8
    assert s["network"] == "784-256-128-10 relu"
    text = page.text_content("#where")
    assert "784-256-128-10 relu" in text and "2000 training images" in text
    assert page.get_attribute("#histograms", "data-layers") == "3"
    assert page.get_attribute("#tiles", "data-units") == "64"
    assert s["tiles"]["shape"] == [64, 28, 28] and s["preview"]["shape"] == [8, 28, 28]
    # it learns: after an epoch of 2,000 images, most validation images right
    assert s["history"][0]["val_accuracy"] > 0.8
    assert "validation loss" in page.text_content("#numbers")
    shot(page, "lab-mnist.png")
    stoppable(page, server)
    page.click("#btn-stop")
    wait_state(page, "stopped")
    stopped = server.steps
    assert server.state == "stopped" and snapshot(page)["steps"] == stopped
    print(f"MNIST in the lab: {stopped} steps, trainer {type(server.trainer).__name__}, "
          f"{server.train_seconds:.2f} s of training")
