"""Backpropagation against central finite differences, in float64.

Relative error ``||analytic - numeric|| / (||analytic|| + ||numeric||)`` must stay below 1e-6
for every activation, for the softmax cross-entropy with integer and one-hot targets, and for
every weight matrix and bias vector of a multi-layer network.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import numerical_gradient, relative_error

from digitnet.activations import ACTIVATIONS, get_activation
from digitnet.layers import SoftmaxCrossEntropy
from digitnet.network import MLP

TOLERANCE = 1e-6
KINKED = ("relu", "leaky_relu")  # not differentiable at 0


def _away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values with |z| in [0.1, 2]: central differences never straddle the kink at 0."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 2.0, size=shape)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_gradient(name: str) -> None:
    rng = np.random.default_rng(0)
    act = get_activation(name)
    z = _away_from_zero(rng, (4, 5))
    upstream = rng.normal(size=z.shape)

    def loss() -> float:  # L = sum(upstream * f(z)), so dL/dz = upstream * f'(z)
        return float((upstream * act.forward(z.copy())).sum())

    delta = upstream.copy()
    act.backward(act.forward(z.copy()), delta)
    assert relative_error(delta, numerical_gradient(loss, z)) < TOLERANCE


@pytest.mark.parametrize("target_kind", ["labels", "one_hot"])
def test_softmax_cross_entropy_gradient(target_kind: str) -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(6, 5)) * 3
    labels = rng.integers(0, 5, size=6)
    targets = labels if target_kind == "labels" else np.eye(5)[labels]
    ce = SoftmaxCrossEntropy()

    def loss() -> float:
        return SoftmaxCrossEntropy().forward(logits.copy(), targets)

    ce.forward(logits.copy(), targets)
    analytic = ce.backward().copy()
    assert relative_error(analytic, numerical_gradient(loss, logits)) < TOLERANCE


def test_soft_targets_gradient() -> None:
    """Rows of any distribution (label smoothing) use the one-hot code path: (p - y) / n."""
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(4, 3))
    targets = rng.dirichlet(np.ones(3), size=4)
    ce = SoftmaxCrossEntropy()
    ce.forward(logits.copy(), targets)
    analytic = ce.backward().copy()
    numeric = numerical_gradient(
        lambda: SoftmaxCrossEntropy().forward(logits.copy(), targets), logits
    )
    assert relative_error(analytic, numeric) < TOLERANCE


def _pre_activations(net: MLP, x: np.ndarray) -> list[np.ndarray]:
    out, zs = x, []
    for layer in net.dense[:-1]:
        z = out @ layer.W + layer.b
        zs.append(z)
        out = get_activation(net.activation).forward(z.copy())
    return zs


@pytest.mark.parametrize("target_kind", ["labels", "one_hot"])
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_network_gradient_every_parameter(name: str, target_kind: str) -> None:
    rng = np.random.default_rng(3)
    net = MLP(6, (7, 5, 4), 3, activation=name, dtype="float64", seed=11)
    # Non-zero biases, so that their gradients flow through every layer as well.
    for layer in net.dense:
        layer.b[...] = rng.normal(scale=0.3, size=layer.b.shape)
    x = rng.normal(size=(8, 6))
    labels = rng.integers(0, 3, size=8)
    targets = labels if target_kind == "labels" else np.eye(3)[labels]
    if name in KINKED:  # the check is only meaningful where the loss is differentiable
        assert min(np.abs(z).min() for z in _pre_activations(net, x)) > 1e-4

    net.loss_and_gradients(x, targets)
    analytic = [g.copy() for g in net.gradients()]

    def loss() -> float:
        return net.loss_and_gradients(x, targets)[0]

    names = [f"{kind}{i}" for i in range(1, len(net.dense) + 1) for kind in ("W", "b")]
    for pname, param, grad in zip(names, net.parameters(), analytic, strict=True):
        assert np.abs(grad).max() > 0, f"{pname}: gradient vanished, the check would be void"
        error = relative_error(grad, numerical_gradient(loss, param))
        assert error < TOLERANCE, f"{name}, {pname}: relative error {error:.2e}"


def test_loss_and_gradients_counts_correct_predictions() -> None:
    net = MLP(4, (5,), 3, dtype="float64", seed=0)
    x = np.random.default_rng(0).normal(size=(10, 4))
    predicted = net.predict(x)
    labels = predicted.copy()
    labels[:3] = (labels[:3] + 1) % 3
    _, n_correct = net.loss_and_gradients(x, labels)
    assert n_correct == 7
    _, n_correct_one_hot = net.loss_and_gradients(x, np.eye(3)[labels])
    assert n_correct_one_hot == 7


def test_network_is_stable_for_huge_inputs() -> None:
    """Inputs of +-1e4 give logits in the thousands: the loss and gradients stay finite."""
    for name in ACTIVATIONS:
        net = MLP(6, (8,), 3, activation=name, dtype="float64", seed=1)
        x = np.random.default_rng(4).choice([-1e4, 1e4], size=(5, 6))
        with np.errstate(over="raise", divide="raise", invalid="raise"):
            loss, _ = net.loss_and_gradients(x, np.array([0, 1, 2, 0, 1]))
        assert np.isfinite(loss)
        assert all(np.all(np.isfinite(g)) for g in net.gradients())
