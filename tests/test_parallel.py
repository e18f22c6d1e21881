"""The two-core split of the first layer (digitnet.parallel): same arithmetic with or
without the helper process, the same gradients and updates as the plain network, and a
helper that fails loudly and never outlives training."""

from __future__ import annotations

import mmap
import multiprocessing
import os
import signal
import sys
import threading
from typing import Any

import numpy as np
import pytest
from helpers import blobs

from digitnet import parallel
from digitnet.data.preprocessing import MinMaxScaler
from digitnet.layers import Dense
from digitnet.network import MLP
from digitnet.optimizers import SGD
from digitnet.parallel import (
    HelperProcess,
    HelperWork,
    RowShare,
    SplitTrainer,
    layers_to_split,
    worth_splitting,
)
from digitnet.training import PlainTrainer, TrainConfig, fit, make_trainer

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


def _trainer(kind: type[PlainTrainer | SplitTrainer], net: MLP, config: TrainConfig,
             **kwargs: Any) -> Any:
    x, y, scaler = _data()
    return kind(net, config, x, y, scaler, np.random.default_rng(7), **kwargs)


def _train(trainer: PlainTrainer | SplitTrainer, config: TrainConfig) -> list[float]:
    """Run ``config.epochs`` epochs through ``trainer``; the losses of every step."""
    losses = []
    with trainer:
        for _ in range(config.epochs):
            for xb, yb in trainer.batches.epoch():
                losses.append(trainer.step(xb, yb, config.lr)[0])
    return losses


def _is_shared(a: np.ndarray) -> bool:
    """Whether ``a`` lives in a memory map (digitnet.parallel.shared_array)."""
    base: Any = a
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)


