"""Training: overfitting a tiny batch, every descent variant, weight decay, early stopping,
determinism and a clean Ctrl-C."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import blob_dataset, blobs

from digitnet.data.preprocessing import MinMaxScaler
from digitnet.experiment import split_for_training, train_run
from digitnet.network import MLP
from digitnet.optimizers import Optimizer, learning_rate
from digitnet.training import TrainConfig, evaluate_loss_accuracy, fit


def _quiet_config(**overrides: object) -> TrainConfig:
    settings: dict[str, object] = {"validation_fraction": 0.0, "schedule": "constant"}
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]


def test_small_network_overfits_a_tiny_batch() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(32, 20), dtype=np.uint8)  # random inputs, random labels:
    y = rng.integers(0, 10, size=32)  # only memorization can fit them
    scaler = MinMaxScaler.fit(x)
    net = MLP(20, (64,), 10, seed=0)
    config = _quiet_config(hidden=(64,), epochs=150, batch_size=32, lr=1e-2)
    result = fit(net, x, y, scaler, config)
    np.testing.assert_array_equal(net.predict(scaler.transform(x)), y)
    assert result.history[-1].train_accuracy == 1.0
    assert result.history[-1].train_loss < 0.05
    assert result.epochs_run == 150 and not result.interrupted


class _StepCounter:
    """Counts optimizer steps by wrapping ``Optimizer.step``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = Optimizer.step

        def counting_step(opt: Optimizer, lr: float | None = None) -> None:
            self.count += 1
            original(opt, lr)

        monkeypatch.setattr(Optimizer, "step", counting_step)


@pytest.mark.parametrize(
    ("optimizer", "batch_size", "lr", "steps_per_epoch"),
    [
        ("sgd", 1, 0.02, 60),  # stochastic gradient descent: one sample per step
        ("sgd", 16, 0.2, 4),  # mini-batch: ceil(60 / 16) steps
        ("sgd", 60, 0.5, 1),  # full batch: one step per epoch
        ("momentum", 16, 0.05, 4),
        ("nesterov", 16, 0.05, 4),
        ("adam", 16, 0.01, 4),
    ],
)
def test_every_descent_variant_decreases_the_loss(
    monkeypatch: pytest.MonkeyPatch, optimizer: str, batch_size: int, lr: float,
    steps_per_epoch: int,
) -> None:
    x, y = blobs(20, n_classes=3, n_features=8, seed=1)
    scaler = MinMaxScaler.fit(x)
    net = MLP(8, (16,), 3, seed=1)
    initial_loss, _ = evaluate_loss_accuracy(net, x, y, scaler)
    counter = _StepCounter(monkeypatch)
    epochs = 8
    config = _quiet_config(hidden=(16,), optimizer=optimizer, batch_size=batch_size, lr=lr,
                           epochs=epochs)
    result = fit(net, x, y, scaler, config)
    final_loss, final_accuracy = evaluate_loss_accuracy(net, x, y, scaler)
    assert counter.count == steps_per_epoch * epochs
    assert final_loss < 0.5 * initial_loss
    assert final_accuracy > 0.9
    losses = [r.train_loss for r in result.history]
    assert losses[-1] < losses[0]


def test_weight_decay_gives_smaller_weights() -> None:
    x, y = blobs(20, n_classes=3, n_features=8, seed=2)
    scaler = MinMaxScaler.fit(x)
    norms = {}
    for decay in (0.0, 0.05):
        net = MLP(8, (16,), 3, seed=2)
        fit(net, x, y, scaler, _quiet_config(hidden=(16,), optimizer="sgd", lr=0.1,
                                            batch_size=8, epochs=20, weight_decay=decay))
        norms[decay] = sum(float(np.sum(layer.W**2)) for layer in net.dense)
    assert norms[0.05] < 0.8 * norms[0.0]


def test_history_records_the_scheduled_learning_rate() -> None:
    x, y = blobs(10, n_classes=3, n_features=8, seed=3)
    scaler = MinMaxScaler.fit(x)
    config = _quiet_config(hidden=(8,), epochs=4, batch_size=10, lr=0.01, schedule="onecycle")
    result = fit(MLP(8, (8,), 3), x, y, scaler, config)
    steps = 3 * config.epochs  # 30 samples in batches of 10
    for record in result.history:
        last_step = record.epoch * 3 - 1
        assert record.lr == pytest.approx(learning_rate("onecycle", 0.01, last_step, steps))
    assert [r.epoch for r in result.history] == [1, 2, 3, 4]


