"""The multi-layer perceptron: a stack of Dense and activation layers ending in softmax.

For hidden sizes ``h_1 ... h_L`` the network computes, for a batch ``x`` of shape ``(n, d)``::

    a_0 = x
    a_l = f(a_{l-1} @ W_l + b_l)            l = 1 .. L      (hidden layers)
    z   = a_L @ W_out + b_out                                (logits, n x K)
    p   = softmax(z)                                         (class probabilities)

and trains by backpropagation: the gradient ``(p - y) / n`` of the cross-entropy with
respect to ``z`` flows back through every layer's ``backward`` in reverse order
(:mod:`digitnet.layers` holds each layer's forward and backward side by side).

The weights live in NumPy arrays, or on a GPU after :meth:`MLP.to` ``("gpu")`` (CuPy arrays:
the same code runs on them, see :mod:`digitnet.devices`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from digitnet.activations import get_activation
from digitnet.devices import (
    array_module,
    device_of,
    get_array_module,
    random_generator,
    to_device,
    to_host,
)
from digitnet.layers import (
    ActivationLayer,
    Dense,
    Dropout,
    SoftmaxCrossEntropy,
    init_weights,
    softmax,
)

Array = NDArray[np.floating]
Labels = NDArray[np.integer]

DTYPES = {"float32": np.float32, "float64": np.float64}


class MLP:
    """A fully connected classifier ``n_inputs -> hidden... -> n_classes`` with softmax output.

    Parameters
    ----------
    n_inputs : int
        Features per sample (784 for 28x28 images).
    hidden : sequence of int
        Units per hidden layer, at least one layer (e.g. ``(128, 64)``).
    n_classes : int
        Output units (10 digits).
    activation : {"relu", "leaky_relu", "sigmoid", "tanh"}
        Hidden-layer non-linearity. Weights use He initialization for the ReLU family and
        Glorot/Xavier for sigmoid and tanh; biases start at zero.
    dtype : {"float32", "float64"}
        Floating-point type of weights and computations (float64 for gradient checks).
    seed : int
        Seeds the weight initialization: the same seed gives the same weights bit for bit.
    dropout : float in [0, 1)
        Inverted dropout after every hidden layer's activation, active only in
        :meth:`loss_and_gradients` (training); 0 (default) adds no layer.
    input_dropout : float in [0, 1)
        The same on the input pixels (Srivastava et al. 2014 use 0.2 there, 0.5 on hidden
        layers).
    init_scale : float
        Multiplies every initial weight (1: He/Glorot as they are). For experiments: tiny
        weights starve sigmoid units of signal, huge ones kill ReLU units.
    """

    def __init__(
        self,
        n_inputs: int,
        hidden: Sequence[int],
        n_classes: int,
        activation: str = "relu",
        dtype: str = "float32",
        seed: int = 0,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        init_scale: float = 1.0,
    ) -> None:
        if len(hidden) < 1:
            raise ValueError("the network needs at least one hidden layer")
        if any(int(h) < 1 for h in hidden) or n_inputs < 1 or n_classes < 2:
            raise ValueError(
                f"layer sizes must be positive and n_classes >= 2, got "
                f"{n_inputs}-{'-'.join(map(str, hidden))}-{n_classes}"
            )
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of: {', '.join(DTYPES)}")
        act = get_activation(activation)
        self.n_inputs = int(n_inputs)
        self.hidden = tuple(int(h) for h in hidden)
        self.n_classes = int(n_classes)
        self.activation = act.name
        self.dtype = dtype
        self.seed = int(seed)
        self.dropout = float(dropout)
        self.input_dropout = float(input_dropout)
        self.init_scale = float(init_scale)
        # The dropout masks' own generator (seeded; its state is part of a checkpoint).
        self.dropout_rng = np.random.default_rng(np.random.SeedSequence([self.seed, 2]))
        self._device_rng: Any = None  # the masks' generator on a GPU (see to())
        self.dropouts: list[Dropout] = []

        def dropout_layer(p: float) -> list[Dropout]:
            if p == 0.0:
                return []
            self.dropouts.append(Dropout(p, self.dropout_rng))
            return self.dropouts[-1:]

        # Dense, activation, Dense, activation, ..., Dense: each Dense owns its W and b.
        rng = np.random.default_rng(seed)
        shapes = list(itertools.pairwise(self.layer_sizes))
        self.dense: list[Dense] = []
        self.layers: list[Dense | ActivationLayer | Dropout] = [*dropout_layer(input_dropout)]
        for i, (fan_in, fan_out) in enumerate(shapes):
            last = i == len(shapes) - 1
            # The output layer feeds softmax: Glorot keeps its logits small at the start.
            W = init_weights(fan_in, fan_out, "glorot" if last else act.init, rng, DTYPES[dtype])
            if init_scale != 1.0:
                W *= DTYPES[dtype](init_scale)
            layer = Dense(W, np.zeros(fan_out, dtype=DTYPES[dtype]), needs_input_grad=i > 0)
            self.dense.append(layer)
            self.layers.append(layer)
            if not last:
                self.layers.append(ActivationLayer(act))
                self.layers.extend(dropout_layer(dropout))
        self.loss = SoftmaxCrossEntropy()

    # ------------------------------------------------------------------ shape
    @property
    def layer_sizes(self) -> list[int]:
        """``[n_inputs, *hidden, n_classes]``."""
        return [self.n_inputs, *self.hidden, self.n_classes]

    @property
    def n_parameters(self) -> int:
        """Number of trainable scalars (weights and biases)."""
        return sum(p.size for p in self.parameters())

    def describe(self) -> str:
        """``"784-128-64-10 relu"``: the architecture in one line."""
        return f"{'-'.join(map(str, self.layer_sizes))} {self.activation}"

    # ---------------------------------------------------------------- device
    @property
    def xp(self) -> ModuleType:
        """The module of the weights' arrays: :mod:`numpy`, or :mod:`cupy` on a GPU."""
        return get_array_module(self.dense[0].W)

    @property
    def device(self) -> str:
        """``"cpu"`` or ``"gpu"``: where the weights live (see :meth:`to`)."""
        return device_of(self.dense[0].W)

    def to(self, device: str) -> MLP:
        """Move the weights, biases and gradient buffers to ``device`` (``"cpu"`` or
        ``"gpu"``) and return the network. The values are copied exactly; the dropout masks
        come from a generator of that device (seeded like the CPU's, but CuPy's numbers are
        not NumPy's). Raises :class:`digitnet.devices.DeviceError` when the device is not
        usable."""
        if device == self.device:
            return self
        xp = array_module(device)
        for layer in self.dense:
            layer.W, layer.b = to_device(layer.W, xp), to_device(layer.b, xp)
            layer.grad_W, layer.grad_b = xp.zeros_like(layer.W), xp.zeros_like(layer.b)
        if device == "cpu":
            rng = self.dropout_rng
        else:
            if self._device_rng is None:
                self._device_rng = random_generator(xp, np.random.SeedSequence([self.seed, 2]))
            rng = self._device_rng
        for dropout in self.dropouts:
            dropout.rng = rng
        return self

    # --------------------------------------------------------------- forward
    def forward(self, x: Array) -> Array:
        """Logits ``z`` of shape ``(n, n_classes)`` for inputs ``x`` of shape ``(n, n_inputs)``."""
        out = x
        for layer in self.layers:
            out = layer.forward(out)
        return out

    def predict_proba(self, x: Array, batch_size: int = 4096) -> Array:
        """Class probabilities ``softmax(forward(x))``, ``(n, n_classes)``, in large batches
        (a NumPy array, whatever the device of ``x`` or of the network)."""
        x = np.asarray(to_host(x))
        self._check_input(x)
        out = np.empty((x.shape[0], self.n_classes), dtype=DTYPES[self.dtype])
        for start in range(0, x.shape[0], batch_size):
            chunk = x[start : start + batch_size].astype(DTYPES[self.dtype], copy=False)
            probabilities = softmax(self.forward(to_device(chunk, self.xp)))
            out[start : start + batch_size] = to_host(probabilities)
        return out

    def predict(self, x: Array, batch_size: int = 4096) -> Labels:
        """Most probable class index per sample, ``(n,)``."""
        return np.argmax(self.predict_proba(x, batch_size), axis=1)

    # -------------------------------------------------------------- backward
    def loss_and_gradients(self, x: Array, targets: Array | Labels) -> tuple[float, int]:
        """One forward and one backward pass over a batch.

        Returns the mean cross-entropy ``L`` and the number of correctly classified samples,
        and leaves ``dL/dW`` and ``dL/db`` of every layer in :meth:`gradients` (same order as
        :meth:`parameters`). ``targets`` are class indices ``(n,)`` or one-hot rows ``(n, K)``.
        """
        for dropout in self.dropouts:  # dropout is on while training, and only then
            dropout.active = True
        try:
            logits = self.forward(x)
        finally:
            for dropout in self.dropouts:
                dropout.active = False
        loss = self.loss.forward(logits, targets)
        labels = targets if targets.ndim == 1 else targets.argmax(axis=1)
        assert self.loss.predictions is not None
        n_correct = int(self.xp.count_nonzero(self.loss.predictions == labels))
        delta: Array | None = self.loss.backward()
        for layer in reversed(self.layers):
            if delta is None:  # the first Dense returns no dL/dx: nothing before it learns
                break
            delta = layer.backward(delta)
        return loss, n_correct

    def parameters(self) -> list[Array]:
        """``[W_1, b_1, W_2, b_2, ...]``: the arrays the optimizer updates in place."""
        return [p for layer in self.dense for p in (layer.W, layer.b)]

    def gradients(self) -> list[Array]:
        """``[dL/dW_1, dL/db_1, ...]`` from the last :meth:`loss_and_gradients`."""
        return [g for layer in self.dense for g in (layer.grad_W, layer.grad_b)]

    def decayed(self) -> list[bool]:
        """``[True, False, True, False, ...]``: which of :meth:`parameters` are weight
        matrices (L2 weight decay applies to them, not to the biases)."""
        return [flag for _ in self.dense for flag in (True, False)]

    def get_state(self) -> list[Array]:
        """A copy of every parameter (for keeping the best model during training), on the
        network's device."""
        return [p.copy() for p in self.parameters()]

    def set_state(self, state: Sequence[Array]) -> None:
        """Copy parameters back in (shapes must match; NumPy or device arrays)."""
        params = self.parameters()
        if len(state) != len(params):
            raise ValueError(f"expected {len(params)} parameter arrays, got {len(state)}")
        for p, s in zip(params, state, strict=True):
            if p.shape != s.shape:
                raise ValueError(f"parameter shape mismatch: expected {p.shape}, got {s.shape}")
            p[...] = to_device(s, get_array_module(p))

    def config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-serializable."""
        return {
            "n_inputs": self.n_inputs,
            "hidden": list(self.hidden),
            "n_classes": self.n_classes,
            "activation": self.activation,
            "dtype": self.dtype,
            "seed": self.seed,
            "dropout": self.dropout,
            "input_dropout": self.input_dropout,
            "init_scale": self.init_scale,
        }

    def _check_input(self, x: Array) -> None:
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(
                f"expected input of shape (n_samples, {self.n_inputs}), got {x.shape}"
            )