@pytest.mark.parametrize("split_all", [False, True], ids=["first-layer", "all-layers"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
def test_split_training_follows_the_plain_network(
    optimizer: str, split_all: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In float64, the regrouped products and the two half-optimizers give the plain
    network's losses and weights up to rounding (with weight decay on the weights)."""
    if split_all:
        monkeypatch.setattr(parallel, "MIN_SPLIT_WORK", 0)
    config = _config(optimizer=optimizer, weight_decay=1e-3, dtype="float64")
    plain, split = (MLP(24, config.hidden, 4, dtype="float64", seed=1) for _ in range(2))
    plain_losses = _train(_trainer(PlainTrainer, plain, config), config)
    trainer = _trainer(SplitTrainer, split, config, use_helper=False)
    assert trainer.n_split == (3 if split_all else 1)
    split_losses = _train(trainer, config)
    np.testing.assert_allclose(split_losses, plain_losses, rtol=1e-12)
    np.testing.assert_allclose(split.flat_parameters, plain.flat_parameters, rtol=1e-10,
                               atol=1e-13)
    assert not np.array_equal(split.flat_parameters, MLP(24, config.hidden, 4, seed=1,
                                                         dtype="float64").flat_parameters)


@needs_fork
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_helper_process_gives_the_same_weights_bit_for_bit(
    optimizer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "MIN_SPLIT_WORK", 16 * 12 * 8)  # split two of three layers
    config = _config(optimizer=optimizer, weight_decay=1e-4)
    inline, helped = (MLP(24, config.hidden, 4, seed=2) for _ in range(2))
    inline_losses = _train(_trainer(SplitTrainer, inline, config, use_helper=False), config)
    helped_losses = _train(_trainer(SplitTrainer, helped, config, use_helper=True), config)
    assert inline_losses == helped_losses
    np.testing.assert_array_equal(helped.flat_parameters, inline.flat_parameters)


@needs_fork
def test_after_training_the_network_is_private_and_plain_again() -> None:
    config = _config(epochs=1)
    net = MLP(24, config.hidden, 4, seed=0)
    trainer = _trainer(SplitTrainer, net, config, use_helper=True)
    with trainer:
        assert _is_shared(net.flat_parameters)
        assert type(net.layers[0]) is not Dense
        helper = trainer.helper
        assert isinstance(helper, HelperProcess) and helper.process.is_alive()
    assert not helper.process.is_alive() and helper.process.exitcode == 0
    assert not _is_shared(net.flat_parameters) and not _is_shared(net.flat_gradients)
    assert type(net.layers[0]) is Dense and net.dense[0] is net.layers[0]
    assert np.shares_memory(net.dense[0].W, net.flat_parameters)


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
    monkeypatch.setattr(parallel, "MIN_SPLIT_WORK", 0)
    x, y, scaler = _data()
    config = _config(validation_fraction=0.25)
    rng = np.random.default_rng(0)
    assert isinstance(make_trainer(MLP(24, config.hidden, 4), config, x, y, scaler, rng),
                      SplitTrainer)
    weights = []
    for _ in range(2):
        net = MLP(24, config.hidden, 4, seed=5)
        result = fit(net, x[:120], y[:120], scaler, config, x[120:], y[120:])
        assert result.epochs_run == 3 and result.history[-1].val_accuracy is not None
        assert not _is_shared(net.flat_parameters)
        weights.append(net.flat_parameters.copy())
    np.testing.assert_array_equal(weights[0], weights[1])


@needs_fork
def test_ctrl_c_during_training_stops_the_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "MIN_SPLIT_WORK", 0)
    monkeypatch.setattr(parallel, "helper_can_run", lambda: True)
    x, y, scaler = _data()
    config = _config(epochs=5, validation_fraction=0.25)
    net = MLP(24, config.hidden, 4, seed=5)

    def interrupt(record: Any) -> None:
        if record.epoch == 2:
            raise KeyboardInterrupt

    result = fit(net, x[:120], y[:120], scaler, config, x[120:], y[120:],
                 on_epoch_end=interrupt)
    assert result.interrupted and result.epochs_run == 2
    assert not [p for p in multiprocessing.active_children() if p.name == "digitnet-helper"]
    assert not _is_shared(net.flat_parameters)


class _FailingShare(RowShare):
    def forward(self, n: int) -> Any:
        raise FloatingPointError("overflow in the helper")


def _helper_work(share_type: type[RowShare] = RowShare) -> HelperWork:
    """The helper's half (rows 12:) of a 24-12 first layer, buffers for 4 samples."""
    net = MLP(24, (12,), 4)
    net.move_parameters(*(parallel.shared_array(a.shape, a.dtype)
                          for a in (net.flat_parameters, net.flat_gradients)))
    layer = net.dense[0]
    x, delta, partial = (parallel.shared_array(shape, np.float32)
                         for shape in ((4, 24), (4, 12), (4, 12)))
    share = share_type(layer, slice(12, 24), [x], delta, None, partial)
    return HelperWork([share], SGD([layer.W[12:]], [layer.grad_W[12:]], lr=0.1))


@needs_fork
def test_an_exception_in_the_helper_is_raised_here() -> None:
    helper = HelperProcess(_helper_work(_FailingShare))
    try:
        helper.post(parallel.FORWARD, 0, 4)
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
        helper.post(parallel.FORWARD, 0, 4)
        helper.wait()
        os.kill(helper.process.pid or 0, signal.SIGKILL)
        helper.process.join()
        helper.post(parallel.FORWARD, 0, 4)
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
        for command, n in ((parallel.FORWARD, 3), (parallel.BACKWARD, 4), (parallel.UPDATE, 0)):
            helper.post(command, 0, n, lr=0.5)
            helper.wait()
    finally:
        helper.close()
    np.testing.assert_allclose(share.partial[:3], share.x[:3, 12:] @ W_before[12:], rtol=1e-6)
    grad = share.x[:, 12:].T @ share.delta
    np.testing.assert_allclose(share.grad_W[12:], grad, rtol=1e-6)
    assert not share.grad_W[:12].any()  # the other rows are not the helper's
    np.testing.assert_allclose(share.W[12:], W_before[12:] - 0.5 * grad, rtol=1e-5)
    np.testing.assert_array_equal(share.W[:12], W_before[:12])


def test_an_orphaned_helper_stops_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "SPIN_SECONDS", 0.0)
    ctl = np.zeros(6, np.int64)
    assert parallel._next_job(ctl, 0, parent=-1) is None
    ctl[parallel.SEQ] = 1
    assert parallel._next_job(ctl, 0, parent=os.getppid()) == 1


def test_when_fork_fails_the_helpers_work_runs_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork(work: Any) -> None:
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(parallel, "HelperProcess", no_fork)
    config = _config(epochs=1)
    failed, inline = (MLP(24, config.hidden, 4, seed=4) for _ in range(2))
    trainer = _trainer(SplitTrainer, failed, config, use_helper=True)
    losses = _train(trainer, config)
    assert not trainer.use_helper and isinstance(trainer.helper, parallel.InlineHelper)
    assert losses == _train(_trainer(SplitTrainer, inline, config, use_helper=False), config)
    np.testing.assert_array_equal(failed.flat_parameters, inline.flat_parameters)


def test_no_helper_from_a_thread_other_than_the_main_one() -> None:
    answers: list[bool] = []
    worker = threading.Thread(target=lambda: answers.append(parallel.helper_can_run()))
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
    plain = _trainer(PlainTrainer, MLP(24, config.hidden, 4, seed=0), config)
    trainer = _trainer(SplitTrainer, net, config, use_helper=use_helper)
    sent: list[int] = []
    helper_type = HelperProcess if use_helper else parallel.InlineHelper
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
    assert sent.count(parallel.PREPARE) == 2 * (per_epoch - 1)
    assert sent.count(parallel.LOAD) == 2


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
