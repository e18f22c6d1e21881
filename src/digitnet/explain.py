"""Why the network answers as it does: hidden activations and saliency maps.

The **saliency map** of class ``c`` for an input ``x`` is the gradient of that class's logit
``z_c`` with respect to every input pixel, ``dz_c/dx``: which pixels, made a little brighter,
push the network towards ``c`` (positive) or away from it (negative). It is computed by the
very backward pass training uses: start from ``delta = e_c`` (1 for class ``c``'s logit, 0
elsewhere) at the output and run every layer's ``backward`` in reverse, the first
``Dense`` too (training skips its ``dL/dx``; here it is what we want). Gradients are taken with
respect to the network's scaled input; :func:`explain` reports them per image pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from digitnet.layers import ActivationLayer, softmax
from digitnet.network import DTYPES, MLP

Array = NDArray[np.floating]


def forward_with_activations(network: MLP, x: Array) -> tuple[Array, list[Array]]:
    """The logits ``(n, K)`` and every hidden layer's output ``a_l`` (copies), in order."""
    out, hidden = x, []
    for layer in network.layers:
        out = layer.forward(out)
        if isinstance(layer, ActivationLayer):
            hidden.append(out.copy())
    return out, hidden


def saliency(network: MLP, x: Array, cls: int) -> Array:
    """``dz_cls/dx`` for the inputs ``x`` ``(n, n_inputs)`` (already scaled), ``(n, n_inputs)``.

    Runs the layers' own ``forward`` and ``backward``; the network's gradient buffers are
    overwritten (as by any training step), its weights are not touched."""
    x = np.asarray(x, dtype=DTYPES[network.dtype])
    logits = network.forward(x)
    delta: Array | None = np.zeros_like(logits)
    assert delta is not None
    delta[:, cls] = 1.0
    first = network.dense[0]
    skip, first.needs_input_grad = first.needs_input_grad, True
    try:
        for layer in reversed(network.layers):
            assert delta is not None
            delta = layer.backward(delta)
    finally:
        first.needs_input_grad = skip
    assert delta is not None
    return delta


@dataclass
class Explanation:
    """Why the network gave its answer for one input."""

    probabilities: Array
    predicted: int
    runner_up: int
    saliency: Array            # dz_predicted/dx, shaped like the image
    runner_up_saliency: Array  # dz_runner_up/dx
    hidden: list[Array]        # each hidden layer's activations

    def to_dict(self, class_names: tuple[str, ...]) -> dict[str, Any]:
        return {
            "predicted": class_names[self.predicted],
            "runner_up": class_names[self.runner_up],
            "saliency": np.round(self.saliency, 6).tolist(),
            "runner_up_saliency": np.round(self.runner_up_saliency, 6).tolist(),
            "hidden": [np.round(h, 6).tolist() for h in self.hidden],
            "active_units": [int(np.count_nonzero(h > 0)) for h in self.hidden],
        }


def explain(network: MLP, x: Array, image_shape: tuple[int, ...],
            input_scale: float = 1.0) -> Explanation:
    """Explain the answer for one scaled input row ``x`` ``(n_inputs,)``. ``input_scale`` is
    ``d(scaled input)/d(image value)`` (``1 / (hi - lo)`` of the model's scaler times the
    image's range), so that the maps are per image pixel."""
    row = np.asarray(x, dtype=DTYPES[network.dtype]).reshape(1, -1)
    logits, hidden = forward_with_activations(network, row.copy())
    proba = softmax(logits.copy())[0]
    order = np.argsort(proba)[::-1]
    maps = [saliency(network, row.copy(), int(c))[0] * input_scale for c in order[:2]]
    return Explanation(proba, int(order[0]), int(order[1]),
                       maps[0].reshape(image_shape), maps[1].reshape(image_shape),
                       [h[0] for h in hidden])
