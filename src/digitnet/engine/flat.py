"""All of a network's parameters in one vector, and the one-process fast trainer.

The textbook network (:class:`digitnet.network.MLP`) keeps a ``W`` and a ``b`` per layer.
An optimizer that walks over a dozen arrays per step pays a dozen times NumPy's per-call
overhead; over one contiguous vector it pays it once. :class:`FlatParameters` lends the
network such a vector for the duration of training: on :meth:`~FlatParameters.attach`
the values are copied into it and every layer's ``W``, ``b``, ``grad_W`` and ``grad_b``
become views of it; :meth:`~FlatParameters.detach` copies them back into the layer's own
arrays. Outside training the network is the textbook one again.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from digitnet.batches import BatchLoader
from digitnet.config import TrainConfig
from digitnet.data.preprocessing import MinMaxScaler
from digitnet.engine.optimizers import make_optimizer, n_state_vectors
from digitnet.engine.prefetch import PrefetchedEpochs, spare_cores
from digitnet.inference import evaluate_loss_accuracy
from digitnet.network import DTYPES, MLP
from digitnet.optimizers import load_state_dict, state_dict
from digitnet.training import EpochImages

Array = NDArray[np.floating]
Allocate = Callable[[tuple[int, ...], Any], NDArray[Any]]


class FlatParameters:
    """One vector for all of ``network``'s parameters, one for all gradients (from
    ``allocate``, e.g. shared memory), and where each layer's ``W`` and ``b`` sit in them:
    layer ``i``'s ``W`` (row by row) at ``slices[i][0]``, its ``b`` at ``slices[i][1]``."""

    def __init__(self, network: MLP, allocate: Allocate | None = None) -> None:
        self.network = network
        if allocate is None:  # zeros on the network's device
            allocate = network.xp.zeros
        self.slices: list[tuple[slice, slice]] = []
        offset = 0
        for fan_in, fan_out in itertools.pairwise(network.layer_sizes):
            w = slice(offset, offset + fan_in * fan_out)
            b = slice(w.stop, w.stop + fan_out)
            self.slices.append((w, b))
            offset = b.stop
        dtype = DTYPES[network.dtype]
        self.parameters: Array = allocate((offset,), dtype)
        self.gradients: Array = allocate((offset,), dtype)
        self._own: list[tuple[Array, Array, Array, Array]] | None = None

    def views(self, i: int, flat: Array) -> tuple[Array, Array]:
        """Layer ``i``'s ``W`` and ``b`` as views of ``flat`` (parameters or gradients)."""
        w, b = self.slices[i]
        return flat[w].reshape(self.network.dense[i].W.shape), flat[b]

    def weight_pairs(self) -> list[tuple[Array, Array]]:
        """``(W, dL/dW)`` of every layer as views of the flat vectors (for weight decay)."""
        return [(self.views(i, self.parameters)[0], self.views(i, self.gradients)[0])
                for i in range(len(self.slices))]

    def attach(self) -> None:
        """Copy the network's parameters in and make its layers use the flat vectors."""
        assert self._own is None, "already attached"
        self._own = []
        for i, layer in enumerate(self.network.dense):
            W, b = self.views(i, self.parameters)
            gW, gb = self.views(i, self.gradients)
            W[...], b[...] = layer.W, layer.b
            self._own.append((layer.W, layer.b, layer.grad_W, layer.grad_b))
            layer.W, layer.b, layer.grad_W, layer.grad_b = W, b, gW, gb

    def detach(self) -> None:
        """Copy the parameters back into the layers' own arrays and use those again."""
        if self._own is None:
            return
        for layer, (W, b, gW, gb) in zip(self.network.dense, self._own, strict=True):
            W[...], b[...], gW[...], gb[...] = layer.W, layer.b, layer.grad_W, layer.grad_b
            layer.W, layer.b, layer.grad_W, layer.grad_b = W, b, gW, gb
        self._own = None


class FusedTrainer:
    """The fast engine in one process: the textbook step (``loss_and_gradients``, then the
    optimizer) over flat vectors, with :mod:`digitnet.engine.optimizers`' update. Used for
    networks too small to gain from two processes. A context manager, like every trainer."""

    def __init__(
        self,
        network: MLP,
        config: TrainConfig,
        x: NDArray[np.uint8],
        y: NDArray[np.integer],
        scaler: MinMaxScaler,
        rng: np.random.Generator,
    ) -> None:
        self.network = network
        self.flat = flat = FlatParameters(network)
        self.state_vectors = [network.xp.zeros_like(flat.parameters)
                              for _ in range(n_state_vectors(config.optimizer))]
        self.optimizer = make_optimizer(
            config.optimizer, [flat.parameters], [flat.gradients], config.lr,
            config.weight_decay, config.momentum, decay_pairs=flat.weight_pairs(),
            state=self.state_vectors,
        )
        buffer = network.xp.empty((min(config.batch_size, len(x)), network.n_inputs),
                                  dtype=DTYPES[network.dtype])  # on the network's device
        self.batches = BatchLoader(x, y, scaler, buffer, rng)
        self._prefetch: PrefetchedEpochs | None = None

    def __enter__(self) -> FusedTrainer:
        self.flat.attach()
        return self

    def __exit__(self, *exc: object) -> None:
        self.flat.detach()
        if self._prefetch is not None:
            self._prefetch.close()

    def prefetch_images(self, source: EpochImages) -> PrefetchedEpochs:
        """Augmented epochs computed one ahead in a worker process (:mod:`.prefetch`)."""
        # training on a GPU leaves the CPU's cores to the augmentation; on a CPU, one worker
        workers = spare_cores() if self.network.device != "cpu" else 1
        self._prefetch = PrefetchedEpochs(source, workers=workers)
        return self._prefetch

    def step(self, x: Array, y: NDArray[np.integer], lr: float) -> tuple[float, int]:
        """Forward, backward and one descent step; the loss and number of correct answers."""
        loss, n_correct = self.network.loss_and_gradients(x, y)
        self.optimizer.step(lr)
        return loss, n_correct

    def evaluate(self, x: NDArray[np.uint8], y: NDArray[np.integer]) -> tuple[float, float]:
        """Validation loss and accuracy (:func:`evaluate_loss_accuracy`)."""
        return evaluate_loss_accuracy(self.network, x, y, self.batches.scaler)

    def state_dict(self) -> dict[str, Any]:
        return state_dict([self.optimizer], self.state_vectors)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_state_dict([self.optimizer], self.state_vectors, state)
