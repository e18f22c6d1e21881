"""The live training lab (``digitnet lab``, :mod:`digitnet.lab`, :mod:`digitnet.web.lab`).

A lab run is ``digitnet train``'s training (the same trainers, epoch loop, divergence guard)
with controls, live settings and statistics around it: without changes it gives the weights
of :func:`digitnet.training.fit` bit for bit; with changes, its saved configuration and
change log replay it bit for bit. Controls act between two steps, changes take effect at
the next step (or epoch) and are logged; the hint rules fire on the statistics they name
and stay quiet otherwise; the gradient check tells a right backward pass from a broken one.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import finishes, held, served, stop_with_ctrl_c

from digitnet.data import load_dataset
from digitnet.data.preprocessing import MinMaxScaler
from digitnet.engine import make_trainer, split
from digitnet.engine.flat import FusedTrainer
from digitnet.engine.split import INLINE, PROCESS, ModeChooser, SplitTrainer
from digitnet.experiment import split_for_training
from digitnet.forking import FORK_GATE
from digitnet.lab import (
    EXPERIMENTS,
    LIVE_SETTINGS,
    RULES,
    SERIES_POINTS,
    Change,
    LabConfig,
    LabError,
    LabSession,
    gradient_check,
    hints,
    inactive_share,
    load_record,
    replay,
    subset_indices,
)
from digitnet.layers import ActivationLayer, Dense
from digitnet.network import MLP
from digitnet.training import fit

pytest.importorskip("httpx", reason="httpx (test extra) is needed for Starlette's TestClient")
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

WAIT = 30.0  # seconds a threaded control may take on a busy machine


@pytest.fixture(scope="module")
def digits() -> Any:
    return load_dataset("digits")


def session(digits: Any, **settings: Any) -> LabSession:
    return LabSession(LabConfig.from_dict({"dataset": "digits", **settings}), digits)


def same_weights(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def fit_weights(digits: Any, config: LabConfig) -> list[np.ndarray]:
    """What ``digitnet.training.fit`` trains for the lab configuration (digitnet train's path)."""
    t = config.train
    x_tr, y_tr, x_val, y_val = split_for_training(digits, t)
    keep = subset_indices(y_tr, config.subset, t.seed)  # all of them without a subset
    x_tr, y_tr = x_tr[keep], y_tr[keep]
    network = MLP(digits.n_features, t.hidden, digits.n_classes, t.activation, t.dtype, t.seed,
                  t.dropout, t.input_dropout, t.init_scale)
    fit(network, x_tr, y_tr, MinMaxScaler.fit(digits.x_train), t, x_val, y_val,
        engine=make_trainer if config.engine == "fast" else None)
    return network.get_state()


class AlwaysInTheHelper(ModeChooser):
    """The split engine's helper share always in the helper process (a chooser could move
    it here on a busy machine, which gives the same bits but would not test the helper)."""

    def __init__(self) -> None:
        super().__init__()
        self.mode = PROCESS

    def record(self, seconds: float | None) -> str:
        self.steps[self.mode] += 1
        return self.mode


@pytest.fixture()
def split_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every layer of the small digits networks split over two processes, as
    ``digitnet train`` splits MNIST's (``engine.make_trainer``), the helper's share always
    in the helper process."""
    monkeypatch.setattr(split, "MIN_SPLIT_WORK", 0)
    monkeypatch.setattr(split, "ModeChooser", AlwaysInTheHelper)


# ------------------------------------------------------------------ configuration
def test_the_configuration_takes_the_recipe_and_round_trips() -> None:
    config = LabConfig.from_dict({"dataset": "digits", "lr": 0.01, "hidden": [32]})
    assert config.train.hidden == (32,) and config.train.lr == 0.01
    assert config.train.batch_size == 32 and config.train.schedule == "constant"
    assert config.train.keep == "last"
    assert LabConfig.from_dict(config.to_dict()) == config
    json.dumps(config.to_dict())


@pytest.mark.parametrize(("values", "word"), [
    ({"colour": "red"}, "unknown"), ({"ema": 0.9}, "ema"), ({"lr": -1.0}, "lr"),
    ({"dataset": "cifar"}, "dataset"), ({"subset": -3}, "subset"), ({"engine": "gpu"}, "engine"),
    ({"patience": 2}, "patience"), ({"keep": "best"}, "keep"),
])
def test_bad_configurations_are_refused(values: dict[str, Any], word: str) -> None:
    with pytest.raises(LabError, match=word):
        LabConfig.from_dict({"dataset": "digits", **values})


def test_a_subset_is_stratified_and_seeded(digits: Any) -> None:
    y = digits.y_train
    idx = subset_indices(y, 300, seed=4)
    assert len(idx) == 300 and len(set(idx.tolist())) == 300 and np.all(np.diff(idx) > 0)
    counts = np.bincount(y[idx], minlength=10)
    assert counts.min() >= 28 and counts.max() <= 32  # each class in proportion
    assert np.array_equal(idx, subset_indices(y, 300, seed=4))
    assert not np.array_equal(idx, subset_indices(y, 300, seed=5))
    s = session(digits, subset=300)
    assert len(s.x_train) == 300 and len(s.x_val) == len(session(digits).x_val)


# ------------------------------------------------------------- the same training
@pytest.mark.parametrize(("engine", "extra"), [
    ("fast", {}),
    ("textbook", {}),
    ("fast", {"augment": "affine", "dropout": 0.3, "stats_every": 1}),
    ("textbook", {"optimizer": "momentum", "weight_decay": 1e-4, "label_smoothing": 0.1,
                  "max_norm": 3.0, "init_scale": 0.5, "stats_every": 3}),
])
def test_a_lab_run_without_changes_trains_what_fit_trains(digits: Any, engine: str,
                                                           extra: dict[str, Any]) -> None:
    """Bit for bit, statistics measured on the way (every step in one case) included."""
    s = session(digits, epochs=3, engine=engine, **extra)
    s.run()
    assert s.state == "done" and s.epochs_done == 3 and s.steps == 3 * s.steps_per_epoch
    assert same_weights(s.network.get_state(), fit_weights(digits, s.config))
    assert s.measures and all(m.step % s.config.stats_every == 0 for m in s.measures)


needs_fork = pytest.mark.skipif(not split.helper_can_run(),
                                reason="no helper process here (one core, not Linux)")


@needs_fork
@pytest.mark.usefixtures("split_engine")
@pytest.mark.parametrize("thread", ["caller", "lab"])
@pytest.mark.parametrize("extra", [
    {},
    {"optimizer": "nesterov", "weight_decay": 1e-4, "dropout": 0.2, "augment": "affine",
     "max_norm": 3.0, "stats_every": 1},
])
def test_a_lab_run_on_the_split_engine_trains_what_fit_trains(
        digits: Any, thread: str, extra: dict[str, Any]) -> None:
    """The lab trains with the trainer digitnet train picks: the split over two processes
    for large layers, the helper forked from the lab's own thread too; bit for bit."""
    s = session(digits, epochs=2, subset=300, **extra)
    assert isinstance(s.trainer, SplitTrainer)
    if thread == "caller":
        s.run()
    else:
        s.start()
        deadline = time.monotonic() + WAIT
        while s.state != "done" and time.monotonic() < deadline:
            time.sleep(0.005)
        s.stop()
        assert s.join(WAIT)
    assert s.epochs_done == 2 and s.steps == 2 * s.steps_per_epoch
    info = s.trainer.info()
    assert info["helper_process"] and info["steps"] == {PROCESS: s.steps, INLINE: 0}
    assert same_weights(s.network.get_state(), fit_weights(digits, s.config))


def test_the_statistics_are_measured(digits: Any) -> None:
    s = session(digits, epochs=2, stats_every=5)
    s.run()
    assert len(s.batch_loss) == s.steps == len(s.batch_accuracy)
    assert [m.step for m in s.measures] == list(range(0, s.steps, 5))
    m = s.measures[0]
    assert len(m.grad_norm) == len(m.update_ratio) == 3 and len(m.inactive) == 2
    assert all(g > 0 for g in m.grad_norm) and all(0 < r < 1 for r in m.update_ratio)
    assert all(0 <= d <= 1 for d in m.inactive)
    assert [h.epoch for h in s.history] == [1, 2] and s.history[-1].val_loss is not None
    assert s.epoch_steps == [s.steps_per_epoch, 2 * s.steps_per_epoch]


def test_inactive_units_are_those_silent_for_the_whole_batch() -> None:
    a = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    assert inactive_share("relu", a) == 0.5
    assert inactive_share("leaky_relu", a - 0.001) == 0.5
    sig = np.array([[0.001, 0.5, 0.999], [0.002, 0.995, 0.6]])
    assert inactive_share("sigmoid", sig) == pytest.approx(1 / 3)
    assert inactive_share("tanh", np.array([[0.999, -0.5], [-0.995, 0.2]])) == 0.5


def test_the_snapshot_is_json_and_small(digits: Any) -> None:
    from digitnet.web.lab import to_json

    s = session(digits, batch_size=1, epochs=1, stats_every=1)
    s.run()
    snap = s.snapshot()
    text = to_json(snap)
    assert len(text) < 200_000 and "NaN" not in text
    assert len(snap["batches"]["loss"]) <= SERIES_POINTS < s.steps
    assert snap["batches"]["step"][-1] == s.steps
    assert len(snap["measures"]["step"]) <= SERIES_POINTS
    assert len(snap["histograms"]) == 3
    h = snap["histograms"][0]
    assert len(h["edges"]) == len(h["now"]) + 1 and sum(h["now"]) == pytest.approx(1)
    tiles = snap["tiles"]
    assert tiles["shape"] == [64, 8, 8]  # the first 64 of 128 units, 8x8 like the images
    import base64

    assert len(base64.b64decode(tiles["data"])) == 64 * 64
    assert set(snap["preview"]["samples"]) == {"affine", "elastic"}


# ------------------------------------------------------------------------ controls
def test_pause_resume_one_step_one_epoch_and_stop(digits: Any) -> None:
    s = session(digits, epochs=1000, stats_every=7)
    assert s.state == "ready"
    s.start()
    deadline = time.monotonic() + WAIT
    while s.steps < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    s.pause()
    assert s.wait_idle(WAIT) and s.state == "paused"
    frozen = s.steps
    time.sleep(0.2)
    assert s.steps == frozen  # paused: not a step more
    s.run_step()
    deadline = time.monotonic() + WAIT
    while s.steps == frozen and time.monotonic() < deadline:
        time.sleep(0.005)
    assert s.wait_idle(WAIT) and s.steps == frozen + 1 and s.state == "paused"
    s.run_epoch()  # to the end of this epoch
    deadline = time.monotonic() + WAIT
    while s.epoch_seen != 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert s.wait_idle(WAIT) and s.epoch_seen == 0 and s.steps % s.steps_per_epoch == 0
    done = s.epochs_done
    s.run_epoch()  # a whole one
    deadline = time.monotonic() + WAIT
    while s.epochs_done == done and time.monotonic() < deadline:
        time.sleep(0.005)
    assert s.wait_idle(WAIT) and s.epochs_done == done + 1 and s.epoch_seen == 0
    s.resume()
    time.sleep(0.05)
    assert s.state == "running"
    s.set_delay(0.01)  # slow motion: about 100 steps a second at most
    before, started = s.steps, time.monotonic()
    time.sleep(0.3)
    assert s.steps - before <= (time.monotonic() - started) / 0.01 + 2
    s.stop()
    assert s.join(WAIT) and s.state == "stopped"
    with pytest.raises(LabError, match="over"):
        s.resume()
    with pytest.raises(LabError, match="over"):
        s.change("lr", 0.1)


def test_after_the_planned_epochs_it_waits_and_goes_on_one_epoch_at_a_time(digits: Any) -> None:
    s = session(digits, epochs=2)
    s.start()
    deadline = time.monotonic() + WAIT
    while s.epochs_done < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s.wait_idle(WAIT) and s.state == "done" and s.steps == 2 * s.steps_per_epoch
    s.resume()
    deadline = time.monotonic() + WAIT
    while s.epochs_done < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s.wait_idle(WAIT) and s.state == "done" and s.epochs_done == 3
    s.stop()
    assert s.join(WAIT)


class StepSpy:
    """Records the learning rate and batch size of every step the session takes."""

    def __init__(self, s: LabSession) -> None:
        self.calls: list[tuple[float, int]] = []
        inner = s._step

        def step(x: Any, y: Any, lr: float) -> Any:
            self.calls.append((lr, len(x)))
            return inner(x, y, lr)

        s._step = step  # type: ignore[method-assign]


def steps(s: LabSession, n: int) -> None:
    """``n`` single steps, through the controls, each awaited."""
    for _ in range(n):
        before = s.steps
        s.run_step()
        deadline = time.monotonic() + WAIT
        while s.steps == before and time.monotonic() < deadline:
            time.sleep(0.002)
        assert s.wait_idle(WAIT) and s.steps == before + 1


def test_a_change_takes_effect_at_the_next_step_and_is_logged(digits: Any) -> None:
    s = session(digits, engine="textbook", stats_every=10**9, optimizer="momentum", lr=0.05,
                epochs=50)
    spy = StepSpy(s)
    steps(s, 2)
    assert s.change("lr", 0.2) == 0.2
    assert s.pending == {"lr": 0.2}
    assert s.changes == []  # not in effect yet
    s.change("momentum", 0.5)
    s.change("weight_decay", 1e-3)
    s.change("dropout", 0.4)
    steps(s, 1)
    assert [lr for lr, _ in spy.calls] == [0.05, 0.05, 0.2]
    assert s.trainer.optimizer.momentum == 0.5 and s.trainer.optimizer.weight_decay == 1e-3
    assert [d.p for d in s.network.dropouts] == [0.4, 0.4] and s.network.dropout == 0.4
    assert s.changes[0] == Change(2, 1, "lr", 0.05, 0.2, "step")
    assert [c.setting for c in s.changes] == ["lr", "momentum", "weight_decay", "dropout"]
    assert all(c.step == 2 and c.at == "step" for c in s.changes)
    assert s.pending == {}
    s.stop()
    assert s.join(WAIT)


def until_epoch(s: LabSession, epochs: int) -> None:
    """Train to the end of epoch ``epochs`` ("+1 epoch"), then wait for the pause."""
    s.run_epoch()
    deadline = time.monotonic() + WAIT
    while s.epochs_done < epochs and time.monotonic() < deadline:
        time.sleep(0.005)
    assert s.wait_idle(WAIT) and s.epochs_done == epochs


@pytest.mark.parametrize("engine", ["textbook", "split"])
def test_a_batch_size_change_serves_the_rest_of_the_epoch_in_the_new_size(
        digits: Any, engine: str, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from digitnet.batches import BatchLoader

    if engine == "split":
        request.getfixturevalue("split_engine")
    loaded: list[np.ndarray] = []
    for loader in (BatchLoader, split.SplitBatchLoader):
        def load(self: Any, idx: np.ndarray, inner: Any = loader.load) -> Any:
            loaded.append(idx.copy())
            return inner(self, idx)

        monkeypatch.setattr(loader, "load", load)
    s = session(digits, engine="textbook" if engine == "textbook" else "fast",
                stats_every=10**9, epochs=50)
    spy = StepSpy(s)
    steps(s, 3)
    s.change("batch_size", 100)
    assert s.pending == {"batch_size": 100}
    steps(s, 1)
    assert [n for _, n in spy.calls] == [32, 32, 32, 100]
    assert s.changes == [Change(3, 1, "batch_size", 32, 100, "step")]
    assert s.steps_per_epoch == math.ceil(len(s.x_train) / 100)
    assert isinstance(s.trainer, SplitTrainer) == (engine == "split")
    until_epoch(s, 1)
    rest = math.ceil((len(s.x_train) - 3 * 32) / 100)
    assert s.steps == s.epoch_steps[0] == 3 + rest
    assert [n for _, n in spy.calls[3:]] == [100] * (rest - 1) + [len(s.x_train) - 96 - 100 * (
        rest - 1)]
    epoch_one = np.concatenate(loaded[:s.steps])  # every image once, in one order
    assert np.array_equal(np.sort(epoch_one), np.arange(len(s.x_train)))
    steps(s, 1)
    assert spy.calls[-1][1] == 100
    s.stop()
    assert s.join(WAIT)


def test_augmentation_changes_at_the_next_epoch(digits: Any) -> None:
    s = session(digits, engine="textbook", stats_every=10**9, epochs=50)
    steps(s, 3)
    s.change("augment", "affine")
    steps(s, 1)
    assert set(s.pending) == {"augment"} and np.array_equal(s.trainer.batches.x, s.x_train)
    until_epoch(s, 1)
    steps(s, 1)
    assert [(c.setting, c.at, c.step, c.epoch) for c in s.changes] == [
        ("augment", "epoch_start", s.steps - 1, 2)]
    assert not np.array_equal(s.trainer.batches.x, s.x_train)  # distorted images
    s.change("augment", "none")
    until_epoch(s, 2)
    steps(s, 1)
    assert np.array_equal(s.trainer.batches.x, s.x_train)  # the originals again
    s.stop()
    assert s.join(WAIT)


@needs_fork
def test_live_changes_reach_the_split_engines_helper(digits: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Weight decay, momentum, the batch size (mid-epoch: a new split trainer) and
    augmentation changed at given steps: the split engine (its helper process holds half of
    every layer's rows and of the optimizer's state) trains what the one-process trainer
    trains with the same changes, in float64 up to rounding; and without the changes it
    does not."""
    config = LabConfig.from_dict({"dataset": "digits", "subset": 300, "optimizer": "momentum",
                                  "lr": 0.05, "dtype": "float64", "stats_every": 7})
    changes = [Change(4, 1, "weight_decay", 0.0, 0.02), Change(9, 1, "momentum", 0.9, 0.5),
               Change(13, 2, "batch_size", 32, 50), Change(13, 2, "lr", 0.05, 0.08),
               Change(18, 3, "augment", "none", "affine", "epoch_start")]
    runs = {}
    for name, schedule in (("fused", changes), ("split", changes), ("unchanged", [])):
        with monkeypatch.context() as patch:
            if name != "fused":
                patch.setattr(split, "MIN_SPLIT_WORK", 0)
                patch.setattr(split, "ModeChooser", AlwaysInTheHelper)
            s = LabSession(config, digits, schedule=schedule)
            s.run(until_steps=30)
            runs[name] = s
    fused, split_run = runs["fused"], runs["split"]
    assert isinstance(split_run.trainer, SplitTrainer) and not isinstance(fused.trainer,
                                                                          SplitTrainer)
    assert split_run.trainer.info()["helper_process"]
    # the last trainer: since the augmentation change (the batch size's made one at step 13)
    assert split_run.trainer.info()["steps"] == {PROCESS: 30 - 18, INLINE: 0}
    assert split_run.changes == fused.changes and len(fused.changes) == 5
    # epoch 2: 3 batches of 32, then the other 204 images in 5 of 50 (the last of 4)
    assert split_run.epoch_steps == fused.epoch_steps == [10, 18, 24]
    weights = {k: np.concatenate([w.ravel() for w in r.network.get_state()])
               for k, r in runs.items()}
    np.testing.assert_allclose(weights["split"], weights["fused"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(split_run.batch_loss, fused.batch_loss, rtol=1e-9)
    for what in ("grad_norm", "update_ratio", "inactive"):  # the statistics, every 7 steps
        np.testing.assert_allclose([getattr(m, what) for m in split_run.measures],
                                   [getattr(m, what) for m in fused.measures], rtol=1e-8)
    assert not np.allclose(weights["unchanged"], weights["fused"], rtol=1e-6, atol=1e-9)


def by_hand(digits: Any, config: LabConfig, sizes: dict[int, int], steps: int) -> np.ndarray:
    """What the lab should train for ``config`` with the batch size set to ``sizes[k]``
    after step ``k``: one one-process trainer throughout, fed by hand (each epoch's order as
    the lab draws it, served in the batch size of the moment); the weights, flat."""
    t = config.train
    x_tr, y_tr, _, _ = split_for_training(digits, t)
    keep = subset_indices(y_tr, config.subset, t.seed)
    x_tr, y_tr = x_tr[keep], y_tr[keep]
    scaler = MinMaxScaler.fit(digits.x_train)
    network = MLP(digits.n_features, t.hidden, digits.n_classes, t.activation, t.dtype, t.seed)
    rng = np.random.default_rng(np.random.SeedSequence([t.seed, 1]))
    trainer = FusedTrainer(network, t, x_tr, y_tr, scaler, rng)
    step, size = 0, t.batch_size
    with trainer:
        while step < steps:
            order, done = rng.permutation(len(x_tr)), 0
            while done < len(order) and step < steps:
                idx = order[done:done + size]
                trainer.step(scaler.transform(x_tr[idx], np.float64), y_tr[idx], t.lr)
                done, step = done + len(idx), step + 1
                size = sizes.get(step, size)
    return np.concatenate([w.ravel() for w in network.get_state()])


@needs_fork
def test_a_batch_size_change_may_move_the_run_between_the_engines(
        digits: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """As ``digitnet train`` would: the two-process split at batch size 32, one process at
    8 (too little work per batch to split), the split again at 32, each a new trainer
    continuing the last one's optimizer state (Adam's moments and step count): what one
    trainer fed by hand with those batch sizes trains, in float64 up to rounding."""
    monkeypatch.setattr(split, "MIN_SPLIT_WORK", 16 * 64 * 128)  # batches of 16 or more
    monkeypatch.setattr(split, "ModeChooser", AlwaysInTheHelper)
    config = LabConfig.from_dict({"dataset": "digits", "subset": 200, "optimizer": "adam",
                                  "dtype": "float64", "weight_decay": 1e-3})
    built: list[str] = []
    original = LabSession._new_trainer

    def spy(self: LabSession, t: Any) -> Any:
        trainer = original(self, t)
        built.append(type(trainer).__name__)
        return trainer

    monkeypatch.setattr(LabSession, "_new_trainer", spy)
    s = LabSession(config, digits, schedule=[Change(3, 1, "batch_size", 32, 8),
                                             Change(12, 1, "batch_size", 8, 32)])
    s.run(until_steps=20)
    assert built == ["SplitTrainer", "FusedTrainer", "SplitTrainer"]
    assert [c.step for c in s.changes] == [3, 12]
    assert s.epoch_steps == [3 + 9 + 1]  # 3 x 32, 9 x 8, 1 x 32
    lab = np.concatenate([w.ravel() for w in s.network.get_state()])
    np.testing.assert_allclose(lab, by_hand(digits, s.config, {3: 8, 12: 32}, 20),
                               rtol=1e-9, atol=1e-12)
    assert not np.allclose(lab, by_hand(digits, s.config, {}, 20), rtol=1e-6, atol=1e-9)


@needs_fork
@pytest.mark.usefixtures("split_engine")
def test_the_split_engines_helper_sleeps_while_the_lab_waits(digits: Any) -> None:
    s = session(digits, epochs=50, optimizer="momentum")
    steps(s, 3)
    helper = s.trainer.helper.process
    assert s.trainer.info()["helper_process"] and helper is not None
    assert helper.asleep  # paused: no CPU
    s.change("momentum", 0.5)
    steps(s, 2)
    assert helper.asleep and s.trainer.info()["steps"] == {PROCESS: 5, INLINE: 0}
    assert s.trainer.optimizer_settings[0] == 0.5
    s.stop()
    assert s.join(WAIT)
    assert not helper.process.is_alive()


@pytest.mark.parametrize(("setting", "value", "word"), [
    ("lr", 0, "lr"), ("lr", "fast", "number"), ("momentum", 0.5, "momentum"),  # Adam
    ("dropout", 0.95, "dropout"), ("batch_size", 0, "batch_size"), ("augment", "wild", "augment"),
    ("activation", "tanh", "cannot be changed"), ("weight_decay", -1, "weight_decay"),
])
def test_bad_changes_are_refused(digits: Any, setting: str, value: Any, word: str) -> None:
    s = session(digits)
    with pytest.raises(LabError, match=word):
        s.change(setting, value)
    assert s.pending == {}


# --------------------------------------------------------------- forks and threads
NOT_YET = 0.3  # seconds in which something that must wait does not happen


@needs_fork
@pytest.mark.usefixtures("split_engine")
def test_the_lab_forks_its_helper_only_while_no_other_thread_computes(digits: Any) -> None:
    """OpenBLAS stops its threads for a fork, and a product under way in another thread
    (the page's snapshot, in the server) would wait for them forever: the training thread's
    fork waits until nobody computes (digitnet.forking)."""
    s = session(digits, epochs=50)
    assert s.trainer.use_helper
    release = held(FORK_GATE.computing())
    s.run_step()  # the thread starts: the trainer forks its helper first
    time.sleep(NOT_YET)
    assert s.steps == 0 and not s.wait_idle(0)
    release.set()
    assert s.wait_idle(WAIT) and s.steps == 1
    assert s.trainer.helper.process is not None  # it did fork, once it could
    s.stop()
    assert s.join(WAIT)


@pytest.mark.parametrize("work", ["step", "snapshot", "gradient check", "save"])
def test_the_labs_computations_wait_while_a_fork_is_under_way(
        digits: Any, work: str, tmp_path: Path) -> None:
    s = session(digits, epochs=50, augment="elastic")
    steps(s, 1)
    jobs = {"step": lambda: steps(s, 1), "snapshot": s.snapshot, "gradient check": s.gradient_check,
            "save": lambda: s.save(tmp_path / "run", report=False)}
    release = held(FORK_GATE.forking())
    done = finishes(jobs[work])
    assert not done.wait(NOT_YET)
    release.set()
    assert done.wait(WAIT)
    s.stop()
    assert s.join(WAIT)


# --------------------------------------------------------------------------- replay
@pytest.mark.parametrize("engine", ["one-process", "split"])
def test_a_replay_trains_the_same_weights_bit_for_bit(digits: Any, engine: str,
                                                      request: pytest.FixtureRequest) -> None:
    """Trained in the lab's thread with pauses, replayed in this one; the split engine's
    helper forked from either."""
    if engine == "split":
        request.getfixturevalue("split_engine")
    s = session(digits, optimizer="momentum", lr=0.05, epochs=50, stats_every=4)
    steps(s, 5)
    s.change("lr", 0.02)
    s.change("dropout", 0.2)
    steps(s, 7)
    s.change("batch_size", 64)
    s.change("augment", "affine")
    s.run_epoch()
    deadline = time.monotonic() + WAIT
    while s.epochs_done < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert s.wait_idle(WAIT)
    s.change("weight_decay", 1e-4)  # while paused between two epochs
    s.change("momentum", 0.8)
    steps(s, 9)
    s.change("augment", "none")
    s.change("lr", 0.03)
    s.run_epoch()
    deadline = time.monotonic() + WAIT
    while s.epochs_done < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert s.wait_idle(WAIT)
    steps(s, 3)
    s.stop()
    assert s.join(WAIT)
    record = json.loads(json.dumps(s.record()))  # as saved
    assert len(record["changes"]) == 8 and record["steps"] == s.steps
    again = replay(record, digits)
    assert again.steps == s.steps and again.changes == s.changes
    assert isinstance(again.trainer, SplitTrainer) == (engine == "split")
    assert same_weights(again.network.get_state(), s.network.get_state())
    assert [r.val_loss for r in again.history] == [r.val_loss for r in s.history]
    plain = replay({**record, "changes": []}, digits)  # the log matters
    assert not same_weights(plain.network.get_state(), s.network.get_state())


def test_a_saved_lab_run_opens_in_serve_and_replays_from_the_command_line(
        digits: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from digitnet.cli import main
    from digitnet.predict import load_predictor
    from digitnet.report import check_metrics
    from digitnet.web import create_app

    s = session(digits, epochs=50)
    steps(s, 4)
    s.change("lr", 0.001)
    steps(s, 3)
    s.pause()
    folder = s.save(tmp_path / "run")
    s.stop()
    assert s.join(WAIT)
    for name in ("model.npz", "metrics.json", "lab.json", "report.html",
                 "learning_curves.png", "first_layer_weights.png"):
        assert (folder / name).is_file(), name
    metrics = json.loads((folder / "metrics.json").read_text())
    check_metrics(metrics)
    assert metrics["lab"]["steps"] == 7 and len(metrics["lab"]["changes"]) == 1
    assert load_record(folder)["config"] == s.config.to_dict()
    model = load_predictor(folder)
    assert same_weights(model.network.get_state(), s.network.get_state())
    with TestClient(create_app(model)) as client:
        info = client.get("/api/model").json()
        assert info["test_accuracy"] == metrics["test_accuracy"]
    assert main(["lab", "--replay", str(folder)]) == 0
    assert "identical to" in capsys.readouterr().out
    with pytest.raises(Exception, match="already holds a run"):
        s.save(folder)


# -------------------------------------------------------------- divergence, hints
def test_a_diverging_run_is_stopped_by_the_guard_and_says_so(digits: Any) -> None:
    s = session(digits, optimizer="sgd", lr=5.0)
    s.run()
    assert s.state == "diverged" and s.finished
    assert "diverged" in s.message and "check_loss" in s.message
    assert "lower learning rate" in s.message
    assert not math.isfinite(s.batch_loss[-1]) or s.batch_loss[-1] > 100
    assert same_weights(s.network.get_state(), s.initial_state)  # never NaN: back to the start
    found = {h["id"]: h for h in hints(s.facts())}
    assert found["diverged"]["fixes"][0]["restart"] == {"lr": 0.5}
    from digitnet.web.lab import to_json

    assert "NaN" not in to_json(s.snapshot())


def healthy() -> dict[str, Any]:
    """Facts of a run that learns well (a digits run of the default recipe, measured)."""
    return {
        "state": "running", "diverged": None, "steps": 400, "n_classes": 10,
        "recent_losses": [0.2, 0.15, 0.3, 0.1, 0.25, 0.2], "first_losses": [2.4, 2.2],
        "grad_norm": [1.1, 0.9, 1.2], "update_ratio": [4e-3, 5e-3, 3e-3],
        "inactive": [0.15, 0.16], "measured_steps": 20,
        "history": [{"epoch": e, "train_loss": 1 / e, "train_accuracy": 0.9 + 0.01 * e,
                     "val_loss": 1.2 / e, "val_accuracy": 0.88 + 0.01 * e} for e in (1, 2, 3, 4)],
        "activation": "relu", "init_scale": 1.0, "optimizer": "adam", "has_validation": True,
        "lr": 4e-3, "momentum": 0.9, "weight_decay": 0.0, "dropout": 0.0, "batch_size": 32,
        "augment": "none",
    }


OVERFITTING = [{"epoch": e, "train_loss": 0.5 / e, "train_accuracy": min(1.0, 0.8 + 0.05 * e),
                "val_loss": [0.5, 0.35, 0.3, 0.33, 0.36, 0.4][e - 1],
                "val_accuracy": 0.9} for e in range(1, 7)]

CRAFTED = {
    "diverged": {"diverged": "training diverged in epoch 1", "state": "diverged"},
    "loss-rising": {"recent_losses": [9.0, 12.0, 8.0, 15.0, 11.0]},
    "updates-large": {"update_ratio": [0.3, 0.5, 1.2]},
    "updates-tiny": {"update_ratio": [2e-6, 3e-6, 1e-6]},
    "dead-units": {"inactive": [0.2, 0.75]},
    "vanishing-gradients": {"grad_norm": [1e-5, 3e-3, 0.8], "activation": "sigmoid"},
    "overfitting": {"history": OVERFITTING},
}


def test_a_healthy_run_gets_no_hint() -> None:
    assert hints(healthy()) == []


@pytest.mark.parametrize("hint_id", list(CRAFTED))
def test_each_rule_fires_on_its_statistic_and_offers_a_fix(hint_id: str) -> None:
    found = hints({**healthy(), **CRAFTED[hint_id]})
    assert [h["id"] for h in found] == [hint_id]
    hint = found[0]
    assert hint["title"] and len(hint["why"]) > 80 and hint["fixes"]
    for fix in hint["fixes"]:
        assert fix["label"]
        if "setting" in fix:
            assert fix["setting"] in LIVE_SETTINGS
        else:
            LabConfig.from_dict({"dataset": "digits", **fix["restart"]})  # a valid run


@pytest.mark.parametrize(("hint_id", "quiet"), [
    ("dead-units", {"activation": "leaky_relu"}),  # leaky units still learn
    ("dead-units", {"inactive": [0.39, 0.2]}),
    ("vanishing-gradients", {"grad_norm": [0.05, 0.3, 1.0]}),  # 1/20: not vanishing
    ("updates-large", {"update_ratio": [0.01, 0.05, 3.0]}),  # one tiny output layer is not a rule
    ("updates-tiny", {"grad_norm": [0.0, 0.0, 0.0]}),  # a dead network: lr is not the cure
    ("loss-rising", {"recent_losses": [2.5, 2.6, 2.4, 2.5, 2.5]}),  # about guessing
    ("overfitting", {"history": OVERFITTING[:4]}),  # lowest 2 epochs ago but not rising yet
])
def test_rules_stay_quiet_just_short_of_their_threshold(hint_id: str, quiet: dict[str, Any]
                                                        ) -> None:
    assert hint_id not in [h["id"] for h in hints({**healthy(), **CRAFTED[hint_id], **quiet})]


def test_every_rule_is_tested() -> None:
    ids = set()
    for crafted in CRAFTED.values():
        ids.update(h["id"] for h in hints({**healthy(), **crafted}))
    assert len(RULES) == 6 and len(ids) == 7  # rule_updates has two hints


@pytest.mark.parametrize(("experiment", "expected"), [
    ("lr-too-high", "diverged"), ("sigmoid-tiny-init", "vanishing-gradients"),
    ("relu-huge-init", "dead-units"),
])
def test_the_experiments_show_what_they_promise(digits: Any, experiment: str, expected: str
                                                ) -> None:
    e = next(e for e in EXPERIMENTS if e.id == experiment)
    s = session(digits, **{**e.config, "epochs": 3})
    seen: set[str] = set()
    s.start()
    deadline = time.monotonic() + WAIT
    while not s.finished and s.state != "done" and time.monotonic() < deadline:
        seen.update(h["id"] for h in hints(s.facts()))
        time.sleep(0.002)
    s.stop()
    assert s.join(WAIT)
    seen.update(h["id"] for h in hints(s.facts()))
    assert expected in seen


def test_the_overfitting_experiment_overfits_without_dropout(digits: Any) -> None:
    s = session(digits, subset=300, epochs=40)
    s.run()
    assert "overfitting" in [h["id"] for h in hints(s.facts())]


def test_every_experiment_is_a_valid_run_with_a_command() -> None:
    for e in EXPERIMENTS:
        LabConfig.from_dict(e.config)
        assert e.look and e.expect and e.steps
        if e.command:
            assert e.command.startswith("digitnet train --dataset digits")


# --------------------------------------------------------------------- gradient check
@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "leaky_relu"])
def test_the_gradient_check_passes_for_a_healthy_network(digits: Any, activation: str) -> None:
    s = session(digits, activation=activation, epochs=1)
    s.run()
    result = s.gradient_check()
    assert result["ok"], result
    assert len(result["layers"]) == 3
    assert all(r["W"] < 1e-6 and r["b"] < 1e-6 for r in result["layers"])
    assert result["step"] == s.steps and s.snapshot(full=False)["gradient_check"] == result


def test_the_gradient_check_catches_a_broken_backward_pass(digits: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    s = session(digits, activation="tanh", epochs=1)
    s.run()
    # backpropagation that forgets the activation's derivative
    monkeypatch.setattr(ActivationLayer, "backward", lambda self, delta: delta)
    result = s.gradient_check()
    assert not result["ok"]
    errors = [r["error"] for r in result["layers"]]
    assert errors[0] > 1e-2 and errors[1] > 1e-2 and errors[2] < 1e-6  # the output layer is fine
    monkeypatch.undo()

    def scaled(self: Dense, delta: np.ndarray) -> Any:  # a gradient 10 % too large
        out = original(self, delta)
        self.grad_W *= 1.1
        return out

    original = Dense.backward
    monkeypatch.setattr(Dense, "backward", scaled)
    assert all(r["W"] > 1e-2 for r in s.gradient_check()["layers"])


def test_gradient_check_of_any_network() -> None:
    rng = np.random.default_rng(0)
    net = MLP(6, (7, 5), 3, activation="sigmoid", dtype="float32", seed=2)
    x, y = rng.normal(size=(5, 6)), rng.integers(0, 3, 5)
    result = gradient_check(net, net.get_state(), x, y, entries=100, smoothing=0.1)
    assert result["ok"] and [r["W_checked"] for r in result["layers"]] == [42, 35, 15]


# ------------------------------------------------------------------------- the API
@pytest.fixture
def lab(digits: Any, tmp_path: Path) -> Any:
    from digitnet.web.lab import Lab

    lab = Lab(runs_dir=tmp_path / "runs", datasets={"digits": digits})
    yield lab
    lab.close()
    if lab.session is not None:
        lab.session.join(WAIT)


@pytest.fixture
def client(lab: Any) -> Any:
    from digitnet.web.lab import create_lab_app

    with TestClient(create_lab_app(lab, allowed_hosts=["testserver", "127.0.0.1"])) as c:
        yield c


def test_the_page_and_its_files_are_served_locally(client: Any) -> None:
    import re

    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers[
        "content-security-policy"]
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "/static/lab.js" in refs and "/static/lab.css" in refs
    for ref in refs:
        assert ref.startswith("/static/") and client.get(ref).status_code == 200
    for element in ("chart-loss", "chart-grad", "chart-dead", "tiles", "augment", "gradcheck",
                    "changes", "hints", "experiments", "btn-epoch", "slow", "live-lr"):
        assert f'id="{element}"' in page.text
    assert client.get("/api/health").json() == {"status": "ok"}


def test_options_name_the_data_sets_choices_and_experiments(client: Any) -> None:
    options = client.get("/api/lab/options").json()
    assert [d["name"] for d in options["datasets"]] == ["digits", "mnist", "fashion-mnist"]
    assert options["defaults"]["digits"]["hidden"] == [128, 64]
    assert options["live_settings"] == LIVE_SETTINGS
    assert {e["id"] for e in options["experiments"]} >= {
        "lr-too-high", "sigmoid-tiny-init", "relu-huge-init", "batch-1-vs-256", "dropout",
        "augmentation"}


def test_a_run_through_the_api(client: Any, lab: Any) -> None:
    assert client.get("/api/lab/state").json() == {"state": "none"}
    assert client.post("/api/lab/control", json={"action": "pause"}).status_code == 409
    started = client.post("/api/lab/start", json={"config": {"dataset": "digits", "epochs": 100},
                                                  "paused": True})
    assert started.status_code == 200 and started.json()["state"] == "ready"
    stepped = client.post("/api/lab/control", json={"action": "step"}).json()
    assert stepped["steps"] == 1 and stepped["state"] == "paused"
    change = client.post("/api/lab/settings", json={"setting": "lr", "value": 0.01})
    assert change.status_code == 200 and change.json()["takes_effect"] == "at the next step"
    later = client.post("/api/lab/settings", json={"setting": "augment", "value": "affine"}
                        ).json()
    assert later["takes_effect"] == "at the next epoch" and later["pending"] == {
        "lr": 0.01, "augment": "affine"}
    client.post("/api/lab/control", json={"action": "step"})
    state = client.get("/api/lab/state").json()
    assert [c["setting"] for c in state["changes"]] == ["lr"]
    assert state["settings"]["lr"] == 0.01 and state["pending"] == {"augment": "affine"}
    assert client.post("/api/lab/control", json={"action": "slow", "delay": 0.5}).json()[
        "delay"] == 0.5
    check = client.post("/api/lab/gradient-check", json={})
    assert check.status_code == 200 and check.json()["ok"]
    saved = client.post("/api/lab/save", json={})
    assert saved.status_code == 200, saved.text
    folder = Path(saved.json()["folder"])
    assert folder.parent == lab.runs_dir and (folder / "lab.json").is_file()
    assert saved.json()["serve"] == f"digitnet serve --model {folder}"
    stopped = client.post("/api/lab/control", json={"action": "stop"}).json()
    assert stopped["state"] == "stopped"
    refused = client.post("/api/lab/settings", json={"setting": "lr", "value": 0.1})
    assert refused.status_code == 409 and "over" in refused.json()["error"]


@pytest.mark.parametrize(("path", "body", "status", "word"), [
    ("/api/lab/start", {"config": {"dataset": "digits", "lr": -1}}, 400, "lr"),
    ("/api/lab/start", {"config": {"dataset": "digits", "subset": 10**6}}, 400, "subset"),
    ("/api/lab/start", {"config": [1, 2]}, 400, "config"),
    ("/api/lab/start", {"config": {"dataset": "mnist"}}, 409, "not on this computer"),
    ("/api/lab/control", {"action": "dance"}, 400, "action"),
    ("/api/lab/control", {"action": "slow", "delay": 60}, 400, "delay"),
    ("/api/lab/settings", {"setting": "lr"}, 400, "value"),
    ("/api/lab/settings", {"setting": "hidden", "value": [3]}, 400, "cannot be changed"),
    ("/api/lab/settings", {"setting": "momentum", "value": 0.5}, 400, "momentum"),
])
def test_bad_requests_get_json_errors(client: Any, path: str, body: Any, status: int,
                                      word: str) -> None:
    client.post("/api/lab/start", json={"config": {"dataset": "digits"}, "paused": True})
    response = client.post(path, json=body)
    assert response.status_code == status and word in response.json()["error"]


def test_malformed_bodies_and_foreign_hosts_are_refused(client: Any) -> None:
    bad = client.post("/api/lab/start", content=b"{not json",
                      headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]
    big = client.post("/api/lab/start", content=b" " * 100_000)
    assert big.status_code == 413
    assert client.post("/api/lab/start", json=[1]).status_code == 400
    foreign = client.get("/api/lab/state", headers={"host": "attacker.example"})
    assert foreign.status_code == 400 and "not accepted" in foreign.json()["error"]


def test_the_event_stream_sends_snapshots(client: Any) -> None:
    client.post("/api/lab/start", json={"config": {"dataset": "digits", "epochs": 10**4}})
    with client.stream("GET", "/api/lab/events?limit=2") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    events = [block for block in text.split("\n\n") if block.startswith("event: state")]
    assert len(events) == 2
    first, second = (json.loads(e.split("data: ", 1)[1]) for e in events)
    assert first["state"] == "running" and "histograms" in first  # the pictures come first
    assert second["steps"] > first["steps"] and "batches" in second


def test_a_new_run_stops_the_old_one(client: Any, lab: Any) -> None:
    client.post("/api/lab/start", json={"config": {"dataset": "digits", "epochs": 1000}})
    first = lab.session
    client.post("/api/lab/start", json={"config": {"dataset": "digits", "epochs": 2}})
    assert first.join(WAIT) and first.state == "stopped" and lab.session is not first


def test_the_lab_command_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    import httpx

    with served("lab", "--port", "0", "--runs-dir", str(tmp_path)) as (process, url):
        assert "lab.js" in httpx.get(url, timeout=10).text
        started = httpx.post(url + "api/lab/start", timeout=30,
                             json={"config": {"dataset": "digits", "epochs": 10**4}})
        assert started.status_code == 200
        with httpx.stream("GET", url + "api/lab/events", timeout=10) as stream:
            assert next(stream.iter_text())  # an event stream is open while it stops
            err = stop_with_ctrl_c(process)
    assert process.returncode == 0 and "stopped" in err and "Traceback" not in err


def test_lab_defaults_to_loopback_on_port_8001() -> None:
    from digitnet.cli import build_parser

    args = build_parser().parse_args(["lab"])
    assert (args.host, args.port, args.runs_dir) == ("127.0.0.1", 8001, "runs")


@pytest.mark.mnist
def test_a_lab_run_on_an_mnist_subset(mnist: Any) -> None:
    s = LabSession(LabConfig.from_dict({"dataset": "mnist", "subset": 2000, "epochs": 1}), mnist)
    s.run()
    assert s.state == "done" and len(s.x_train) == 2000 and s.history[0].val_accuracy > 0.8
    snap = s.snapshot()
    assert snap["tiles"]["shape"] == [64, 28, 28] and snap["preview"]["shape"] == [8, 28, 28]
    assert s.gradient_check()["ok"]
