"""The divergence guard: a loss gone NaN, infinite or exploding stops training at once, the
network keeps its last good weights, and nothing non-finite is ever saved or written."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import blobs
from sklearn.exceptions import ConvergenceWarning

from digitnet.cli import main
from digitnet.data.preprocessing import MinMaxScaler
from digitnet.engine import make_trainer
from digitnet.engine.optimizers import Optimizer as FastOptimizer
from digitnet.estimator import DigitNetClassifier
from digitnet.fileio import atomic_write_json
from digitnet.model_io import load_model, save_model
from digitnet.network import MLP
from digitnet.optimizers import Optimizer
from digitnet.training import DIVERGED_LOSS, TrainConfig, check_loss, fit


def _data() -> tuple[Any, Any, MinMaxScaler]:
    x, y = blobs(60, n_classes=3, n_features=12, seed=1)
    return x, y, MinMaxScaler.fit(x)


def poison_after(monkeypatch: pytest.MonkeyPatch, steps: int) -> None:
    """After ``steps`` optimizer steps (textbook or fast), every update writes NaN into the
    parameters, as a far too large learning rate eventually does."""
    calls = {"n": 0}

    def poisoning(original: Any) -> Any:
        def step(opt: Any, lr: float | None = None) -> None:
            original(opt, lr)
            calls["n"] += 1
            if calls["n"] > steps:
                for p in opt.params:
                    p[...] = np.nan
        return step

    for cls in (Optimizer, FastOptimizer):
        monkeypatch.setattr(cls, "step", poisoning(cls.step))


def _finite(net: MLP) -> bool:
    return all(np.isfinite(p).all() for p in net.parameters())


@pytest.mark.parametrize("loss", [float("nan"), float("inf"), DIVERGED_LOSS * 2])
def test_a_loss_gone_wrong_is_refused(loss: float) -> None:
    with pytest.raises(Exception, match="loss became"):
        check_loss(loss)
    check_loss(DIVERGED_LOSS)  # the bound itself is still a loss


@pytest.mark.parametrize("engine", [None, make_trainer])
def test_a_learning_rate_far_too_high_stops_at_once_with_the_initial_weights(
    engine: Any
) -> None:
    x, y, scaler = _data()
    net = MLP(12, (16,), 3, seed=0)
    initial = net.get_state()
    config = TrainConfig(hidden=(16,), epochs=20, batch_size=16, lr=500.0, optimizer="sgd",
                         schedule="constant", validation_fraction=0)
    result = fit(net, x, y, scaler, config, engine=engine)
    assert result.diverged is not None and "epoch 1" in result.diverged
    assert result.best_epoch == 0 and result.epochs_run == 0
    for a, b in zip(net.get_state(), initial, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("engine", [None, make_trainer])
@pytest.mark.parametrize("validation", [True, False])
def test_after_good_epochs_the_last_good_one_is_kept(
    engine: Any, validation: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y, scaler = _data()
    config = TrainConfig(hidden=(16,), epochs=6, batch_size=30, lr=0.01, schedule="constant",
                         validation_fraction=0)
    x_val, y_val = (x[150:], y[150:]) if validation else (None, None)
    x_tr, y_tr = (x[:150], y[:150]) if validation else (x, y)
    steps_per_epoch = -(-len(x_tr) // 30)
    with monkeypatch.context() as patch:
        poison_after(patch, 2 * steps_per_epoch + 1)  # in the third epoch
        net = MLP(12, (16,), 3, seed=0)
        result = fit(net, x_tr, y_tr, scaler, config, x_val, y_val, engine=engine)
    assert result.diverged is not None and "epoch 3" in result.diverged
    assert result.epochs_run == 2 and _finite(net)
    assert all(np.isfinite(r.train_loss) for r in result.history)
    assert result.best_epoch == 2 if not validation else result.best_epoch in (1, 2)
    # The kept weights are those of that epoch: the same run stopped there gives them.
    reference = MLP(12, (16,), 3, seed=0)
    fit(reference, x_tr, y_tr, scaler,
        TrainConfig(**{**config.to_dict(), "epochs": result.best_epoch}), x_val, y_val,
        engine=engine)
    for a, b in zip(net.get_state(), reference.get_state(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_command_line_saves_nothing_before_a_good_epoch(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    code = main(["train", "--dataset", "digits", "--lr", "20", "--no-plots", "--no-progress",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "diverged" in errors[0] and "--lr" in errors[0]
    assert not out.exists()


def test_the_command_line_keeps_the_epoch_before_and_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison_after(monkeypatch, 2 * 42 + 5)  # digits: 1,317 images in batches of 32, 42 a epoch
    out = tmp_path / "run"
    code = main(["train", "--dataset", "digits", "--epochs", "5", "--no-plots",
                 "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "diverged in epoch 3" in err and "--lr" in err
    text = (out / "metrics.json").read_text()
    metrics = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in metrics.json"))
    assert metrics["diverged"].startswith("training diverged in epoch 3")
    assert metrics["best_epoch"] in (1, 2) and metrics["test_accuracy"] > 0.5
    assert _finite(load_model(out).network)


def test_the_estimator_warns_and_keeps_finite_weights() -> None:
    x, y = blobs(60, n_classes=3, n_features=12, seed=1)
    est = DigitNetClassifier(hidden_layer_sizes=(16,), solver="sgd", learning_rate_init=500.0,
                             max_iter=5, random_state=0)
    with pytest.warns(ConvergenceWarning, match="diverged"):
        est.fit(x, y)
    assert np.isfinite(est.predict_proba(x)).all()
    before = est.network_.get_state()
    with pytest.warns(ConvergenceWarning, match="diverged"):
        est.partial_fit(x, y)
    for a, b in zip(est.network_.get_state(), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_sane_training_gives_no_warning() -> None:
    x, y = blobs(60, n_classes=3, n_features=12, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        DigitNetClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=0).fit(x, y)


def test_non_finite_weights_are_neither_saved_nor_loaded(tmp_path: Path) -> None:
    from digitnet.errors import ModelFileError
    from digitnet.model_io import TrainedModel

    net = MLP(12, (8,), 3, seed=0)
    model = TrainedModel(net, MinMaxScaler(0, 255), ("a", "b", "c"), (3, 4))
    good = save_model(model, tmp_path / "good.npz")
    net.dense[0].W[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        save_model(model, tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()
    with np.load(good) as archive:  # the same file with one weight made NaN by hand
        arrays = {k: archive[k] for k in archive.files}
    arrays["W1"][0, 0] = np.nan
    np.savez(tmp_path / "tampered.npz", **arrays)
    with pytest.raises(ModelFileError, match=r"tampered\.npz.*not finite"):
        load_model(tmp_path / "tampered.npz")


def test_no_nan_in_json(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "m.json", {"loss": float("nan")})
    assert not (tmp_path / "m.json").exists()
