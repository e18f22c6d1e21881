"""The building blocks of the network, each with its forward and backward pass side by side.

Notation (one mini-batch):

* ``n`` samples, a layer maps ``d_in`` features to ``d_out`` features;
* ``x`` has shape ``(n, d_in)``, ``W`` ``(d_in, d_out)``, ``b`` ``(d_out,)``;
* ``delta = dL/d(output)`` is what the next layer hands back during backpropagation,
  and each ``backward`` returns ``dL/d(input)`` for the layer before it.

Rows are samples, so a whole batch goes through one matrix product (no per-sample loops).

``xp`` below is the arrays' own module (:func:`digitnet.devices.get_array_module`): NumPy,
or CuPy when the network lives on a GPU. The arithmetic is the same.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from digitnet.activations import Activation, get_activation
from digitnet.devices import get_array_module

Array = NDArray[np.floating]
Labels = NDArray[np.integer]


def init_weights(
    fan_in: int, fan_out: int, scheme: str, rng: np.random.Generator, dtype: type
) -> Array:
    """Small random weights, scaled so activations neither explode nor vanish.

    * ``"he"`` (Kaiming, for ReLU): ``W ~ N(0, 2 / fan_in)``;
    * ``"glorot"`` (Xavier, for sigmoid/tanh): ``W ~ U(-r, r)`` with
      ``r = sqrt(6 / (fan_in + fan_out))``, i.e. variance ``2 / (fan_in + fan_out)``.
    """
    if scheme == "he":
        w = rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
    elif scheme == "glorot":
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-limit, limit, size=(fan_in, fan_out))
    else:
        raise ValueError(f"unknown initialization {scheme!r}; expected 'he' or 'glorot'")
    return w.astype(dtype)


class Dense:
    """Fully connected (affine) layer.

    Forward::

        z = x @ W + b                       (n, d_out)

    Backward, given ``delta = dL/dz`` of shape ``(n, d_out)``::

        dL/dW = x.T @ delta                 (d_in, d_out)
        dL/db = sum of delta over samples   (d_out,)
        dL/dx = delta @ W.T                 (n, d_in)

    The gradients are written into ``grad_W`` and ``grad_b`` (allocated once, or views
    handed in by the network), which the optimizer reads. A first layer does not need
    ``dL/dx`` (its input is data, not a parameter), so ``backward`` skips that product when
    ``needs_input_grad`` is false: a third of the first layer's work, and the first layer
    holds most of the FLOPs.
    """

    def __init__(
        self,
        W: Array,
        b: Array,
        grad_W: Array | None = None,
        grad_b: Array | None = None,
        needs_input_grad: bool = True,
    ) -> None:
        self.W = W
        self.b = b
        xp = get_array_module(W)
        self.grad_W = xp.zeros_like(W) if grad_W is None else grad_W
        self.grad_b = xp.zeros_like(b) if grad_b is None else grad_b
        self.needs_input_grad = needs_input_grad
        self._x: Array | None = None

    def forward(self, x: Array) -> Array:
        """``z = x @ W + b``; remembers ``x`` for the backward pass."""
        self._x = x
        z = x @ self.W
        z += self.b
        return z

    def backward(self, delta: Array) -> Array | None:
        """Fill ``grad_W``, ``grad_b`` and return ``dL/dx = delta @ W.T`` (or ``None``)."""
        assert self._x is not None, "backward() called before forward()"
        xp = get_array_module(delta)
        xp.matmul(self._x.T, delta, out=self.grad_W)
        xp.sum(delta, axis=0, out=self.grad_b)
        if not self.needs_input_grad:
            return None
        return delta @ self.W.T


class ActivationLayer:
    """Element-wise non-linearity ``a = f(z)`` (see :mod:`digitnet.activations`).

    Forward: ``a = f(z)``, computed in place in ``z``'s buffer.
    Backward: ``dL/dz = dL/da * f'(z)``, computed in place in ``delta``'s buffer
    from the stored output ``a``.
    """

    def __init__(self, activation: Activation | str) -> None:
        self.activation = (
            get_activation(activation) if isinstance(activation, str) else activation
        )
        self._a: Array | None = None

    def forward(self, z: Array) -> Array:
        """``a = f(z)`` (overwrites ``z``)."""
        a = self.activation.forward(z)
        self._a = a
        return a

    def backward(self, delta: Array) -> Array:
        """``delta * f'(z)`` (overwrites ``delta``)."""
        assert self._a is not None, "backward() called before forward()"
        self.activation.backward(self._a, delta)
        return delta


class Dropout:
    """Inverted dropout (Srivastava et al. 2014): while training, each input is kept with
    probability ``1 - p`` and scaled by ``1 / (1 - p)``, or set to 0::

        m ~ Bernoulli(1 - p)  (n, d), drawn afresh for every batch
        a = x * m / (1 - p)

    so that the expected output equals the input and inference needs no change: outside
    training (``active`` false, the default) the layer passes ``x`` through untouched.
    Backward: ``dL/dx = dL/da * m / (1 - p)``.

    Like the activation layers it works in place, in the buffer handed in. That buffer is
    also the activation's output, which the activation's backward needs (``tanh' = 1 - a²``),
    so the values before dropout are kept and put back once the layer after has used the
    dropped ones. ``rng`` draws the masks (the network's, seeded: a run is reproducible).
    """

    def __init__(self, p: float, rng: np.random.Generator) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self.rng = rng
        self.active = False
        self._scaled_mask: Array | None = None
        self._x: Array | None = None
        self._kept: Array | None = None

    def forward(self, x: Array) -> Array:
        """``x * m / (1 - p)`` while :attr:`active` (overwrites ``x``), else ``x``."""
        if not self.active or self.p == 0.0:
            self._scaled_mask = None
            return x
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.p
        self._scaled_mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.p))
        self._x, self._kept = x, x.copy()
        x *= self._scaled_mask
        return x

    def backward(self, delta: Array) -> Array:
        """``delta * m / (1 - p)`` (overwrites ``delta``): the dropped units get no gradient.
        Puts the values before dropout back into the forward buffer."""
        if self._scaled_mask is not None:
            delta *= self._scaled_mask
            assert self._x is not None and self._kept is not None
            self._x[...] = self._kept
        return delta


