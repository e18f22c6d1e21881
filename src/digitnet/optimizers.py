"""Gradient-descent optimizers and learning-rate schedules, as the textbook writes them.

Every optimizer updates the parameter arrays *in place* from their gradients
``g = dL/dθ`` (as left by :meth:`digitnet.network.MLP.loss_and_gradients`), one array at a
time, with the formulas in the class docstrings.

L2 weight decay adds ``(λ/2)·||W||²`` to the loss for weight matrices (not biases),
which adds ``λ·W`` to their gradient before the update.

Whether the descent is *stochastic* (batch size 1), *mini-batch* or *full-batch* is
decided by how many samples produced ``g``, not by the optimizer.

(:mod:`digitnet.engine.optimizers` has the same updates regrouped for speed.) The arrays
may live on a GPU (CuPy): state is allocated with the parameters' own module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from digitnet.config import OPTIMIZERS, SCHEDULES
from digitnet.devices import get_array_module, to_device

Array = NDArray[np.floating]


def zeros_like(p: Array) -> Array:
    """Zeros shaped like ``p``, on ``p``'s device."""
    return get_array_module(p).zeros_like(p)


def check_momentum(momentum: float) -> None:
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")


def check_betas(beta1: float, beta2: float) -> None:
    if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
        raise ValueError(f"betas must be in [0, 1), got {beta1}, {beta2}")


class Optimizer:
    """What every optimizer has: the parameters, their gradients, the step count ``t``,
    the learning rate and the weight decay.

    Parameters
    ----------
    params, grads : sequences of arrays
        Matching lists (e.g. ``network.parameters()`` and ``network.gradients()``); the
        parameters are updated in place.
    lr : float
        The base learning rate η (:meth:`step` may be given another, by a schedule).
    weight_decay : float
        λ of the L2 penalty.
    decayed : sequence of bool, optional
        Which parameters the penalty applies to (``network.decayed()``: the weight
        matrices); by default all of them.
    """

    def __init__(
        self,
        params: Sequence[Array],
        grads: Sequence[Array],
        lr: float,
        weight_decay: float = 0.0,
        decayed: Sequence[bool] | None = None,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight decay must be >= 0, got {weight_decay}")
        self.params = list(params)
        self.grads = list(grads)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.decayed = [True] * len(self.params) if decayed is None else list(decayed)
        self.t = 0

    def step(self, lr: float | None = None) -> None:
        """One update of every parameter from its gradient (``lr`` overrides the base rate)."""
        self.t += 1
        eta = self.lr if lr is None else lr
        for i, (p, g) in enumerate(zip(self.params, self.grads, strict=True)):
            if self.weight_decay and self.decayed[i]:
                g += self.weight_decay * p          # gradient of (λ/2)·||W||²
            self.update(i, p, g, eta)

    def update(self, i: int, p: Array, g: Array, lr: float) -> None:  # pragma: no cover
        """Update parameter ``i`` (``p``, in place) from its gradient ``g``."""
        raise NotImplementedError

    def state_arrays(self) -> list[Array]:
        """The running state carried from step to step (velocities, moments)."""
        return []


class SGD(Optimizer):
    """(Mini-batch) gradient descent, optionally with (Nesterov) momentum.

    Without momentum: ``θ ← θ - η·g``.
    With momentum μ: ``v ← μ·v + g``, then ``θ ← θ - η·v``
    (Nesterov: ``θ ← θ - η·(g + μ·v)``).
    """

    def __init__(
        self,
        params: Sequence[Array],
        grads: Sequence[Array],
        lr: float = 0.1,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        decayed: Sequence[bool] | None = None,
    ) -> None:
        super().__init__(params, grads, lr, weight_decay, decayed)
        check_momentum(momentum)
        self.momentum = float(momentum)
        self.nesterov = nesterov
        self.velocity = [zeros_like(p) for p in self.params] if momentum else []

    def state_arrays(self) -> list[Array]:
        return list(self.velocity)

    def update(self, i: int, p: Array, g: Array, lr: float) -> None:
        if not self.momentum:
            p -= lr * g
            return
        v = self.velocity[i]
        v *= self.momentum
        v += g                                      # v = μ·v + g
        if self.nesterov:
            p -= lr * (g + self.momentum * v)
        else:
            p -= lr * v


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015): per-parameter step sizes from running gradient moments.

    ::

        m ← β1·m + (1-β1)·g            first moment (mean)
        v ← β2·v + (1-β2)·g²           second moment (uncentered variance)
        m̂ = m / (1-β1^t),  v̂ = v / (1-β2^t)     bias corrections (both start at 0)
        θ ← θ - η·m̂ / (sqrt(v̂) + ε)
    """

    def __init__(
        self,
        params: Sequence[Array],
        grads: Sequence[Array],
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decayed: Sequence[bool] | None = None,
    ) -> None:
        super().__init__(params, grads, lr, weight_decay, decayed)
        check_betas(beta1, beta2)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.m = [zeros_like(p) for p in self.params]
        self.v = [zeros_like(p) for p in self.params]

    def state_arrays(self) -> list[Array]:
        return [*self.m, *self.v]

    def update(self, i: int, p: Array, g: Array, lr: float) -> None:
        b1, b2, t = self.beta1, self.beta2, self.t
        m, v = self.m[i], self.v[i]
        m *= b1
        m += (1 - b1) * g                           # m = β1·m + (1-β1)·g
        v *= b2
        v += (1 - b2) * g * g                       # v = β2·v + (1-β2)·g²
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        p -= lr * m_hat / (get_array_module(v_hat).sqrt(v_hat) + self.eps)


def state_dict(optimizers: Sequence[Optimizer], arrays: Sequence[Array]) -> dict[str, Any]:
    """The state to carry into a later trainer: the step count and a copy of each state
    array (``arrays``, which ``optimizers`` update, whole or in slices)."""
    return {"t": optimizers[0].t, "state": [a.copy() for a in arrays]}


def load_state_dict(optimizers: Sequence[Optimizer], arrays: Sequence[Array],
                    state: dict[str, Any]) -> None:
    """Continue from :func:`state_dict`'s ``state``."""
    if len(state["state"]) != len(arrays) or any(
            s.shape != a.shape for s, a in zip(state["state"], arrays, strict=True)):
        raise ValueError("optimizer state from a different network or optimizer")
    for a, s in zip(arrays, state["state"], strict=True):
        a[...] = to_device(s, get_array_module(a))
    for optimizer in optimizers:
        optimizer.t = int(state["t"])


