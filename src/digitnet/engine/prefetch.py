"""The next epoch's augmented images, computed in another process while this epoch trains.

:class:`digitnet.training.EpochImages` distorts the whole training set at the start of every
epoch, in the training process: simple, and on MNIST about 0.8 s an epoch with elastic
distortions. :class:`PrefetchedEpochs` asks a worker process (forked once, holding the
original images) for epoch ``e + 1`` as soon as epoch ``e`` is handed out, so the training
process only copies the result in. The images depend only on the seed and the epoch, so
they are the same bits wherever they were computed; where no worker can be started (no
fork, a daemon process) they are computed here, as in the textbook path.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
from typing import Any

import numpy as np
from numpy.typing import NDArray

from digitnet.training import EpochImages

_SOURCE: EpochImages | None = None  # the worker's copy, inherited through fork


def _remember(source: EpochImages) -> None:
    global _SOURCE
    _SOURCE = source


def _epoch(epoch: int) -> NDArray[np.uint8]:
    assert _SOURCE is not None
    return _SOURCE(epoch)


class PrefetchedEpochs:
    """``images(epoch)`` like ``source``, with epoch ``epoch + 1`` started in a worker before
    returning (up to ``source.epochs``). :meth:`close` stops the worker."""

    def __init__(self, source: EpochImages) -> None:
        self.source = source
        self._pool: multiprocessing.pool.Pool | None = None
        self._pending: dict[int, Any] = {}
        self._failed = False

    def _start(self) -> multiprocessing.pool.Pool | None:
        if self._pool is None and not self._failed:
            try:
                context = multiprocessing.get_context("fork")
                self._pool = context.Pool(1, initializer=_remember, initargs=(self.source,))
            except (ValueError, OSError, AssertionError):  # no fork; a daemon process
                self._failed = True
        return self._pool

    def __call__(self, epoch: int) -> NDArray[np.uint8]:
        pending = self._pending.pop(epoch, None)
        images = pending.get() if pending is not None else self.source(epoch)
        pool = self._start() if epoch < self.source.epochs else None
        if pool is not None:
            self._pending[epoch + 1] = pool.apply_async(_epoch, (epoch + 1,))
        return images

    def close(self) -> None:
        self._pending.clear()
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