def row_max(z: Array) -> Array:
    """The largest entry of each row, ``(n, 1)``.

    Gathered at ``argmax``: for a few columns (10 classes) that is several times faster
    than NumPy's ``max(axis=1)``.
    """
    xp = get_array_module(z)
    return z[xp.arange(z.shape[0]), z.argmax(axis=1)][:, np.newaxis]


def log_softmax(logits: Array) -> Array:
    """``log p_k = z_k - logsumexp(z)`` row by row, stable for any finite logits.

    Subtracting the row maximum ``m`` first keeps every ``exp`` in (0, 1]::

        logsumexp(z) = m + log(sum_k exp(z_k - m))
    """
    xp = get_array_module(logits)
    shifted = logits - row_max(logits)
    shifted -= xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    return shifted


def softmax(logits: Array) -> Array:
    """Class probabilities ``p_k = exp(z_k) / sum_j exp(z_j)``, shape ``(n, n_classes)``."""
    p = logits - row_max(logits)
    get_array_module(p).exp(p, out=p)
    p /= p.sum(axis=1, keepdims=True)
    return p


class SoftmaxCrossEntropy:
    """Softmax output layer fused with the categorical cross-entropy loss.

    With logits ``z`` (n, K), probabilities ``p = softmax(z)`` and one-hot targets
    ``y`` (n, K), the mean loss over the batch is::

        L = -(1/n) * sum_i sum_k y_ik * log p_ik

    and its gradient with respect to the logits is the famously simple::

        dL/dz = (p - y) / n                 (n, K)

    Fusing the two avoids the Jacobian of softmax and ``log(0)``: ``log p`` is never
    taken of an underflowed ``p`` (see :meth:`forward`), so logits of +-1e4 still give a
    finite loss.

    **Label smoothing** ``ε`` (Szegedy et al. 2016) trains towards ``(1 - ε) y + ε / K``
    instead of the one-hot ``y``: the network is asked to keep a little probability on every
    class, which keeps its logits from growing without end. With index targets that is
    ``L = (1 - ε) (-log p_y) + ε mean_k(-log p_k)`` and ``dL/dz = (p - (1 - ε) y - ε / K) / n``.

    Targets may be one-hot rows ``(n, K)`` or integer class indices ``(n,)``. For
    indices, ``y`` is never built as a dense matrix: ``sum_k y_ik log p_ik`` is just
    ``log p_i,label_i`` and ``p - y`` subtracts 1 at each sample's label, which is
    the same arithmetic without the ``n x K`` one-hot temporary.
    """

    def __init__(self, smoothing: float = 0.0) -> None:
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = float(smoothing)
        self._p: Array | None = None
        self._targets: Array | Labels | None = None
        self.predictions: Labels | None = None

    def forward(self, logits: Array, targets: Array | Labels) -> float:
        """Mean cross-entropy of the batch; remembers ``p`` and the targets, and leaves the
        predicted classes ``argmax_k z_k`` in :attr:`predictions`.

        With the row maximum ``m`` (gathered at the argmax, as in :func:`row_max`) and
        ``s = sum_k exp(z_k - m)``, ``p = exp(z - m) / s`` and ``-log p_y = log s - (z_y - m)``:
        one ``exp`` over the batch and logarithms of the ``n`` sums only (for target rows
        ``y_i``: ``sum_k y_ik (log s_i - (z_ik - m_i))``). Overwrites ``logits``.
        """
        xp = get_array_module(logits)
        n = logits.shape[0]
        rows = xp.arange(n)
        self.predictions = logits.argmax(axis=1)
        logits -= logits[rows, self.predictions][:, np.newaxis]  # z - m, every entry <= 0
        eps = self.smoothing
        if targets.ndim == 1:  # sum_i (z - m)_i,y_i (smoothed: and eps/K of every class)
            target_term = float(logits[rows, targets].sum())
            if eps:
                target_term = (1 - eps) * target_term + eps * float(logits.mean(axis=1).sum())
            target_weights: Array | float = 1.0
        else:  # sum_ik y_ik (z - m)_ik, and each row's total weight sum_k y_ik
            if eps:
                targets = (1 - eps) * targets + eps * targets.sum(axis=1, keepdims=True) \
                    / targets.shape[1]
            target_term = float((targets * logits).sum())
            target_weights = targets.sum(axis=1)
        p = xp.exp(logits, out=logits)
        sums = p.sum(axis=1)
        p /= sums[:, np.newaxis]
        self._p, self._targets = p, targets
        return (float((target_weights * xp.log(sums)).sum()) - target_term) / n

    def backward(self) -> Array:
        """``dL/dz = (p - y) / n``, computed in the buffer that holds ``p``."""
        assert self._p is not None and self._targets is not None, "backward() before forward()"
        delta, targets = self._p, self._targets
        n = delta.shape[0]
        if targets.ndim == 1:
            eps = self.smoothing
            delta[get_array_module(delta).arange(n), targets] -= 1.0 - eps
            if eps:
                delta -= eps / delta.shape[1]
        else:
            delta -= targets
        delta /= n
        return delta
