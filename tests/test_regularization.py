"""Dropout, label smoothing, max-norm and weight averaging: gradients against finite
differences, the formulas written out, every engine alike, and resumable bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import blobs, numerical_gradient, relative_error

from digitnet.config import TrainConfig
from digitnet.data.preprocessing import MinMaxScaler
from digitnet.engine import make_trainer, split
from digitnet.layers import Dropout, SoftmaxCrossEntropy
from digitnet.network import MLP
from digitnet.regularizers import WeightAverage, max_norm
from digitnet.training import fit

TOLERANCE = 1e-6


@pytest.mark.parametrize("target_kind", ["labels", "one_hot"])
def test_label_smoothing_is_cross_entropy_against_smoothed_targets(target_kind: str) -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(7, 5)) * 2
    labels = rng.integers(0, 5, 7)
    targets = labels if target_kind == "labels" else np.eye(5)[labels]
    eps = 0.1
    smooth = (1 - eps) * np.eye(5)[labels] + eps / 5
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    expected = -(smooth * log_p).sum(axis=1).mean()
    ce = SoftmaxCrossEntropy(eps)
    assert ce.forward(logits.copy(), targets) == pytest.approx(expected, rel=1e-12)
    analytic = ce.backward().copy()
    np.testing.assert_allclose(analytic, (np.exp(log_p) - smooth) / 7, atol=1e-14)
    numeric = numerical_gradient(lambda: SoftmaxCrossEntropy(eps).forward(logits.copy(),
                                                                          targets), logits)
    assert relative_error(analytic, numeric) < TOLERANCE


def test_no_smoothing_is_the_plain_loss_bit_for_bit() -> None:
    rng = np.random.default_rng(1)
    logits, labels = rng.normal(size=(9, 4)).astype(np.float32), rng.integers(0, 4, 9)
    a, b = SoftmaxCrossEntropy(), SoftmaxCrossEntropy(0.0)
    assert a.forward(logits.copy(), labels) == b.forward(logits.copy(), labels)
    np.testing.assert_array_equal(a.backward(), b.backward())


def test_dropout_drops_a_share_p_and_keeps_the_mean() -> None:
    layer = Dropout(0.3, np.random.default_rng(2))
    x = np.ones((400, 500))
    np.testing.assert_array_equal(layer.forward(x.copy()), x)  # inactive: unchanged
    layer.active = True
    buffer = x.copy()
    out = layer.forward(buffer).copy()
    assert abs(np.mean(out == 0) - 0.3) < 0.01
    values = np.unique(out)
    assert len(values) == 2 and values[0] == 0 and values[1] == pytest.approx(1 / 0.7)
    assert abs(out.mean() - 1.0) < 0.01
    delta = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(delta, out)  # the same mask, the same scale
    np.testing.assert_array_equal(buffer, x)  # the values before dropout are back


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_network_gradient_with_dropout_and_smoothing(activation: str) -> None:
    """With the masks held fixed (the dropout generator reset before every pass), the
    backward pass is the gradient of the loss the forward pass computed."""
    rng = np.random.default_rng(3)
    net = MLP(6, (9, 7), 3, activation=activation, dtype="float64", seed=5, dropout=0.3,
              input_dropout=0.2)
    net.loss.smoothing = 0.1
    for layer in net.dense:
        layer.b[...] = rng.normal(scale=0.3, size=layer.b.shape)
    x, y = rng.normal(size=(8, 6)), rng.integers(0, 3, 8)
    start = net.dropout_rng.bit_generator.state

    def loss() -> float:
        net.dropout_rng.bit_generator.state = start
        return net.loss_and_gradients(x.copy(), y)[0]

    loss()
    analytic = [g.copy() for g in net.gradients()]
    assert len(net.dropouts) == 3 and len(net.layers) == 8
    for param, grad in zip(net.parameters(), analytic, strict=True):
        assert np.abs(grad).max() > 0
        assert relative_error(grad, numerical_gradient(loss, param)) < TOLERANCE
    # inference ignores dropout: the same as a network without it
    plain = MLP(6, (9, 7), 3, activation=activation, dtype="float64", seed=5)
    plain.set_state(net.get_state())
    np.testing.assert_array_equal(net.predict_proba(x), plain.predict_proba(x))


def test_max_norm_caps_each_units_incoming_weights() -> None:
    net = MLP(10, (6,), 3, dtype="float64", seed=0)
    net.dense[0].W[:, 0] *= 50
    before = [layer.W.copy() for layer in net.dense]
    norms = [np.linalg.norm(W, axis=0) for W in before]
    c = float(np.median(np.concatenate(norms)))
    max_norm(net, c)
    for W, old, n in zip((layer.W for layer in net.dense), before, norms, strict=True):
        after = np.linalg.norm(W, axis=0)
        assert (after <= c * (1 + 1e-12)).all()
        np.testing.assert_array_equal(W[:, n <= c], old[:, n <= c])  # those within: untouched
        np.testing.assert_allclose(W[:, n > c], old[:, n > c] * (c / n[n > c]))


def test_weight_average_follows_its_formula() -> None:
    p = [np.zeros(3), np.ones(2)]
    avg = WeightAverage(p, 0.9)
    expected = [a.copy() for a in p]
    rng = np.random.default_rng(4)
    for t in range(30):
        for a in p:
            a += rng.normal(size=a.shape)
        beta = min(0.9, (1 + t) / (10 + t))
        expected = [e + (1 - beta) * (a - e) for e, a in zip(expected, p, strict=True)]
        avg.update(p)
    for got, want in zip(avg.average, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    net = MLP(4, (3,), 2, dtype="float64", seed=0)
    avg = WeightAverage(net.parameters(), 0.5)
    own = net.get_state()
    for w in net.parameters():
        w += 1.0
    avg.update(net.parameters())
    with avg.swapped_in(net):
        np.testing.assert_allclose(net.parameters()[0], avg.average[0])
    np.testing.assert_array_equal(net.parameters()[0], own[0] + 1.0)


REGULARIZED = dict(dropout=0.2, input_dropout=0.1, label_smoothing=0.1, max_norm=2.0,
                   ema=0.9)


def _data() -> tuple[np.ndarray, np.ndarray, MinMaxScaler]:
    x, y = blobs(96, n_classes=3, n_features=12, seed=4)
    return x, y, MinMaxScaler.fit(x)


def _net(config: TrainConfig, seed: int = 3) -> MLP:
    return MLP(12, config.hidden, 3, dtype=config.dtype, seed=seed, dropout=config.dropout,
               input_dropout=config.input_dropout)


def test_every_engine_trains_the_same_regularized_network(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split, "MIN_SPLIT_WORK", 0)  # the fast engine splits every layer
    x, y, scaler = _data()
    config = TrainConfig(hidden=(16, 8), epochs=4, batch_size=16, lr=0.01,
                         validation_fraction=0, dtype="float64", **REGULARIZED)
    weights = []
    for engine in (None, make_trainer):
        net = _net(config)
        result = fit(net, x, y, scaler, config, x[:40], y[:40], engine=engine)  # type: ignore[arg-type]
        assert result.epochs_run == 4
        weights.append(np.concatenate([p.ravel() for p in net.get_state()]))
    np.testing.assert_allclose(weights[1], weights[0], rtol=1e-9, atol=1e-12)
    plain = _net(TrainConfig(hidden=(16, 8), dtype="float64"))
    fit(plain, x, y, scaler, TrainConfig(hidden=(16, 8), epochs=4, batch_size=16, lr=0.01,
                                         validation_fraction=0, dtype="float64"))
    assert not np.allclose(weights[0], np.concatenate([p.ravel() for p in plain.get_state()]))


def test_the_averaged_weights_are_kept_and_the_constraint_holds() -> None:
    x, y, scaler = _data()
    config = TrainConfig(hidden=(16,), epochs=3, batch_size=16, lr=0.05,
                         validation_fraction=0, max_norm=1.0, ema=0.9)
    states: list[dict] = []
    net = _net(config)
    fit(net, x, y, scaler, config, checkpoint=states.append)
    last = states[-1]
    kept = [a.astype(np.float32) for a in last["average"]["average"]]
    for a, b in zip(net.get_state(), kept, strict=True):
        np.testing.assert_array_equal(a, b)  # the average, not the last step's weights
    raw = MLP(12, (16,), 3, seed=0)
    raw.set_state(last["network"])
    for layer in raw.dense:  # the constraint holds on the trained weights
        assert (np.linalg.norm(layer.W, axis=0) <= 1.0 + 1e-5).all()


@pytest.mark.parametrize("engine", [None, make_trainer])
def test_resuming_a_regularized_run_gives_the_same_weights(
        engine: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split, "MIN_SPLIT_WORK", 0)
    x, y, scaler = _data()
    config = TrainConfig(hidden=(16, 8), epochs=4, batch_size=16, lr=0.01,
                         validation_fraction=0, **REGULARIZED)
    states: list[dict] = []
    whole = _net(config)
    fit(whole, x, y, scaler, config, x[:40], y[:40], engine=engine,  # type: ignore[arg-type]
        checkpoint=states.append)
    for state in states[:-1]:
        resumed = _net(config, seed=99)
        fit(resumed, x, y, scaler, config, x[:40], y[:40], engine=engine,  # type: ignore[arg-type]
            resume_from=state)
        for a, b in zip(resumed.get_state(), whole.get_state(), strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_checkpoint_file_keeps_the_dropout_generator_and_the_average(tmp_path) -> None:
    from digitnet.runs import load_checkpoint, save_checkpoint

    x, y, scaler = _data()
    config = TrainConfig(hidden=(16,), epochs=2, batch_size=16, validation_fraction=0,
                         dropout=0.5, ema=0.9)
    states: list[dict] = []
    fit(_net(config), x, y, scaler, config, checkpoint=states.append)
    save_checkpoint(tmp_path, states[0], {"config": config.to_dict()})
    loaded, _ = load_checkpoint(tmp_path)
    assert loaded["dropout_rng"] == states[0]["dropout_rng"]
    assert loaded["average"]["t"] == states[0]["average"]["t"]
    for a, b in zip(loaded["average"]["average"], states[0]["average"]["average"],
                    strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_model_file_remembers_its_dropout(tmp_path) -> None:
    from digitnet.model_io import TrainedModel, load_model, save_model

    net = MLP(4, (3,), 2, seed=0, dropout=0.5, input_dropout=0.2)
    save_model(TrainedModel(net, MinMaxScaler(0.0, 1.0), ("a", "b"), (2, 2)),
               tmp_path / "m.npz")
    again = load_model(tmp_path / "m.npz").network
    assert (again.dropout, again.input_dropout) == (0.5, 0.2) and len(again.dropouts) == 2


# ------------------------------------------------------------------ augmentation

def _images(n: int = 96, seed: int = 5) -> tuple[np.ndarray, np.ndarray, MinMaxScaler]:
    """Small 8x8 'images' of three classes (a bar in one of three places)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.integers(0, 40, (n, 8, 8))
    for i, c in enumerate(y):
        x[i, 1:7, 1 + 2 * c:3 + 2 * c] = 200
    x = x.reshape(n, 64).astype(np.uint8)
    return x, y, MinMaxScaler.fit(x)


