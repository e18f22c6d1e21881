"""Activations, layers and the network's construction (initialization, shapes, validation)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from digitnet.activations import ACTIVATIONS, LEAKY_RELU_SLOPE, get_activation
from digitnet.layers import Dense, SoftmaxCrossEntropy, init_weights, log_softmax, softmax
from digitnet.network import MLP

Z = np.array([[-3.0, -0.5, 0.25, 2.0], [10.0, -10.0, 0.75, -1.5]])

REFERENCE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda z: np.where(z > 0, z, 0.0),
    "leaky_relu": lambda z: np.where(z > 0, z, LEAKY_RELU_SLOPE * z),
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "tanh": np.tanh,
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_forward_matches_formula(name: str) -> None:
    a = get_activation(name).forward(Z.copy())
    np.testing.assert_allclose(a, REFERENCE[name](Z), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_backward_is_derivative(name: str) -> None:
    act = get_activation(name)
    a = act.forward(Z.copy())
    delta = np.full_like(Z, 2.0)
    act.backward(a, delta)
    h = 1e-6
    numeric = (REFERENCE[name](Z + h) - REFERENCE[name](Z - h)) / (2 * h)
    np.testing.assert_allclose(delta, 2.0 * numeric, rtol=1e-6, atol=1e-9)


def test_sigmoid_and_tanh_are_finite_for_huge_inputs() -> None:
    z = np.array([[1e4, -1e4, 1e300, -1e300]])
    for name in ("sigmoid", "tanh"):
        with np.errstate(over="raise", divide="raise", invalid="raise"):
            a = get_activation(name).forward(z.copy())
        assert np.all(np.isfinite(a))
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        s = get_activation("sigmoid").forward(z.copy())
    np.testing.assert_array_equal(s, [[1.0, 0.0, 1.0, 0.0]])


def test_unknown_activation_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"'swish'.*relu, leaky_relu, sigmoid, tanh"):
        get_activation("swish")
    with pytest.raises(ValueError, match="swish"):
        MLP(4, (3,), 2, activation="swish")


# ---------------------------------------------------------------------------- layers


def test_dense_forward_and_backward_shapes_and_values() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3))
    W, b = rng.normal(size=(3, 4)), rng.normal(size=4)
    layer = Dense(W, b)
    z = layer.forward(x)
    np.testing.assert_allclose(z, x @ W + b)
    delta = rng.normal(size=(5, 4))
    dx = layer.backward(delta)
    assert dx is not None
    np.testing.assert_allclose(layer.grad_W, x.T @ delta)
    np.testing.assert_allclose(layer.grad_b, delta.sum(axis=0))
    np.testing.assert_allclose(dx, delta @ W.T)
    first = Dense(W.copy(), b.copy(), needs_input_grad=False)
    first.forward(x)
    assert first.backward(delta) is None
    np.testing.assert_allclose(first.grad_W, x.T @ delta)


def test_softmax_rows_are_probabilities_and_shift_invariant() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(6, 10)) * 5
    p = softmax(logits)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert np.all(p > 0)
    np.testing.assert_allclose(softmax(logits + 1000.0), p)
    np.testing.assert_allclose(np.exp(log_softmax(logits)), p)


def test_softmax_cross_entropy_value() -> None:
    logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]])
    labels = np.array([0, 2])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(p[[0, 1], labels]))
    loss = SoftmaxCrossEntropy()
    assert loss.forward(logits.copy(), labels) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_array_equal(loss.predictions, [0, 1])
    one_hot = np.eye(3)[labels]
    assert loss.forward(logits.copy(), one_hot) == pytest.approx(expected, rel=1e-12)
    soft = np.array([[0.5, 0.5, 0.0], [0.0, 0.25, 0.75]])  # probability rows as targets
    expected_soft = -np.mean((soft * np.log(p)).sum(axis=1))
    assert loss.forward(logits.copy(), soft) == pytest.approx(expected_soft, rel=1e-12)


@pytest.mark.parametrize("big", [1e4, 1e6])
def test_softmax_cross_entropy_is_stable_for_huge_logits(big: float) -> None:
    logits = np.array([[big, -big, 0.0], [-big, big, 0.0], [0.0, 0.0, big]])
    labels = np.array([0, 0, 2])
    loss = SoftmaxCrossEntropy()
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        value = loss.forward(logits.copy(), labels)
        grad = loss.backward()
        assert loss.forward(logits.copy(), np.eye(3)[labels]) == pytest.approx(value)
    assert value == pytest.approx(2 * big / 3)  # the second sample is off by 2*big
    assert np.isfinite(value)
    # Sample 1 is confidently wrong by 2*big; the others are (almost exactly) right.
    assert value == pytest.approx(2 * big / 3, rel=1e-9)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad[1], [-1 / 3, 1 / 3, 0.0], atol=1e-12)


# -------------------------------------------------------------------- initialization


def test_he_initialization_variance_for_relu_family() -> None:
    fan_in, fan_out = 800, 600
    for name in ("relu", "leaky_relu"):
        net = MLP(fan_in, (fan_out,), 10, activation=name, dtype="float64", seed=3)
        w = net.dense[0].W
        assert abs(w.mean()) < 0.01 * np.sqrt(2 / fan_in)
        assert w.var() == pytest.approx(2.0 / fan_in, rel=0.02)
        # Gaussian, not uniform: values beyond 3 standard deviations exist.
        assert np.abs(w).max() > 3 * np.sqrt(2.0 / fan_in)


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_glorot_initialization_bounds_for_saturating_activations(name: str) -> None:
    fan_in, fan_out = 700, 500
    net = MLP(fan_in, (fan_out,), 10, activation=name, dtype="float64", seed=4)
    w = net.dense[0].W
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.99 * limit
    assert w.var() == pytest.approx(2.0 / (fan_in + fan_out), rel=0.02)


def test_output_layer_is_glorot_and_biases_start_at_zero() -> None:
    net = MLP(30, (400, 300), 200, activation="relu", seed=5)
    out = net.dense[-1].W
    assert np.abs(out).max() <= np.sqrt(6.0 / (300 + 200))
    for layer in net.dense:
        assert layer.b.shape == (layer.W.shape[1],)
        assert not layer.b.any()


def test_init_weights_rejects_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="'lecun'"):
        init_weights(3, 4, "lecun", np.random.default_rng(0), np.float32)


# --------------------------------------------------------------------------- network


def test_mlp_shapes_dtype_and_parameter_count() -> None:
    net = MLP(20, (16, 8), 4, seed=0)
    assert net.layer_sizes == [20, 16, 8, 4]
    assert net.describe() == "20-16-8-4 relu"
    assert net.n_parameters == 20 * 16 + 16 + 16 * 8 + 8 + 8 * 4 + 4
    assert all(p.dtype == np.float32 for p in net.parameters())
    x = np.random.default_rng(0).random((7, 20), dtype=np.float32)
    assert net.forward(x).shape == (7, 4)
    proba = net.predict_proba(x, batch_size=3)
    assert proba.shape == (7, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(net.predict(x), proba.argmax(axis=1))
    # Weight decay's targets: the W matrices, not the biases.
    decayed = [p.shape for p, d in zip(net.parameters(), net.decayed(), strict=True) if d]
    assert decayed == [(20, 16), (16, 8), (8, 4)]
    assert [p is layer.W for p, layer in zip(net.parameters()[::2], net.dense, strict=True)]
    net64 = MLP(20, (16,), 4, dtype="float64")
    assert all(p.dtype == np.float64 for p in net64.parameters())


def test_predict_in_batches_equals_one_batch() -> None:
    net = MLP(12, (9,), 3, dtype="float64", seed=2)
    x = np.random.default_rng(2).random((50, 12))
    np.testing.assert_allclose(net.predict_proba(x, batch_size=7), net.predict_proba(x))


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((4, (), 2), {}, "at least one hidden layer"),
        ((4, (3, 0), 2), {}, "positive"),
        ((4, (3,), 1), {}, "n_classes >= 2"),
        ((0, (3,), 2), {}, "positive"),
        ((4, (3,), 2), {"dtype": "float16"}, "'float16'"),
    ],
)
def test_mlp_rejects_bad_arguments(args: tuple, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MLP(*args, **kwargs)


def test_predict_rejects_wrong_input_width() -> None:
    net = MLP(5, (3,), 2)
    with pytest.raises(ValueError, match=r"\(n_samples, 5\)"):
        net.predict(np.zeros((2, 6), dtype=np.float32))


def test_state_round_trip_and_shape_checks() -> None:
    net = MLP(5, (4,), 3, seed=0)
    other = MLP(5, (4,), 3, seed=1)
    other.set_state(net.get_state())
    for a, b in zip(net.parameters(), other.parameters(), strict=True):
        np.testing.assert_array_equal(a, b)
    state = net.get_state()
    state[0][...] = 7.0
    assert not np.array_equal(net.parameters()[0], state[0]), "get_state must copy"
    with pytest.raises(ValueError, match="expected 4 parameter arrays"):
        net.set_state(state[:2])
    with pytest.raises(ValueError, match="shape mismatch"):
        net.set_state([np.zeros((4, 5)), *state[1:]])