def _train_with_validation(config: TrainConfig, seed: int = 4):  # type: ignore[no-untyped-def]
    x, y = blobs(30, n_classes=3, n_features=8, seed=seed, spread=60.0)  # overlapping
    scaler = MinMaxScaler.fit(x)
    net = MLP(8, config.hidden, 3, seed=config.seed)
    snapshots: dict[int, list[np.ndarray]] = {}

    def log(line: str) -> None:  # called after each epoch: remember that epoch's weights
        if line.startswith("epoch"):
            snapshots[len(snapshots) + 1] = net.get_state()

    result = fit(net, x[:60], y[:60], scaler, config, x[60:], y[60:], log=log)
    return net, result, snapshots, (x[60:], y[60:], scaler)


def test_best_validation_epoch_is_restored() -> None:
    config = _quiet_config(hidden=(64,), optimizer="adam", lr=0.05, batch_size=8, epochs=25)
    net, result, snapshots, (x_val, y_val, scaler) = _train_with_validation(config)
    val_losses = [r.val_loss for r in result.history]
    assert all(v is not None for v in val_losses)
    best = int(np.argmin(val_losses)) + 1
    assert result.best_epoch == best
    assert best < result.epochs_run, "the run should overfit, or this test checks nothing"
    for p, s in zip(net.parameters(), snapshots[best], strict=True):
        np.testing.assert_array_equal(p, s)
    loss, _ = evaluate_loss_accuracy(net, x_val, y_val, scaler)
    assert loss == pytest.approx(result.history[best - 1].val_loss)


def test_early_stopping_after_patience_epochs() -> None:
    config = _quiet_config(hidden=(64,), optimizer="adam", lr=0.05, batch_size=8, epochs=40,
                           patience=3)
    net, result, snapshots, _ = _train_with_validation(config)
    assert result.stopped_early
    assert result.epochs_run == result.best_epoch + 3
    assert result.epochs_run < 40
    for p, s in zip(net.parameters(), snapshots[result.best_epoch], strict=True):
        np.testing.assert_array_equal(p, s)


# ----------------------------------------------------------------------- determinism


def _fit_weights(seed: int) -> list[np.ndarray]:
    x, y = blobs(15, n_classes=4, n_features=10, seed=5)
    scaler = MinMaxScaler.fit(x)
    net = MLP(10, (12, 6), 4, seed=seed)
    fit(net, x[:50], y[:50], scaler,
        TrainConfig(hidden=(12, 6), epochs=3, batch_size=7, seed=seed), x[50:], y[50:])
    return net.get_state()


def test_fit_is_bit_for_bit_reproducible() -> None:
    first, second, other = _fit_weights(7), _fit_weights(7), _fit_weights(8)
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a, b)
    assert not all(np.array_equal(a, c) for a, c in zip(first, other, strict=True))


def test_the_validation_split_is_stratified_seeded_and_optional() -> None:
    dataset = blob_dataset(n_train_per_class=12, n_test_per_class=4)
    config = TrainConfig(validation_fraction=0.25, seed=3)
    x_tr, y_tr, x_val, y_val = split_for_training(dataset, config)
    assert x_val is not None and y_val is not None
    assert len(x_tr) + len(x_val) == len(dataset.x_train)
    per_class = np.bincount(dataset.y_train)
    assert np.all(np.abs(np.bincount(y_val, minlength=10) - 0.25 * per_class) < 1)
    def pairs(x: np.ndarray, y: np.ndarray) -> set[tuple[object, ...]]:
        return {(*row, label) for row, label in zip(x.tolist(), y.tolist(), strict=True)}
    assert pairs(x_tr, y_tr) | pairs(x_val, y_val) == pairs(dataset.x_train, dataset.y_train)
    again = split_for_training(dataset, config)
    assert np.array_equal(again[2], x_val)  # type: ignore[arg-type]
    other = split_for_training(dataset, TrainConfig(validation_fraction=0.25, seed=4))
    assert not np.array_equal(other[2], x_val)  # type: ignore[arg-type]
    whole = split_for_training(dataset, TrainConfig(validation_fraction=0))
    assert whole[0] is dataset.x_train and whole[2] is None and whole[3] is None


