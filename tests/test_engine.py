"""The fast engine (digitnet.engine): the same step as the textbook trainer, the two-process
split with the same arithmetic wherever the helper's share runs, a chooser that moves it
by measured step times, and a helper that fails loudly, sleeps when unused and never
outlives training."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import blobs

from digitnet.data.preprocessing import MinMaxScaler
from digitnet.engine import FusedTrainer, make_trainer, split
from digitnet.engine.flat import FlatParameters
from digitnet.engine.optimizers import SGD
from digitnet.engine.split import (
    INLINE,
    PROCESS,
    HelperProcess,
    HelperWork,
    ModeChooser,
    RowShare,
    SplitTrainer,
    layers_to_split,
    worth_splitting,
)
from digitnet.layers import Dense
from digitnet.network import MLP
from digitnet.training import TextbookTrainer, TrainConfig, fit

needs_fork = pytest.mark.skipif(
    sys.platform != "linux", reason="the helper process is forked (Linux only)"
)


def _data() -> tuple[Any, Any, MinMaxScaler]:
    x, y = blobs(40, n_classes=4, n_features=24, seed=3)
    return x, y, MinMaxScaler.fit(x)


def _config(**overrides: Any) -> TrainConfig:
    settings: dict[str, Any] = {"hidden": (12, 8), "epochs": 3, "batch_size": 16, "lr": 0.01,
                                "schedule": "onecycle", "validation_fraction": 0.0}
    settings.update(overrides)
    return TrainConfig(**settings)


def _trainer(kind: Any, net: MLP, config: TrainConfig, **kwargs: Any) -> Any:
    x, y, scaler = _data()
    return kind(net, config, x, y, scaler, np.random.default_rng(7), **kwargs)


def _train(trainer: Any, config: TrainConfig) -> list[float]:
    """Run ``config.epochs`` epochs through ``trainer``; the losses of every step."""
    losses = []
    with trainer:
        for _ in range(config.epochs):
            for xb, yb in trainer.batches.epoch():
                losses.append(trainer.step(xb, yb, config.lr)[0])
    return losses


def _weights(net: MLP) -> np.ndarray:
    return np.concatenate([p.ravel() for p in net.parameters()])


def _is_shared(a: np.ndarray) -> bool:
    """Whether ``a`` lives in a memory map (split.shared_array)."""
    import mmap

    base: Any = a
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)


def test_training_imports_no_engine_module() -> None:
    """The learner's path (training -> network -> layers -> optimizers) stands alone."""
    code = ("import sys, digitnet.training, digitnet.optimizers; "
            "print(sorted(m for m in sys.modules if m.startswith('digitnet.engine')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_the_report_imports_no_training_code() -> None:
    code = ("import sys, digitnet.report; print(sorted(m for m in sys.modules if m in "
            "('digitnet.training', 'digitnet.optimizers', 'digitnet.experiment') "
            "or m.startswith('digitnet.engine')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_fit_runs_the_textbook_step_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Any] = []
    original = TextbookTrainer.__init__

    def spy(self: Any, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(TextbookTrainer, "__init__", spy)
    x, y, scaler = _data()
    net = MLP(24, (12,), 4)
    fit(net, x, y, scaler, _config(hidden=(12,), epochs=1))
    assert len(built) == 1
    assert all(type(p) is np.ndarray and p.base is None for p in net.parameters())


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
def test_fused_trainer_follows_the_textbook(optimizer: str) -> None:
    """One flat vector and the regrouped updates: the textbook's losses and weights in
    float64, up to rounding."""
    config = _config(optimizer=optimizer, weight_decay=1e-3, dtype="float64")
    plain, fused = (MLP(24, config.hidden, 4, dtype="float64", seed=1) for _ in range(2))
    plain_losses = _train(_trainer(TextbookTrainer, plain, config), config)
    fused_losses = _train(_trainer(FusedTrainer, fused, config), config)
    np.testing.assert_allclose(fused_losses, plain_losses, rtol=1e-10)
    np.testing.assert_allclose(_weights(fused), _weights(plain), rtol=1e-9, atol=1e-12)
    assert not np.array_equal(_weights(fused), _weights(MLP(24, config.hidden, 4, seed=1,
                                                            dtype="float64")))


@pytest.mark.parametrize("split_all", [False, True], ids=["first-layer", "all-layers"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
def test_split_training_follows_the_plain_network(
    optimizer: str, split_all: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In float64, the regrouped products and the two half-optimizers give the textbook
    step's losses and weights up to rounding (with weight decay on the weights)."""
    if split_all:
        monkeypatch.setattr(split, "MIN_SPLIT_WORK", 0)
    config = _config(optimizer=optimizer, weight_decay=1e-3, dtype="float64")
    plain, halves = (MLP(24, config.hidden, 4, dtype="float64", seed=1) for _ in range(2))
    plain_losses = _train(_trainer(TextbookTrainer, plain, config), config)
    trainer = _trainer(SplitTrainer, halves, config, use_helper=False)
    assert trainer.n_split == (3 if split_all else 1)
    split_losses = _train(trainer, config)
    np.testing.assert_allclose(split_losses, plain_losses, rtol=1e-10)
    np.testing.assert_allclose(_weights(halves), _weights(plain), rtol=1e-9, atol=1e-12)


@needs_fork
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_helper_process_gives_the_same_weights_bit_for_bit(
    optimizer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(split, "MIN_SPLIT_WORK", 16 * 12 * 8)  # split two of three layers
    config = _config(optimizer=optimizer, weight_decay=1e-4)
    inline, helped = (MLP(24, config.hidden, 4, seed=2) for _ in range(2))
    inline_losses = _train(_trainer(SplitTrainer, inline, config, use_helper=False), config)
    trainer = _trainer(SplitTrainer, helped, config, use_helper=True, adaptive=False)
    helped_losses = _train(trainer, config)
    assert trainer.info()["steps"] == {PROCESS: len(helped_losses), INLINE: 0}
    assert inline_losses == helped_losses
    np.testing.assert_array_equal(_weights(helped), _weights(inline))


class _Scripted(ModeChooser):
    """Moves the helper's share by a fixed script, whatever the times say."""

    def __init__(self, script: list[str]) -> None:
        super().__init__()
        self.script, self.i = script, 0

    def record(self, seconds: float | None) -> str:
        self.steps[self.mode] += 1
        self.mode = self.script[self.i % len(self.script)]
        self.i += 1
        return self.mode


@needs_fork
@pytest.mark.parametrize("script", [[PROCESS, INLINE], [INLINE, INLINE, PROCESS],
                                    [PROCESS, PROCESS, PROCESS, INLINE]])
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_the_same_weights_bit_for_bit_wherever_the_helpers_share_ran(
    optimizer: str, script: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Moving the helper's share between the processes, step after step (Adam's bias
    correction and the subnormal flush included: 3 epochs of 3 steps, flush every 4),
    changes no bit."""
    monkeypatch.setattr("digitnet.engine.optimizers.FLUSH_EVERY", 4)
    monkeypatch.setattr(split, "MIN_SPLIT_WORK", 0)
    config = _config(optimizer=optimizer, weight_decay=1e-4, validation_fraction=0.25)
    x, y, scaler = _data()
    weights, losses = [], []
    for chooser in (None, _Scripted(script)):
        net = MLP(24, config.hidden, 4, seed=2)
        trainer = SplitTrainer(net, config, x, y, scaler, np.random.default_rng(7),
                               use_helper=chooser is not None, chooser=chooser)
        losses.append(_train(trainer, config))
        weights.append(_weights(net))
        if chooser is not None:
            assert chooser.steps[PROCESS] > 0 and chooser.steps[INLINE] > 0
    assert losses[0] == losses[1]
    np.testing.assert_array_equal(weights[0], weights[1])


@needs_fork
def test_after_training_the_network_is_private_and_plain_again() -> None:
    config = _config(epochs=1)
    net = MLP(24, config.hidden, 4, seed=0)
    own = [*net.parameters(), *net.gradients()]
    layers = list(net.layers)
    trainer = _trainer(SplitTrainer, net, config, use_helper=True)
    with trainer:
        assert all(_is_shared(p) for p in net.parameters())
        assert type(net.layers[0]) is not Dense
        helper = trainer.helper.process
        assert isinstance(helper, HelperProcess) and helper.process.is_alive()
    assert not helper.process.is_alive() and helper.process.exitcode == 0
    assert all(a is b for a, b in zip([*net.parameters(), *net.gradients()], own, strict=True))
    assert not any(_is_shared(p) for p in net.parameters())
    assert net.layers == layers and type(net.layers[0]) is Dense
    assert net.dense[0] is net.layers[0]


def test_worth_splitting_only_large_first_layers() -> None:
    assert worth_splitting(MLP(784, (256, 128), 10), 256)  # the default MNIST recipe
    assert worth_splitting(MLP(784, (128, 64), 10), 128)  # the benchmark's network
    assert not worth_splitting(MLP(64, (128, 64), 10), 32)  # the digits recipe
    assert not worth_splitting(MLP(784, (128, 64), 10), 1)  # stochastic gradient descent
    assert layers_to_split(MLP(784, (256, 128), 10), 256) == 2  # 784x256 and 256x128
    assert layers_to_split(MLP(784, (128, 64), 10), 128) == 1


def test_fit_splits_large_first_layers_and_stays_deterministic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(split, "MIN_SPLIT_WORK", 0)
    x, y, scaler = _data()
    config = _config(validation_fraction=0.25)
    rng = np.random.default_rng(0)
    assert isinstance(make_trainer(MLP(24, config.hidden, 4), config, x, y, scaler, rng),
                      SplitTrainer)
    weights = []
    for _ in range(2):
        net = MLP(24, config.hidden, 4, seed=5)
        result = fit(net, x[:120], y[:120], scaler, config, x[120:], y[120:],
                     engine=make_trainer)
        assert result.epochs_run == 3 and result.history[-1].val_accuracy is not None
        assert result.trainer_info["trainer"] == "split"
        assert not any(_is_shared(p) for p in net.parameters())
        weights.append(_weights(net))
    np.testing.assert_array_equal(weights[0], weights[1])


def test_small_networks_get_the_one_process_fused_trainer() -> None:
    x, y, scaler = _data()
    config = _config()
    trainer = make_trainer(MLP(24, config.hidden, 4), config, x, y, scaler,
                           np.random.default_rng(0))
    assert isinstance(trainer, FusedTrainer)


@needs_fork
def test_ctrl_c_during_training_stops_the_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split, "MIN_SPLIT_WORK", 0)
    monkeypatch.setattr(split, "helper_can_run", lambda: True)
    x, y, scaler = _data()
    config = _config(epochs=5, validation_fraction=0.25)
    net = MLP(24, config.hidden, 4, seed=5)

    def interrupt(record: Any) -> None:
        if record.epoch == 2:
            raise KeyboardInterrupt

    result = fit(net, x[:120], y[:120], scaler, config, x[120:], y[120:],
                 on_epoch_end=interrupt, engine=make_trainer)
    assert result.interrupted and result.epochs_run == 2
    assert not [p for p in multiprocessing.active_children() if p.name == "digitnet-helper"]
    assert not any(_is_shared(p) for p in net.parameters())


class _FailingShare(RowShare):
    def forward(self, n: int) -> Any:
        raise FloatingPointError("overflow in the helper")


def _helper_work(share_type: type[RowShare] = RowShare) -> HelperWork:
    """The helper's half (rows 12:) of a 24-12 first layer, buffers for 4 samples."""
    net = MLP(24, (12,), 4)
    FlatParameters(net, split.shared_array).attach()
    layer = net.dense[0]
    x, delta, partial = (split.shared_array(shape, np.float32)
                         for shape in ((4, 24), (4, 12), (4, 12)))
    share = share_type(layer, slice(12, 24), [x], delta, None, partial)
    return HelperWork([share], SGD([layer.W[12:]], [layer.grad_W[12:]], lr=0.1))


@needs_fork
def test_an_exception_in_the_helper_is_raised_here() -> None:
    helper = HelperProcess(_helper_work(_FailingShare))
    try:
        helper.wake()
        helper.post(split.FORWARD, 0, 4)
        with pytest.raises(RuntimeError, match="helper process failed: FloatingPointError: "
                                               "overflow in the helper"):
            helper.wait()
    finally:
        helper.close()
    assert not helper.process.is_alive()


@needs_fork
def test_a_helper_that_dies_is_reported_not_waited_for_forever() -> None:
    helper = HelperProcess(_helper_work())
    try:
        helper.wake()
        helper.post(split.FORWARD, 0, 4)
        helper.wait()
        os.kill(helper.process.pid or 0, signal.SIGKILL)
        helper.process.join()
        helper.post(split.FORWARD, 0, 4)
        with pytest.raises(RuntimeError, match="ended unexpectedly"):
            helper.wait()
    finally:
        helper.close()


@needs_fork
def test_the_helper_computes_its_rows_and_updates_them() -> None:
    work = _helper_work()
    share = work.shares[0]
    rng = np.random.default_rng(0)
    share.x[...] = rng.random(share.x.shape)
    share.delta[...] = rng.random(share.delta.shape)
    W_before = share.W.copy()
    helper = HelperProcess(work)
    try:
        helper.wake()
        for command, layer, n in ((split.FORWARD, 0, 3), (split.BACKWARD, 0, 4),
                                  (split.UPDATE, 1, 0)):
            helper.post(command, layer, n, lr=0.5)
            helper.wait()
    finally:
        helper.close()
    np.testing.assert_allclose(share.partial[:3], share.x[:3, 12:] @ W_before[12:], rtol=1e-6)
    grad = share.x[:, 12:].T @ share.delta
    np.testing.assert_allclose(share.grad_W[12:], grad, rtol=1e-6)
    assert not share.grad_W[:12].any()  # the other rows are not the helper's
    np.testing.assert_allclose(share.W[12:], W_before[12:] - 0.5 * grad, rtol=1e-5)
    np.testing.assert_array_equal(share.W[:12], W_before[:12])


@needs_fork
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc")
def test_the_helper_keeps_the_blas_limit_it_was_started_with_and_no_blas_threads() -> None:
    # Setting the thread count in the helper would create an OpenBLAS thread pool there,
    # whose new threads spin for ~0.1 s on the cores the training needs.
    from threadpoolctl import threadpool_info, threadpool_limits

    if not any(i["internal_api"] == "openblas" and i["num_threads"] > 1
               for i in threadpool_info()):
        pytest.skip("needs OpenBLAS with a thread pool (2 or more cores)")
    work = _helper_work()
    with threadpool_limits(1):  # as SplitTrainer does before it starts the helper
        helper = HelperProcess(work)
    try:
        helper.wake()
        for command in (split.FORWARD, split.BACKWARD, split.UPDATE):
            helper.post(command, 0, 4, lr=0.1)
            helper.wait()
        time.sleep(0.05)
        assert os.listdir(f"/proc/{helper.process.pid}/task") == [str(helper.process.pid)]
    finally:
        helper.close()


def test_an_orphaned_helper_stops_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split, "SPIN_SECONDS", 0.0)
    ctl = np.zeros(7, np.int64)
    assert split._next_job(ctl, 0, parent=-1) is None
    ctl[split.SEQ] = 1
    assert split._next_job(ctl, 0, parent=os.getppid()) == 1


def test_when_fork_fails_the_helpers_work_runs_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork(work: Any, threads: int = 1) -> None:
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(split, "HelperProcess", no_fork)
    config = _config(epochs=1)
    failed, inline = (MLP(24, config.hidden, 4, seed=4) for _ in range(2))
    trainer = _trainer(SplitTrainer, failed, config, use_helper=True)
    losses = _train(trainer, config)
    assert not trainer.use_helper and trainer.helper.process is None
    assert trainer.helper.mode == INLINE
    assert losses == _train(_trainer(SplitTrainer, inline, config, use_helper=False), config)
    np.testing.assert_array_equal(_weights(failed), _weights(inline))


def test_no_helper_from_a_thread_other_than_the_main_one() -> None:
    answers: list[bool] = []
    worker = threading.Thread(target=lambda: answers.append(split.helper_can_run()))
    worker.start()
    worker.join()
    assert answers == [False]


@pytest.mark.parametrize("use_helper", [False, pytest.param(True, marks=needs_fork)])
def test_prefetched_batches_are_the_plain_batches(
    use_helper: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper loads each next batch during the step into the other buffer (all but an
    epoch's first batch are prefetched), and the batches are exactly the plain loader's."""
    config = _config(epochs=2)
    net = MLP(24, config.hidden, 4, seed=0)
    plain = _trainer(TextbookTrainer, MLP(24, config.hidden, 4, seed=0), config)
    trainer = _trainer(SplitTrainer, net, config, use_helper=use_helper, adaptive=False)
    sent: list[int] = []
    helper_type = HelperProcess if use_helper else split.InlineHelper
    original_post = helper_type.post

    def counting_post(self: Any, command: int, *args: Any, **kwargs: Any) -> None:
        sent.append(command)
        original_post(self, command, *args, **kwargs)

    monkeypatch.setattr(helper_type, "post", counting_post)
    with trainer:
        for _ in range(config.epochs):
            expected = [(x.copy(), y) for x, y in plain.batches.epoch()]  # views: copy
            for (xb, yb), (x_plain, y_plain) in zip(trainer.batches.epoch(), expected,
                                                    strict=True):
                np.testing.assert_array_equal(xb, x_plain)
                np.testing.assert_array_equal(yb, y_plain)
                trainer.step(xb, yb, config.lr)
    per_epoch = len(trainer.batches)
    assert sent.count(split.PREPARE) == 2 * (per_epoch - 1)
    assert sent.count(split.LOAD) == 2


@pytest.mark.parametrize("use_helper", [False, pytest.param(True, marks=needs_fork)])
def test_validation_through_the_split_layers_matches_the_plain_forward(use_helper: bool) -> None:
    from digitnet.inference import evaluate_loss_accuracy

    x, y, scaler = _data()
    config = _config(dtype="float64")
    net = MLP(24, config.hidden, 4, dtype="float64", seed=6)
    trainer = _trainer(SplitTrainer, net, config, use_helper=use_helper)
    with trainer:
        trainer.step(*next(trainer.batches.epoch()), config.lr)
        split_loss, split_acc = trainer.evaluate(x, y)  # 160 samples, 10 batches
        plain_loss, plain_acc = evaluate_loss_accuracy(net, x, y, scaler)  # one 4096 batch
    assert split_loss == pytest.approx(plain_loss, rel=1e-12)
    assert split_acc == plain_acc


# ------------------------------------------------------------- where the share runs
def _feed(chooser: ModeChooser, seconds: dict[str, float], steps: int) -> list[str]:
    """Run ``steps`` steps taking ``seconds[mode]`` each; the modes they ran in."""
    modes = []
    for _ in range(steps):
        modes.append(chooser.mode)
        chooser.record(seconds[chooser.mode])
    return modes


def test_the_chooser_keeps_the_helper_process_when_it_is_faster() -> None:
    chooser = ModeChooser(probe_steps=4, first_period=8, max_period=64)
    modes = _feed(chooser, {PROCESS: 1.0, INLINE: 2.0}, 400)
    assert modes[:4] == [INLINE] * 4  # measured first, then the helper process
    assert chooser.chosen == PROCESS and chooser.switches == 0
    # Re-measured now and then, less and less often, and each time one step is enough
    # (clearly slower: the measurement is abandoned).
    assert chooser.period == 64
    assert 400 - 4 > modes.count(PROCESS) >= 400 - 4 - 2 * 9


def test_the_chooser_runs_inline_when_the_helper_does_not_pay() -> None:
    chooser = ModeChooser(probe_steps=4, first_period=8, max_period=64)
    modes = _feed(chooser, {PROCESS: 9.0, INLINE: 2.0}, 400)
    assert chooser.chosen == INLINE
    assert modes.count(PROCESS) < 20  # the helper's measurements stop after one slow step


def test_the_chooser_follows_a_change_of_load() -> None:
    chooser = ModeChooser(probe_steps=4, first_period=8, max_period=32)
    _feed(chooser, {PROCESS: 1.0, INLINE: 2.0}, 100)
    assert chooser.mode == PROCESS
    # Something else takes a core: the helper's steps slow down, the alarm measures inline.
    modes = _feed(chooser, {PROCESS: 5.0, INLINE: 2.2}, 100)
    assert chooser.chosen == INLINE and chooser.switches == 1
    assert modes[:10].count(PROCESS) <= 6 and modes[50:].count(PROCESS) < 10
    # It goes away again: within the next periods the helper is back.
    _feed(chooser, {PROCESS: 1.0, INLINE: 2.2}, 100)
    assert chooser.chosen == PROCESS and chooser.switches == 2


def test_steps_that_include_other_work_are_not_counted() -> None:
    chooser = ModeChooser(probe_steps=4)
    for _ in range(10):
        chooser.record(None)
    assert chooser.chosen is None and chooser.steps[INLINE] == 10


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@needs_fork
def test_a_helper_not_used_sleeps_and_wakes() -> None:
    work = _helper_work()
    helper = HelperProcess(work)
    try:
        pid = helper.process.pid or 0
        time.sleep(0.1)
        before = _cpu_seconds(pid)
        time.sleep(0.3)
        assert _cpu_seconds(pid) - before < 0.05  # starts asleep: blocked, no CPU
        helper.wake()
        helper.post(split.FORWARD, 0, 4)
        helper.wait()
        helper.sleep()
        time.sleep(0.05)
        before = _cpu_seconds(pid)
        time.sleep(0.3)
        assert _cpu_seconds(pid) - before < 0.05
        helper.wake()  # and it works again
        helper.post(split.FORWARD, 0, 2)
        helper.wait()
    finally:
        helper.close()
    assert helper.process.exitcode == 0


@needs_fork
def test_a_sleeping_helper_ends_with_its_parent() -> None:
    """The helper blocks on a pipe whose writing end only the parent holds."""
    code = (
        "import os, sys, time\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_engine import _helper_work\n"
        "from digitnet.engine.split import HelperProcess\n"
        "h = HelperProcess(_helper_work())\n"
        "print(h.process.pid, flush=True)\n"
        "os._exit(0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(__file__))).stdout
    pid = int(out.split()[0])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":
            break
        time.sleep(0.05)
    else:
        pytest.fail("the helper outlived its parent")


def test_blas_threads_per_process_is_half_of_what_blas_may_use(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        assert split.blas_threads_per_process() == 1
    cores = len(os.sched_getaffinity(0))
    with threadpool_limits(cores):
        assert split.blas_threads_per_process() == max(1, cores // 2)
    # A 16-core machine, BLAS allowed 16, 5 or 1 threads:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    for blas, each in ((16, 8), (5, 2), (1, 1)):
        monkeypatch.setattr(split, "_blas_threads", lambda blas=blas: blas)
        assert split.blas_threads_per_process() == each
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})  # fewer cores than
    monkeypatch.setattr(split, "_blas_threads", lambda: 16)              # BLAS threads
    assert split.blas_threads_per_process() == 1


def test_optimizer_state_carries_into_a_new_trainer() -> None:
    """Two trainers one after the other, the second continuing the first's state, train as
    one trainer does (the estimator's partial_fit relies on it)."""
    config = _config(optimizer="adam", epochs=1)
    once, twice = (MLP(24, config.hidden, 4, seed=3) for _ in range(2))
    x, y, scaler = _data()
    rng = np.random.default_rng(1)
    first = FusedTrainer(once, _config(optimizer="adam", epochs=2), x, y, scaler, rng)
    _train(first, _config(epochs=2))
    rng = np.random.default_rng(1)
    a = FusedTrainer(twice, config, x, y, scaler, rng)
    _train(a, config)
    b = FusedTrainer(twice, config, x, y, scaler, rng)
    b.load_state_dict(a.state_dict())
    _train(b, config)
    np.testing.assert_array_equal(_weights(once), _weights(twice))


# ------------------------------------------------- optimizer settings changed while training
class _Always(ModeChooser):
    """Keeps the helper's share where a script says, step after step."""

    def __init__(self, script: list[str]) -> None:
        super().__init__()
        self.script, self.i = script, 0
        self.mode = script[0]

    def record(self, seconds: float | None) -> str:
        self.steps[self.mode] += 1
        self.i += 1
        self.mode = self.script[self.i % len(self.script)]
        return self.mode


def _train_with_change(trainer: Any, config: TrainConfig, at: int, name: str,
                       value: float) -> list[float]:
    """Like :func:`_train`, with ``name`` set to ``value`` after step ``at`` (as the lab
    does it: the split's setter, else the optimizer's attribute)."""
    losses = []
    with trainer:
        for _ in range(config.epochs):
            for xb, yb in trainer.batches.epoch():
                losses.append(trainer.step(xb, yb, config.lr)[0])
                if len(losses) == at:
                    if isinstance(trainer, SplitTrainer):
                        trainer.set_optimizer_setting(name, value)
                    else:
                        optimizer = trainer.optimizer
                        if name == "momentum" and not optimizer.velocity:
                            optimizer.velocity = list(trainer.state_vectors)
                        setattr(optimizer, name, value)
    return losses


@needs_fork
@pytest.mark.parametrize(("optimizer", "name", "start", "new"), [
    ("momentum", "weight_decay", 0.0, 0.05),
    ("adam", "weight_decay", 1e-4, 0.05),
    ("nesterov", "momentum", 0.9, 0.3),
    ("momentum", "momentum", 0.0, 0.9),  # built without momentum, switched on
])
def test_optimizer_settings_changed_between_steps_reach_the_helper(
    optimizer: str, name: str, start: float, new: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change of momentum or weight decay after step 4 (of 30): the helper process's
    optimizer (its rows of every layer) takes it at the next step, as the one-process
    trainer does (float64, up to rounding), and bit for bit wherever the helper's share
    ran."""
    monkeypatch.setattr(split, "MIN_SPLIT_WORK", 0)
    config = _config(optimizer=optimizer, dtype="float64", **{name: start})
    weights, losses = {}, {}
    for kind in ("fused", "unchanged", "inline", "process", "both"):
        net = MLP(24, config.hidden, 4, dtype="float64", seed=8)
        if kind == "fused":
            trainer = _trainer(FusedTrainer, net, config)
        else:
            script = [PROCESS] if kind != "both" else [PROCESS, INLINE, INLINE]
            trainer = _trainer(SplitTrainer, net, config, use_helper=kind != "inline",
                               chooser=_Always(script))
        at = 10**9 if kind == "unchanged" else 4
        losses[kind] = _train_with_change(trainer, config, at, name, new)
        weights[kind] = _weights(net)
        if kind == "process":
            assert trainer.info()["steps"] == {PROCESS: len(losses[kind]), INLINE: 0}
    np.testing.assert_allclose(weights["process"], weights["fused"], rtol=1e-9, atol=1e-12)
    assert not np.allclose(weights["unchanged"], weights["fused"], rtol=1e-6, atol=1e-9)
    # from the next step on (momentum from a zero velocity shows one step later)
    assert losses["process"][:5] == losses["unchanged"][:5]
    assert losses["process"][5:7] != losses["unchanged"][5:7]
    for kind in ("inline", "both"):
        assert losses[kind] == losses["process"]
        np.testing.assert_array_equal(weights[kind], weights["process"])


@needs_fork
def test_a_resting_helper_sleeps_until_the_next_step() -> None:
    config = _config(epochs=1)
    rested, plain = (MLP(24, config.hidden, 4, seed=2) for _ in range(2))
    _train(_trainer(SplitTrainer, plain, config, use_helper=False), config)
    trainer = _trainer(SplitTrainer, rested, config, use_helper=True, adaptive=False)
    with trainer:
        helper = trainer.helper.process
        assert helper is not None
        for xb, yb in trainer.batches.epoch():
            trainer.step(xb, yb, config.lr)
            trainer.rest()
            assert helper.asleep  # and the next job wakes it
    assert trainer.info()["steps"] == {PROCESS: len(trainer.batches), INLINE: 0}
    np.testing.assert_array_equal(_weights(rested), _weights(plain))


@needs_fork
def test_the_helper_closes_the_sockets_it_inherits() -> None:
    import socket

    def sockets(pid: int) -> list[str]:
        links = []
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        return [link for link in links if link.startswith("socket:")]

    config = _config(epochs=1)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        trainer = _trainer(SplitTrainer, MLP(24, config.hidden, 4), config,
                           use_helper=True, adaptive=False)
        with trainer:
            for xb, yb in trainer.batches.epoch():
                trainer.step(xb, yb, config.lr)
            helper = trainer.helper.process
            assert helper is not None
            assert sockets(os.getpid())  # the server's, here
            assert sockets(helper.process.pid or 0) == []


def test_a_helper_may_fork_from_a_thread_that_says_it_may() -> None:
    answers: list[bool] = []
    worker = threading.Thread(
        target=lambda: answers.append(split.helper_can_run(any_thread=True)))
    worker.start()
    worker.join()
    assert answers == [split.helper_can_run()]