def make_optimizer(
    name: str,
    params: Sequence[Array],
    grads: Sequence[Array],
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    decayed: Sequence[bool] | None = None,
) -> Optimizer:
    """Build an optimizer by name: ``sgd``, ``momentum``, ``nesterov`` or ``adam``."""
    if name in ("sgd", "momentum", "nesterov"):
        return SGD(
            params, grads, lr,
            momentum=0.0 if name == "sgd" else momentum,
            nesterov=name == "nesterov",
            weight_decay=weight_decay, decayed=decayed,
        )
    if name == "adam":
        return Adam(params, grads, lr, weight_decay=weight_decay, decayed=decayed)
    raise ValueError(f"unknown optimizer {name!r}; expected one of: {', '.join(OPTIMIZERS)}")


def learning_rate(
    schedule: str, base_lr: float, step: int, total_steps: int, warmup_steps: int = 0
) -> float:
    """Learning rate at optimizer step ``step`` (0-based) of ``total_steps``.

    * ``constant``: ``η``;
    * ``step``: ``η·0.1^k`` after each third of training;
    * ``cosine``: linear warm-up over ``warmup_steps``, then ``η·(1 + cos(π·s))/2`` for the
      fraction ``s`` of the remaining steps done;
    * ``onecycle``: linear rise from ``η/25`` to ``η`` over the first 30 %, then cosine
      annealing down to ``η/1e4`` (Smith & Topin, 2018).
    """
    total = max(total_steps, 1)
    frac = min(step / total, 1.0)
    if schedule == "constant":
        return base_lr
    if schedule == "step":
        return base_lr * 0.1 ** min(int(frac * 3), 2)
    if schedule == "cosine":
        if step < warmup_steps:
            return base_lr * (step + 1) / warmup_steps
        s = (step - warmup_steps) / max(total - warmup_steps, 1)
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(s, 1.0)))
    if schedule == "onecycle":
        peak = 0.3
        if frac < peak:
            return base_lr / 25 + (base_lr - base_lr / 25) * frac / peak
        s = (frac - peak) / (1 - peak)
        low = base_lr / 1e4
        return low + (base_lr - low) * 0.5 * (1.0 + math.cos(math.pi * s))
    raise ValueError(f"unknown schedule {schedule!r}; expected one of: {', '.join(SCHEDULES)}")
