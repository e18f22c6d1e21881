"""Poke inside a trained network: switch units off, shift biases, prune, change the temperature.

Every change is made on a **copy** of the network (:func:`edited_copy`); the model it came
from, and its file, are untouched. The edits (:class:`Edits`):

* ``off``: hidden units switched off. Unit ``j`` of hidden layer ``l`` stops passing its
  output on: row ``j`` of the next layer's weights is set to zero, so that the next layer
  computes ``z = a @ W + b`` as if ``a_j`` were 0 (whatever the activation);
* ``bias``: ``b_j`` of unit ``j`` of a layer (hidden or output) moved by a given amount;
* ``prune``: in every Dense layer the share ``prune`` of weights smallest in magnitude set to
  zero (magnitude pruning: how many of the connections does the network really need?);
* ``temperature``: the output's softmax divides the logits by ``T`` first,
  ``p = softmax(z / T)``. ``T > 1`` makes the answers less sure, ``T < 1`` surer; the most
  probable class, and so the accuracy, stays the same.

:func:`unit_math` follows one unit's arithmetic for one input number by number, and
:func:`softmax_steps` the output's: what the textbook's equations do with *this* drawing.
Layers are counted as Dense layers: ``0`` is the first hidden layer, ``len(dense) - 1``
the output layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from digitnet.config import is_finite_number, is_int
from digitnet.explain import forward_with_activations
from digitnet.layers import ActivationLayer, log_softmax, softmax
from digitnet.network import DTYPES, MLP

Array = NDArray[np.floating]

MAX_TEMPERATURE = 100.0
MAX_BIAS_SHIFT = 1000.0
TOP_TERMS = 12  # the largest input x weight products shown for a unit


class EditError(ValueError):
    """An edit that does not fit the network (a unit that does not exist, a share above 1)."""


@dataclass(frozen=True)
class Edits:
    """Changes made to a copy of a network; the default changes nothing.

    Attributes
    ----------
    off : frozenset of (layer, unit)
        Hidden units switched off (``layer`` < the number of hidden layers).
    bias : mapping (layer, unit) -> float
        Amount added to the unit's bias.
    prune : float in [0, 1]
        Share of each Dense layer's weights, smallest magnitudes first, set to zero.
    temperature : float > 0
        Softmax temperature ``T``.
    """

    off: frozenset[tuple[int, int]] = frozenset()
    bias: Mapping[tuple[int, int], float] = field(default_factory=dict)
    prune: float = 0.0
    temperature: float = 1.0

    def keeps_weights(self) -> bool:
        """True when no weight or bias changes (the temperature may)."""
        return not self.off and not any(self.bias.values()) and self.prune == 0

    def is_identity(self) -> bool:
        """True when nothing changes."""
        return self.keeps_weights() and self.temperature == 1

    def check(self, network: MLP) -> Edits:
        """``self`` when every edit fits ``network``; else :class:`EditError` naming it."""
        sizes = network.layer_sizes[1:]  # units of each Dense layer's output
        for layer, unit in self.off:
            if not (0 <= layer < len(network.hidden) and 0 <= unit < sizes[layer]):
                raise EditError(f"off: no hidden unit {unit} in hidden layer {layer} of "
                                f"{network.describe()}")
        for (layer, unit), shift in self.bias.items():
            if not (0 <= layer < len(sizes) and 0 <= unit < sizes[layer]):
                raise EditError(f"bias: no unit {unit} in layer {layer} of {network.describe()}")
            if not (is_finite_number(shift) and abs(shift) <= MAX_BIAS_SHIFT):
                raise EditError(f"bias: the shift of unit {unit} of layer {layer} must be a "
                                f"number within +-{MAX_BIAS_SHIFT:g}")
        if not (is_finite_number(self.prune) and 0 <= self.prune <= 1):
            raise EditError("prune: expected a share between 0 and 1")
        if not (is_finite_number(self.temperature)
                and 0 < self.temperature <= MAX_TEMPERATURE):
            raise EditError(f"temperature: expected a number in (0, {MAX_TEMPERATURE:g}]")
        return self

    # ---------------------------------------------------------------- JSON
    def to_json(self) -> dict[str, Any]:
        return {
            "off": [[layer, unit] for layer, unit in sorted(self.off)],
            "bias": [[layer, unit, float(s)] for (layer, unit), s in sorted(self.bias.items())
                     if s],
            "prune": float(self.prune),
            "temperature": float(self.temperature),
        }

    @classmethod
    def from_json(cls, payload: Any) -> Edits:
        """Edits from ``{"off": [[layer, unit], ...], "bias": [[layer, unit, shift], ...],
        "prune": share, "temperature": T}`` (every key optional); :class:`EditError`
        saying which field is wrong otherwise. Check it against a network with
        :meth:`check`."""
        if payload is None:
            return cls()
        if not isinstance(payload, dict):
            raise EditError("edits: expected an object with off, bias, prune, temperature")
        unknown = set(payload) - {"off", "bias", "prune", "temperature"}
        if unknown:
            raise EditError(f"edits: unknown field(s): {', '.join(sorted(unknown))}")
        off, bias = payload.get("off", []), payload.get("bias", [])
        if not (isinstance(off, list) and all(
                isinstance(p, list) and len(p) == 2 and all(is_int(v, 0) for v in p)
                for p in off)):
            raise EditError("off: expected a list of [layer, unit] pairs")
        if not (isinstance(bias, list) and all(
                isinstance(p, list) and len(p) == 3 and is_int(p[0], 0) and is_int(p[1], 0)
                and is_finite_number(p[2]) for p in bias)):
            raise EditError("bias: expected a list of [layer, unit, shift] triples")
        shifts: dict[tuple[int, int], float] = {}
        for layer, unit, shift in bias:
            shifts[(layer, unit)] = shifts.get((layer, unit), 0.0) + float(shift)
        prune = payload.get("prune", 0.0)
        temperature = payload.get("temperature", 1.0)
        if not is_finite_number(prune):
            raise EditError("prune: expected a share between 0 and 1")
        if not is_finite_number(temperature):
            raise EditError(f"temperature: expected a number in (0, {MAX_TEMPERATURE:g}]")
        return cls(frozenset((int(a), int(b)) for a, b in off), shifts, float(prune),
                   float(temperature))


def prune_smallest(W: Array, share: float) -> None:
    """Set the ``round(share * W.size)`` entries of ``W`` smallest in magnitude to zero
    (in place)."""
    k = round(share * W.size)
    if k <= 0:
        return
    if k >= W.size:
        W[...] = 0
        return
    flat = W.reshape(-1)
    flat[np.argpartition(np.abs(flat), k - 1)[:k]] = 0


def edited_copy(network: MLP, edits: Edits) -> MLP:
    """A new network with ``network``'s weights and ``edits`` applied (``network`` unchanged).
    The temperature is not a weight: :func:`edited_proba` applies it."""
    edits.check(network)
    copy = MLP(**network.config())
    copy.set_state(network.get_state())
    for dense in copy.dense:
        prune_smallest(dense.W, edits.prune)
    for (layer, unit), shift in edits.bias.items():
        copy.dense[layer].b[unit] += shift
    for layer, unit in edits.off:
        copy.dense[layer + 1].W[unit, :] = 0
    return copy


def edited_proba(network: MLP, x: Array, temperature: float = 1.0,
                 batch_size: int = 4096) -> Array:
    """``softmax(z / T)`` for the scaled inputs ``x`` ``(n, n_inputs)``, ``(n, K)``."""
    x = np.asarray(x)
    out = np.empty((len(x), network.n_classes), dtype=DTYPES[network.dtype])
    for start in range(0, len(x), batch_size):
        chunk = x[start:start + batch_size].astype(DTYPES[network.dtype], copy=False)
        out[start:start + batch_size] = softmax(network.forward(chunk) / temperature)
    return out


def edited_scores(network: MLP, edits: Edits, x: Array, y: NDArray[np.integer]
                  ) -> dict[str, float]:
    """Test accuracy and mean cross-entropy of the edited copy of ``network`` on the scaled
    inputs ``x`` and labels ``y``."""
    copy = edited_copy(network, edits)
    x = np.asarray(x)
    y = np.asarray(y)
    correct, loss = 0, 0.0
    for start in range(0, len(x), 4096):
        chunk = x[start:start + 4096].astype(DTYPES[network.dtype], copy=False)
        logp = log_softmax(copy.forward(chunk).astype(np.float64) / edits.temperature)
        labels = y[start:start + 4096]
        correct += int(np.count_nonzero(logp.argmax(axis=1) == labels))
        loss -= float(logp[np.arange(len(labels)), labels].sum())
    return {"accuracy": correct / len(y), "loss": loss / len(y), "n_samples": len(y)}


def hidden_outputs(copy: MLP, x_row: Array, edits: Edits) -> tuple[Array, list[Array]]:
    """Logits ``(K,)`` and each hidden layer's outputs for one scaled input row, with the
    switched-off units shown as 0 (what the next layer receives)."""
    logits, hidden = forward_with_activations(copy, np.asarray(x_row, DTYPES[copy.dtype])
                                              .reshape(1, -1).copy())
    hidden = [h[0] for h in hidden]
    for layer, unit in edits.off:
        hidden[layer][unit] = 0
    return logits[0], hidden


def unit_math(copy: MLP, x_row: Array, layer: int, unit: int, edits: Edits,
              top: int = TOP_TERMS) -> dict[str, Any]:
    """One unit's arithmetic for one input, number by number.

    ``z_j = sum_i a_i W_ij + b_j`` then ``a_j = f(z_j)`` (hidden) or ``p_j`` from the softmax
    (output): the inputs ``a_i`` it receives, its weights ``W_ij``, the ``top`` largest
    products ``a_i W_ij`` by magnitude, the sum of them all, the bias, ``z_j``, the output
    ``f(z_j)`` and what the next layer receives (0 for a switched-off unit).
    ``copy`` is the edited network (:func:`edited_copy`)."""
    n_dense = len(copy.dense)
    if not (0 <= layer < n_dense and 0 <= unit < copy.layer_sizes[layer + 1]):
        raise EditError(f"unit: no unit {unit} in layer {layer} of {copy.describe()}")
    logits, hidden = hidden_outputs(copy, x_row, edits)
    inputs = np.asarray(x_row, np.float64).ravel() if layer == 0 \
        else hidden[layer - 1].astype(np.float64)
    weights = copy.dense[layer].W[:, unit].astype(np.float64)
    bias = float(copy.dense[layer].b[unit])
    products = inputs * weights
    order = np.argsort(-np.abs(products), kind="stable")[:top]
    z = float(products.sum() + bias)
    output_layer = layer == n_dense - 1
    if output_layer:
        output = float(softmax(logits[None].astype(np.float64) / edits.temperature)[0, unit])
    else:  # f(z) itself: a switched-off unit computes it, and passes 0 on
        f = [x for x in copy.layers if isinstance(x, ActivationLayer)][layer]
        output = float(f.activation.forward(np.array([z]))[0])
    return {
        "layer": layer, "unit": unit,
        "kind": "output" if output_layer else "hidden",
        "activation": "softmax" if output_layer else copy.activation,
        "switched_off": (layer, unit) in edits.off,
        "bias_shift": float(edits.bias.get((layer, unit), 0.0)),
        "n_inputs": len(inputs),
        "weights": weights.tolist(),
        "terms": [{"input": int(i), "a": float(inputs[i]), "w": float(weights[i]),
                   "product": float(products[i])} for i in order],
        "sum_of_products": float(products.sum()),
        "bias": bias,
        "z": z,
        "output": output,
        "passed_on": 0.0 if (layer, unit) in edits.off else output,
    }


def decisive_units(network: MLP, x_row: Array) -> tuple[Edits, Array] | None:
    """The fewest units of the last hidden layer, strongest supporters of the answer first,
    whose switching off changes the answer for the scaled input ``x_row``: the edits and the
    edited network's probabilities, or ``None`` when even all of them do not.

    A unit ``j`` supports class ``c`` by ``a_j W_jc``, its share of the logit ``z_c``."""
    _, hidden = hidden_outputs(network, x_row, Edits())
    layer = len(network.hidden) - 1
    answer = int(np.argmax(network.predict_proba(np.asarray(x_row).reshape(1, -1))[0]))
    support = hidden[layer].astype(np.float64) * network.dense[-1].W[:, answer]
    order = [int(j) for j in np.argsort(-support, kind="stable")]
    for k in range(1, len(order) + 1):
        edits = Edits(off=frozenset((layer, j) for j in order[:k]))
        proba = edited_proba(edited_copy(network, edits), np.asarray(x_row).reshape(1, -1))[0]
        if int(np.argmax(proba)) != answer:
            return edits, proba
    return None


def softmax_steps(logits: Array, temperature: float = 1.0) -> dict[str, list[float] | float]:
    """The softmax of ``logits`` ``(K,)`` step by step, as it is computed:
    ``z / T``, minus its maximum (so that ``exp`` cannot overflow), ``exp``, their sum and
    ``p = exp / sum``."""
    z = np.asarray(logits, np.float64)
    scaled = z / temperature
    shifted = scaled - scaled.max()
    e = np.exp(shifted)
    return {"logits": z.tolist(), "temperature": float(temperature),
            "scaled": scaled.tolist(), "shifted": shifted.tolist(), "exp": e.tolist(),
            "sum": float(e.sum()), "probabilities": (e / e.sum()).tolist()}