@pytest.mark.parametrize("augment", ["affine", "elastic"])
def test_augmented_training_is_the_same_in_every_engine_and_prefetched(
        augment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split, "MIN_SPLIT_WORK", 0)
    x, y, scaler = _images()
    before = x.copy()
    config = TrainConfig(hidden=(16, 8), epochs=3, batch_size=16, lr=0.01,
                         validation_fraction=0, dtype="float64", augment=augment)
    weights = []
    for engine in (None, make_trainer):
        net = MLP(64, config.hidden, 3, dtype="float64", seed=3)
        fit(net, x, y, scaler, config, engine=engine)  # type: ignore[arg-type]
        weights.append(np.concatenate([p.ravel() for p in net.get_state()]))
    np.testing.assert_allclose(weights[1], weights[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(x, before)  # the caller's images are never written
    plain = MLP(64, config.hidden, 3, dtype="float64", seed=3)
    fit(plain, x, y, scaler, TrainConfig(**{**config.to_dict(), "augment": "none"}))
    assert not np.allclose(weights[0], np.concatenate([p.ravel() for p in plain.get_state()]))


def test_each_epoch_trains_on_that_epochs_distortions(monkeypatch: pytest.MonkeyPatch) -> None:
    from digitnet.augment import AUGMENTERS
    from digitnet.batches import BatchLoader

    seen: list[np.ndarray] = []
    original = BatchLoader.replace_images

    def spy(self: BatchLoader, images: np.ndarray) -> None:
        seen.append(images.copy())
        original(self, images)

    monkeypatch.setattr(BatchLoader, "replace_images", spy)
    x, y, scaler = _images()
    config = TrainConfig(hidden=(8,), epochs=3, batch_size=16, validation_fraction=0,
                         augment="elastic", seed=4)
    fit(MLP(64, (8,), 3, seed=0), x, y, scaler, config, engine=make_trainer)
    augmenter = AUGMENTERS["elastic"]
    assert augmenter is not None and len(seen) == 3
    for epoch, images in enumerate(seen, start=1):  # settings for 28x28, scaled to 8x8
        np.testing.assert_array_equal(images, augmenter.scaled_for((8, 8)).epoch(x, 4, epoch))
    assert not np.array_equal(seen[0], seen[1])


@pytest.mark.parametrize("engine", [None, make_trainer])
def test_resuming_an_augmented_run_gives_the_same_weights(
        engine: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split, "MIN_SPLIT_WORK", 0)
    x, y, scaler = _images()
    config = TrainConfig(hidden=(16, 8), epochs=3, batch_size=16, lr=0.01,
                         validation_fraction=0, augment="elastic", dropout=0.1, ema=0.9)
    states: list[dict] = []
    whole = MLP(64, (16, 8), 3, seed=3, dropout=0.1)
    fit(whole, x, y, scaler, config, x[:30], y[:30], engine=engine,  # type: ignore[arg-type]
        checkpoint=states.append)
    resumed = MLP(64, (16, 8), 3, seed=99, dropout=0.1)
    fit(resumed, x, y, scaler, config, x[:30], y[:30], engine=engine,  # type: ignore[arg-type]
        resume_from=states[0])
    for a, b in zip(resumed.get_state(), whole.get_state(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_keep_last_keeps_the_last_epoch_and_best_the_lowest_validation_loss() -> None:
    x, y, scaler = _data()
    base = dict(hidden=(16,), epochs=6, batch_size=16, lr=0.01, validation_fraction=0)
    wrong = (y[:40] + 1) % 3  # a validation set the network gets worse on as it learns
    results = {}
    for keep in ("best", "last"):
        config = TrainConfig(**base, keep=keep)
        net = _net(config)
        states: list[dict] = []
        result = fit(net, x, y, scaler, config, x[:40], wrong, checkpoint=states.append)
        losses = [r.val_loss for r in result.history]
        results[keep] = (result, net, states, losses)
    result, best_net, states, losses = results["best"]
    assert result.best_epoch == int(np.argmin(losses)) + 1 < 6
    for a, b in zip(best_net.get_state(), states[result.best_epoch - 1]["network"],
                    strict=True):
        np.testing.assert_array_equal(a, b)
    result, net, states, losses = results["last"]
    assert result.best_epoch == 6
    for a, b in zip(net.get_state(), states[-1]["network"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(best_net.dense[0].W, net.dense[0].W)


def test_init_scale_multiplies_the_initial_weights() -> None:
    plain, scaled = MLP(12, (8,), 3, seed=1), MLP(12, (8,), 3, seed=1, init_scale=0.01)
    for a, b in zip(plain.dense, scaled.dense, strict=True):
        np.testing.assert_allclose(b.W, a.W * np.float32(0.01), rtol=1e-6)
        np.testing.assert_array_equal(b.b, a.b)
    assert scaled.config()["init_scale"] == 0.01