def test_train_run_is_bit_for_bit_reproducible() -> None:
    dataset = blob_dataset(n_train_per_class=12, n_test_per_class=4)
    config = TrainConfig(hidden=(16,), epochs=3, batch_size=16, seed=3)
    a = train_run(dataset, config)
    b = train_run(dataset, config)
    c = train_run(dataset, TrainConfig(hidden=(16,), epochs=3, batch_size=16, seed=4))
    for pa, pb in zip(a.model.network.parameters(), b.model.network.parameters(), strict=True):
        assert np.array_equal(pa, pb)
    assert not all(
        np.array_equal(pa, pc)
        for pa, pc in zip(a.model.network.parameters(), c.model.network.parameters(), strict=True)
    )
    assert a.metrics["confusion_matrix"] == b.metrics["confusion_matrix"]
    strip = ("seconds",)
    history_a = [{k: v for k, v in r.items() if k not in strip} for r in a.metrics["history"]]
    history_b = [{k: v for k, v in r.items() if k not in strip} for r in b.metrics["history"]]
    assert history_a == history_b


# -------------------------------------------------------------------------- Ctrl-C


def interrupt_after(monkeypatch: pytest.MonkeyPatch, n_steps: int) -> None:
    """Make the optimizer (textbook or fast engine's) raise KeyboardInterrupt (as Ctrl-C
    would) at step ``n_steps + 1``."""
    from digitnet.engine.optimizers import Optimizer as FastOptimizer

    calls = {"n": 0}

    def interrupting(original: Any) -> Any:
        def step(opt: Any, lr: float | None = None) -> None:
            calls["n"] += 1
            if calls["n"] > n_steps:
                raise KeyboardInterrupt
            original(opt, lr)
        return step

    for cls in (Optimizer, FastOptimizer):
        monkeypatch.setattr(cls, "step", interrupting(cls.step))


def test_ctrl_c_keeps_the_best_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _quiet_config(hidden=(32,), optimizer="adam", lr=0.01, batch_size=8, epochs=20)
    steps_per_epoch = 60 // 8 + 1
    interrupt_after(monkeypatch, 3 * steps_per_epoch + 2)  # in the middle of epoch 4
    net, result, snapshots, _ = _train_with_validation(config)
    assert result.interrupted
    assert result.epochs_run == 3
    assert len(result.history) == 3
    best = int(np.argmin([r.val_loss for r in result.history])) + 1
    assert result.best_epoch == best
    # Not the half-trained weights of epoch 4, but those of the best validated epoch.
    for p, s in zip(net.parameters(), snapshots[best], strict=True):
        np.testing.assert_array_equal(p, s)


def test_ctrl_c_without_validation_returns_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    interrupt_after(monkeypatch, 5)
    x, y = blobs(10, n_classes=3, n_features=8, seed=6)
    lines: list[str] = []
    result = fit(MLP(8, (8,), 3), x, y, MinMaxScaler.fit(x),
                 _quiet_config(hidden=(8,), batch_size=4, epochs=5), log=lines.append)
    assert result.interrupted
    assert result.epochs_run == 0 and result.history == []
    assert any("interrupted" in line for line in lines)


def test_train_run_writes_files_after_ctrl_c(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory
) -> None:
    import json
    from pathlib import Path

    from digitnet.model_io import load_model

    dataset = blob_dataset(n_train_per_class=12, n_test_per_class=4)
    interrupt_after(monkeypatch, 12)
    out = Path(str(tmp_path)) / "run"
    outcome = train_run(dataset, TrainConfig(hidden=(16,), epochs=10, batch_size=8), out)
    assert outcome.result.interrupted
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["interrupted"] is True
    assert metrics["epochs_run"] == outcome.result.epochs_run < 10
    model = load_model(out / "model.npz")
    np.testing.assert_array_equal(model.predict(dataset.x_test),
                                  outcome.model.predict(dataset.x_test))
