"""What training does after each descent step besides the step: weight constraints and averages.

* **Max-norm** (Srivastava et al. 2014, with dropout): each hidden unit's vector of incoming
  weights ``w_j`` (a column of ``W``) is kept within a ball of radius ``c``: after every
  step, ``w_j <- w_j * min(1, c / ||w_j||)``. Large learning rates then cannot blow the
  weights up.
* **Weight averaging** (an exponential moving average of the weights, "EMA", as in Polyak
  averaging): after every step ``θ̄ <- θ̄ + (1 - β_t)(θ - θ̄)`` with
  ``β_t = min(β, (1 + t) / (10 + t))`` (so that the first steps do not keep the random start
  weights for long). The averaged weights sit in a flatter part of the loss surface than
  the last ones and usually generalize a little better; they are what validation measures
  and what is saved.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.typing import NDArray

from digitnet.devices import get_array_module, to_device
from digitnet.network import MLP

Array = NDArray[np.floating]


def max_norm(network: MLP, c: float) -> None:
    """Rescale every column of every ``W`` whose norm exceeds ``c`` to norm ``c`` (in place).
    The output layer is constrained too."""
    for layer in network.dense:
        W = layer.W
        xp = get_array_module(W)
        norms = xp.sqrt(xp.einsum("ij,ij->j", W, W))
        if not bool((norms > c).any()):
            continue  # every column within the ball: nothing to rescale
        # min(1, c / ||w_j||) per column: exactly 1 (no change) for the columns within the
        # ball; one product for all columns, no boolean mask (CuPy indexes those otherwise)
        factors = xp.minimum(1.0, c / xp.maximum(norms, xp.finfo(W.dtype).tiny))
        W *= factors.astype(W.dtype, copy=False)


class WeightAverage:
    """An exponential moving average of ``parameters`` (the network's ``W`` and ``b``
    arrays, read after each step), with decay ``β``."""

    def __init__(self, parameters: Sequence[Array], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the averaging decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        # in the parameters' own precision: float32's is ample for an average, and the
        # update then reads and writes half the memory of float64 (it runs every step)
        self.average = [p.copy() for p in parameters]
        self.t = 0

    def update(self, parameters: Sequence[Array]) -> None:
        """``θ̄ <- θ̄ + (1 - β_t)(θ - θ̄)`` for every array."""
        beta = min(self.decay, (1 + self.t) / (10 + self.t))
        for avg, p in zip(self.average, parameters, strict=True):
            # θ̄ + (1 - β)(θ - θ̄) = β (θ̄ - θ) + θ, in place: no temporary arrays
            avg -= p
            avg *= beta
            avg += p
        self.t += 1

    def averaged_state(self, like: Sequence[Array]) -> list[Array]:
        """The averaged weights as arrays of ``like``'s dtypes (copies)."""
        return [a.astype(p.dtype) for a, p in zip(self.average, like, strict=True)]

    @contextmanager
    def swapped_in(self, network: MLP) -> Iterator[None]:
        """Inside the block the network holds the averaged weights; after it, its own again."""
        own = network.get_state()
        network.set_state(self.averaged_state(own))
        try:
            yield
        finally:
            network.set_state(own)

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "average": [a.copy() for a in self.average]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = int(state["t"])
        for avg, saved in zip(self.average, state["average"], strict=True):
            avg[...] = to_device(saved, get_array_module(avg))
