"""A network's predictions and loss on raw (uint8) data, in large batches.

Used for validation during training and for the test set afterwards.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from digitnet.data.preprocessing import MinMaxScaler
from digitnet.devices import to_device, to_host
from digitnet.layers import log_softmax
from digitnet.network import DTYPES, MLP


def predict_with_loss(
    network: MLP,
    x: NDArray[np.uint8],
    y: NDArray[np.integer],
    scaler: MinMaxScaler,
    batch_size: int = 4096,
    buffer: NDArray[np.floating] | None = None,
    proba: NDArray[np.floating] | None = None,
) -> tuple[NDArray[np.intp], float]:
    """Predicted classes ``(n,)`` and mean cross-entropy for raw inputs ``x`` with labels ``y``,
    in one forward pass over large batches (scaled into ``buffer``, ``(batch_size, d)``, when
    given: a trainer's batch buffer sends them through its split layers). With ``proba``
    ``(n, n_classes)``, the class probabilities are left there too."""
    total_loss = 0.0
    predictions = np.empty(len(x), dtype=np.intp)
    dtype, xp = DTYPES[network.dtype], network.xp
    for start in range(0, len(x), batch_size):
        chunk = to_device(x[start : start + batch_size], xp)  # to the network's device
        out = None if buffer is None else buffer[: len(chunk)]
        xb = scaler.transform(chunk, dtype, out=out)
        yb = to_device(y[start : start + batch_size], xp)
        log_p = log_softmax(network.forward(xb))
        total_loss -= float(log_p[xp.arange(len(yb)), yb].sum())
        predictions[start : start + batch_size] = to_host(log_p.argmax(axis=1))
        if proba is not None:
            proba[start : start + batch_size] = to_host(xp.exp(log_p))
    return predictions, total_loss / max(len(x), 1)


def evaluate_loss_accuracy(
    network: MLP,
    x: NDArray[np.uint8],
    y: NDArray[np.integer],
    scaler: MinMaxScaler,
    batch_size: int = 4096,
    buffer: NDArray[np.floating] | None = None,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``network`` on raw inputs ``x`` with labels ``y``
    (``batch_size`` and ``buffer`` as in :func:`predict_with_loss`)."""
    predictions, loss = predict_with_loss(network, x, y, scaler, batch_size, buffer)
    return loss, float(np.mean(predictions == y)) if len(y) else 0.0
