"""Edits on a copy of a network (digitnet.inside), checked against a forward pass written out
with NumPy from the original weights, and against scikit-learn's metrics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import softmax as scipy_softmax
from sklearn.metrics import accuracy_score, log_loss

from digitnet.inside import (
    EditError,
    Edits,
    edited_copy,
    edited_proba,
    edited_scores,
    hidden_outputs,
    prune_smallest,
    softmax_steps,
    unit_math,
)
from digitnet.network import MLP


def network(activation: str = "relu") -> MLP:
    net = MLP(20, (12, 8), 5, activation=activation, dtype="float64", seed=4)
    rng = np.random.default_rng(1)
    for layer in net.dense:  # biases away from zero, so that shifting them shows
        layer.b[...] = rng.normal(0, 0.3, layer.b.shape)
    return net


def by_hand(net: MLP, x: np.ndarray, off: set[tuple[int, int]] = frozenset(),
            shift: dict[tuple[int, int], float] | None = None) -> tuple[np.ndarray, list]:
    """Logits and pre-activations, with a_j := 0 for the switched-off units."""
    f = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
         "sigmoid": lambda z: 1 / (1 + np.exp(-z))}[net.activation]
    shift = shift or {}
    a, zs = x, []
    for layer, dense in enumerate(net.dense):
        b = dense.b.copy()
        for (lay, unit), s in shift.items():
            if lay == layer:
                b[unit] += s
        z = a @ dense.W + b
        zs.append(z)
        if layer < len(net.dense) - 1:
            a = f(z)
            for lay, unit in off:
                if lay == layer:
                    a[:, unit] = 0
    return zs[-1], zs


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_switched_off_units_pass_on_nothing(activation: str) -> None:
    net = network(activation)
    x = np.random.default_rng(0).random((6, 20))
    off = {(0, 3), (0, 7), (1, 2)}
    edits = Edits(off=frozenset(off))
    copy = edited_copy(net, edits)
    expected, _ = by_hand(net, x, off)
    np.testing.assert_allclose(copy.forward(x.copy()), expected, rtol=1e-12, atol=1e-12)
    _, hidden = hidden_outputs(copy, x[0], edits)
    _, zs = by_hand(net, x[:1])
    for layer, unit in off:
        assert hidden[layer][unit] == 0  # shown as what the next layer receives
        m = unit_math(copy, x[0], layer, unit, edits)
        assert m["switched_off"] and m["passed_on"] == 0
        if layer == 0:  # it still computes f(z) of its own inputs
            f = {"relu": lambda z: max(z, 0.0), "tanh": np.tanh,
                 "sigmoid": lambda z: 1 / (1 + np.exp(-z))}[activation]
            assert m["output"] == pytest.approx(f(zs[0][0, unit]), abs=1e-12)


def test_the_original_network_is_untouched() -> None:
    net = network()
    before = net.get_state()
    edits = Edits(off=frozenset({(0, 1)}), bias={(2, 0): 3.0}, prune=0.5, temperature=2.0)
    edited_copy(net, edits)
    edited_scores(net, edits, np.random.default_rng(0).random((10, 20)), np.arange(10) % 5)
    for a, b in zip(net.get_state(), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_bias_shift_moves_the_weighted_sum_by_exactly_that_much() -> None:
    net = network()
    x = np.random.default_rng(2).random(20)
    for layer, unit in [(0, 4), (1, 0), (2, 3)]:
        plain = unit_math(net, x, layer, unit, Edits())
        edits = Edits(bias={(layer, unit): 1.25})
        shifted = unit_math(edited_copy(net, edits), x, layer, unit, edits)
        assert shifted["z"] == pytest.approx(plain["z"] + 1.25, abs=1e-12)
        assert shifted["bias_shift"] == 1.25
        _, zs = by_hand(net, x[None], shift={(layer, unit): 1.25})
        assert shifted["z"] == pytest.approx(zs[layer][0, unit], abs=1e-12)


def test_unit_math_adds_up_to_the_networks_own_numbers() -> None:
    net = network()
    x = np.random.default_rng(3).random(20)
    _, zs = by_hand(net, x[None])
    for layer in range(3):
        for unit in range(net.layer_sizes[layer + 1]):
            m = unit_math(net, x, layer, unit, Edits(), top=5)
            assert m["z"] == pytest.approx(zs[layer][0, unit], abs=1e-12)
            assert m["z"] == pytest.approx(m["sum_of_products"] + m["bias"], abs=1e-12)
            products = [t["product"] for t in m["terms"]]
            assert len(products) == 5 and all(
                abs(p) >= abs(q) for p, q in itertools.pairwise(products))
            assert all(t["product"] == pytest.approx(t["a"] * t["w"]) for t in m["terms"])
            if layer < 2:
                assert m["output"] == pytest.approx(max(m["z"], 0.0))
            else:
                assert m["output"] == pytest.approx(scipy_softmax(zs[2][0])[unit])
    assert len(unit_math(net, x, 0, 0, Edits())["weights"]) == 20


def test_pruning_zeroes_the_smallest_weights_in_each_layer() -> None:
    net = network()
    copy = edited_copy(net, Edits(prune=0.3))
    for old, new in zip(net.dense, copy.dense, strict=True):
        pruned = new.W == 0
        assert pruned.sum() == round(0.3 * old.W.size)
        assert np.abs(old.W[pruned]).max() <= np.abs(old.W[~pruned]).min()
        np.testing.assert_array_equal(new.W[~pruned], old.W[~pruned])
    w = np.arange(1.0, 11.0)
    prune_smallest(w, 1.0)
    assert not w.any()
    w = np.array([3.0, -1.0, 2.0])
    prune_smallest(w, 0.0)
    np.testing.assert_array_equal(w, [3.0, -1.0, 2.0])


def test_temperature_changes_the_confidence_not_the_answer() -> None:
    net = network()
    rng = np.random.default_rng(5)
    x, y = rng.random((200, 20)), rng.integers(0, 5, 200)
    logits = net.forward(x.copy())
    for t in (0.2, 1.0, 3.0):
        proba = edited_proba(net, x, t)
        np.testing.assert_allclose(proba, scipy_softmax(logits / t, axis=1), rtol=1e-10)
        scores = edited_scores(net, Edits(temperature=t), x, y)
        assert scores["accuracy"] == pytest.approx(accuracy_score(y, proba.argmax(axis=1)))
        assert scores["loss"] == pytest.approx(log_loss(y, proba, labels=range(5)), rel=1e-9)
    steps = softmax_steps(logits[0], 2.0)
    np.testing.assert_allclose(steps["probabilities"], scipy_softmax(logits[0] / 2.0))
    assert max(steps["shifted"]) == 0 and steps["sum"] == pytest.approx(sum(steps["exp"]))


def test_scores_of_an_edited_network_match_scikit_learn() -> None:
    net = network()
    rng = np.random.default_rng(6)
    x, y = rng.random((300, 20)), rng.integers(0, 5, 300)
    edits = Edits(off=frozenset({(0, 0), (1, 5)}), prune=0.2)
    proba = edited_proba(edited_copy(net, edits), x)
    scores = edited_scores(net, edits, x, y)
    assert scores["accuracy"] == pytest.approx(accuracy_score(y, proba.argmax(axis=1)))
    assert scores["loss"] == pytest.approx(log_loss(y, proba, labels=range(5)), rel=1e-9)
    assert scores["n_samples"] == 300


def test_edits_round_trip_through_json() -> None:
    edits = Edits(off=frozenset({(0, 3), (1, 1)}), bias={(2, 4): -0.5}, prune=0.25,
                  temperature=0.5)
    again = Edits.from_json(edits.to_json())
    assert again == edits and again.to_json() == edits.to_json()
    assert Edits.from_json(None).is_identity() and Edits.from_json({}).is_identity()
    assert Edits(temperature=2.0).keeps_weights() and not Edits(temperature=2.0).is_identity()


@pytest.mark.parametrize("payload, message", [
    ([1, 2], "expected an object"),
    ({"of": []}, "unknown field(s): of"),
    ({"off": [[0]]}, "off: expected a list of [layer, unit] pairs"),
    ({"off": [[0, -1]]}, "off: expected"),
    ({"off": [[0, True]]}, "off: expected"),
    ({"bias": [[0, 1, "x"]]}, "bias: expected"),
    ({"bias": [[0, 1, float("nan")]]}, "bias: expected"),
    ({"prune": "half"}, "prune: expected"),
    ({"temperature": None}, "temperature: expected"),
])
def test_malformed_edits_are_named(payload: object, message: str) -> None:
    with pytest.raises(EditError, match=None) as info:
        Edits.from_json(payload)
    assert message in str(info.value)


@pytest.mark.parametrize("edits, message", [
    (Edits(off=frozenset({(2, 0)})), "no hidden unit 0 in hidden layer 2"),  # output layer
    (Edits(off=frozenset({(0, 12)})), "no hidden unit 12 in hidden layer 0"),
    (Edits(bias={(3, 0): 1.0}), "bias: no unit 0 in layer 3"),
    (Edits(bias={(0, 0): 1e9}), "bias: the shift of unit 0 of layer 0"),
    (Edits(prune=1.5), "prune: expected a share between 0 and 1"),
    (Edits(temperature=0.0), "temperature: expected a number in (0, 100]"),
])
def test_edits_that_do_not_fit_the_network_are_refused(edits: Edits, message: str) -> None:
    with pytest.raises(EditError) as info:
        edited_copy(network(), edits)
    assert message in str(info.value)
    with pytest.raises(EditError, match="no unit 9 in layer 1"):
        unit_math(network(), np.zeros(20), 1, 9, Edits())


def test_decisive_units_are_the_fewest_strongest_that_change_the_answer() -> None:
    from digitnet.inside import decisive_units

    net = network()
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(5):
        x = rng.random(20)
        answer = int(np.argmax(net.predict_proba(x[None])[0]))
        found = decisive_units(net, x)
        if found is None:
            continue
        checked += 1
        edits, proba = found
        assert int(np.argmax(proba)) != answer
        np.testing.assert_allclose(proba, edited_proba(edited_copy(net, edits), x[None])[0])
        _, hidden = hidden_outputs(net, x, Edits())
        support = hidden[1] * net.dense[-1].W[:, answer]
        off = sorted(j for _, j in edits.off)
        strongest = sorted(int(j) for j in np.argsort(-support, kind="stable")[:len(off)])
        assert off == strongest  # the strongest supporters...
        fewer = Edits(off=frozenset((1, j) for j in np.argsort(-support, kind="stable")
                                    [:len(off) - 1]))
        assert int(np.argmax(edited_proba(edited_copy(net, fewer), x[None])[0])) == answer
    assert checked >= 3
