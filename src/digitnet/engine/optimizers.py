"""The optimizers of :mod:`digitnet.optimizers`, regrouped for speed: the fast engine's.

Same updates as the textbook classes (tests check them against each other), but written
for a network whose parameters sit in one flat vector (:mod:`digitnet.engine.flat`):

* each update is a handful of in-place whole-vector operations, no temporaries;
* Adam keeps *rescaled* moments, which need fewer passes over memory (see :class:`Adam`);
* the state arrays may be handed in (``state=``), e.g. views into shared memory, so that
  two processes can each update their own slice of one state vector;
* moments that decay towards subnormal floats are flushed to zero (:data:`FLUSH_EVERY`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from digitnet import optimizers as textbook
from digitnet.config import OPTIMIZERS
from digitnet.devices import get_array_module

Array = NDArray[np.floating]

# Moments of coordinates whose gradient stays 0 (an MNIST border pixel's weights) shrink
# geometrically towards *subnormal* floats, which CPUs process up to 100x slower: training
# would slow down epoch after epoch. Every FLUSH_EVERY steps, moment entries below FLUSH_BELOW
# are set to exactly 0. They are far too small to move a weight (their step is < 1e-20), and
# within FLUSH_EVERY steps nothing above FLUSH_BELOW can decay to a subnormal.
FLUSH_EVERY = 100
FLUSH_BELOW = 1e-30


class Optimizer(textbook.Optimizer):
    """Common bookkeeping: the parameters, their gradients, the step count and weight decay.

    ``params`` and ``grads`` are matching lists of arrays (usually one flat vector each, or
    a few slices of it), updated in place. Weight decay goes to ``decay_pairs`` (``(W, dW)``
    pairs, views of the weight matrices; default: every ``(param, grad)``). ``state``, when
    given, holds the arrays :meth:`state_arrays` returns, in that order (zero-filled,
    shaped like ``params`` repeated :meth:`n_state` times); by default they are allocated.
    """

    def __init__(
        self,
        params: Sequence[Array],
        grads: Sequence[Array],
        lr: float,
        weight_decay: float = 0.0,
        decay_pairs: Sequence[tuple[Array, Array]] | None = None,
    ) -> None:
        super().__init__(params, grads, lr, weight_decay)  # the settings, checked as there
        if decay_pairs is None:
            decay_pairs = list(zip(self.params, self.grads, strict=True))
        self.decay_pairs = list(decay_pairs)
        self.t = 0

    def _add_weight_decay(self) -> None:
        """``g += λ·W`` for every decayed weight (``decay_pairs``; by default all parameters)."""
        if self.weight_decay:
            for p, g in self.decay_pairs:
                g += self.weight_decay * p

    def step(self, lr: float | None = None) -> None:
        """Apply one update using the current gradients (``lr`` overrides the base rate)."""
        self.t += 1
        self._add_weight_decay()
        self._update(self.lr if lr is None else lr)
        if self.t % FLUSH_EVERY == 0:
            self.flush_tiny_state()

    def state_arrays(self) -> list[Array]:
        """The running state that decays between updates (momentum, moments)."""
        return []

    @staticmethod
    def _state(params: list[Array], count: int, state: Sequence[Array] | None
               ) -> list[list[Array]]:
        """``count`` lists of arrays shaped like ``params``: ``state`` cut up, or new zeros."""
        if state is None:
            return [[textbook.zeros_like(p) for p in params] for _ in range(count)]
        state = list(state)
        if len(state) != count * len(params) or any(
                s.shape != p.shape for s, p in zip(state, params * count, strict=True)):
            raise ValueError("optimizer state does not match the parameters")
        return [state[k * len(params):(k + 1) * len(params)] for k in range(count)]

    def flush_tiny_state(self) -> None:
        """Set state entries smaller than ``FLUSH_BELOW`` to 0 (see :data:`FLUSH_EVERY`)."""
        for state in self.state_arrays():
            xp = get_array_module(state)
            xp.copyto(state, 0, where=xp.abs(state) < FLUSH_BELOW)

    def _update(self, lr: float) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(Optimizer):
    """:class:`digitnet.optimizers.SGD` (plain, momentum, Nesterov) over flat vectors."""

    def __init__(
        self,
        params: Sequence[Array],
        grads: Sequence[Array],
        lr: float = 0.1,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        decay_pairs: Sequence[tuple[Array, Array]] | None = None,
        state: Sequence[Array] | None = None,
    ) -> None:
        super().__init__(params, grads, lr, weight_decay, decay_pairs)
        textbook.check_momentum(momentum)
        self.momentum = float(momentum)
        self.nesterov = nesterov
        self.velocity = self._state(self.params, 1, state)[0] if momentum else []

    def state_arrays(self) -> list[Array]:
        return list(self.velocity)

    def _update(self, lr: float) -> None:
        if not self.momentum:
            for p, g in zip(self.params, self.grads, strict=True):
                p -= lr * g
            return
        for p, g, v in zip(self.params, self.grads, self.velocity, strict=True):
            v *= self.momentum
            v += g
            if self.nesterov:
                g += self.momentum * v
                p -= lr * g
            else:
                p -= lr * v


class Adam(Optimizer):
    """Adam (:class:`digitnet.optimizers.Adam`) with fewer passes over memory.

    The textbook's ``m ← β1·m + (1-β1)·g``, ``v ← β2·v + (1-β2)·g²``,
    ``θ ← θ - η·m̂ / (sqrt(v̂) + ε)``. The arrays kept are the
    rescaled moments ``M = m/(1-β1)`` and ``V = v/(1-β2)``, which obey the cheaper
    recurrences ``M ← β1·M + g`` and ``V ← β2·V + g²``; all constant factors (bias
    corrections included) are folded into one step size::

        θ ← θ - η_t·M / (sqrt(V) + ε_t),
        η_t = η·(1-β1)/(1-β1^t)·sqrt((1-β2^t)/(1-β2)),   ε_t = ε·sqrt((1-β2^t)/(1-β2))

    :attr:`first_moment` and :attr:`second_moment` give ``m`` and ``v`` as in the paper.
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
        decay_pairs: Sequence[tuple[Array, Array]] | None = None,
        state: Sequence[Array] | None = None,
    ) -> None:
        super().__init__(params, grads, lr, weight_decay, decay_pairs)
        textbook.check_betas(beta1, beta2)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self._M, self._V = self._state(self.params, 2, state)
        self._scratch = [get_array_module(p).empty_like(p) for p in self.params]

    @property
    def first_moment(self) -> list[Array]:
        """``m`` of the paper, per parameter array."""
        return [(1.0 - self.beta1) * M for M in self._M]

    @property
    def second_moment(self) -> list[Array]:
        """``v`` of the paper, per parameter array."""
        return [(1.0 - self.beta2) * V for V in self._V]

    def state_arrays(self) -> list[Array]:
        return [*self._M, *self._V]

    def _update(self, lr: float) -> None:
        b1, b2, t = self.beta1, self.beta2, self.t
        xp = get_array_module(*self.params)
        root = math.sqrt((1.0 - b2**t) / (1.0 - b2))
        step = lr * (1.0 - b1) / (1.0 - b1**t) * root
        eps = self.eps * root
        for p, g, M, V, s in zip(
            self.params, self.grads, self._M, self._V, self._scratch, strict=True
        ):
            # In place, through one scratch array s: ten passes, no temporaries.
            M *= b1
            M += g                          # M = β1·M + g
            xp.multiply(g, g, out=s)
            V *= b2
            V += s                          # V = β2·V + g²
            xp.sqrt(V, out=s)
            s += eps
            xp.divide(M, s, out=s)
            s *= step
            p -= s                          # θ -= η_t·M / (sqrt(V) + ε_t)


def make_optimizer(
    name: str,
    params: Sequence[Array],
    grads: Sequence[Array],
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    decay_pairs: Sequence[tuple[Array, Array]] | None = None,
    state: Sequence[Array] | None = None,
) -> Optimizer:
    """Build an optimizer by name: ``sgd``, ``momentum``, ``nesterov`` or ``adam``."""
    if name in ("sgd", "momentum", "nesterov"):
        return SGD(
            params, grads, lr,
            momentum=0.0 if name == "sgd" else momentum,
            nesterov=name == "nesterov",
            weight_decay=weight_decay, decay_pairs=decay_pairs, state=state,
        )
    if name == "adam":
        return Adam(
            params, grads, lr,
            weight_decay=weight_decay, decay_pairs=decay_pairs, state=state,
        )
    raise ValueError(f"unknown optimizer {name!r}; expected one of: {', '.join(OPTIMIZERS)}")



def n_state_vectors(name: str) -> int:
    """How many state arrays per parameter the optimizer ``name`` keeps."""
    return {"sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2}[name]
