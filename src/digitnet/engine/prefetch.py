"""The next epoch's augmented images, computed beside the training, never holding it up.

:class:`digitnet.training.EpochImages` distorts the whole training set at the start of every
epoch, in the training process: simple, and on MNIST about 0.4-0.5 s (affine) or 0.7-1.3 s
(elastic) of one core an epoch. :class:`PrefetchedEpochs` gives epoch ``e + 1`` to a worker
process (forked once, holding the original images) as soon as epoch ``e`` is handed out
(the first epoch it is asked for, which nobody started ahead, it shares the same way):

* the worker writes the images chunk by chunk (:data:`CHUNK` images, the augmentation's own
  blocks) into shared memory, taking chunks from the front (``workers > 1`` of them share the
  chunks the same way: when the training runs on a GPU, the CPU's cores are free for it);
* it runs at a lower priority (:data:`NICE`), so on a machine whose cores the training
  already uses (two processes of the split engine on two cores) it takes only the time they
  leave idle instead of slowing every step;
* when training asks for an epoch the worker has not finished (the worker was starved:
  a busy machine, or no spare core), this process computes the remaining chunks itself,
  from the back, until the two meet. So the wait is never longer than computing the rest
  here, as the textbook path does, however little time the worker got.

Every image depends only on the seed, the epoch and its position, so the result is the same
bits whoever computed which chunk. Where no worker can be started (no fork, a daemon
process) or should not be (a thread other than the main one, such as a threaded Dask
worker's: a fork copies only the calling thread, and another thread's BLAS product under
way would hang, see :mod:`digitnet.forking`) the images are computed here, as in the
textbook path.
"""

from __future__ import annotations

import contextlib
import mmap
import multiprocessing
import multiprocessing.pool
import os
import threading
from typing import Any

import numpy as np
from numpy.typing import NDArray

from digitnet.augment import BLOCK
from digitnet.forking import FORK_GATE
from digitnet.training import EpochImages

CHUNK = BLOCK  # images per chunk: a whole number of the augmentation's blocks
NICE = 10  # the worker's niceness (0: as important as training, 19: only idle time)


class _Shared:
    """What this process and its worker share (inherited through fork): the images of two
    epochs (a double buffer) and, per buffer, the chunk counters ``[next chunk from the
    front, end of what is left from the back]`` under one lock."""

    def __init__(self, source: EpochImages, lock: Any) -> None:
        shape = (2, *source.x.shape)
        self.source, self.lock = source, lock
        images = mmap.mmap(-1, int(np.prod(shape)) * source.x.itemsize)  # shared on fork
        self.buffers = np.frombuffer(images, dtype=source.x.dtype).reshape(shape)
        self.counters = np.frombuffer(mmap.mmap(-1, 2 * 2 * 8), dtype=np.int64).reshape(2, 2)

    def reset(self, k: int, n_chunks: int) -> None:
        with self.lock:
            self.counters[k] = (0, n_chunks)

    def claim(self, k: int, front: bool) -> int | None:
        """The next chunk of buffer ``k`` from the front (the worker) or the back (here),
        or ``None`` once the two have met."""
        with self.lock:
            c = self.counters[k]
            if c[0] >= c[1]:
                return None
            if front:
                c[0] += 1
                return int(c[0] - 1)
            c[1] -= 1
            return int(c[1])

    def compute(self, k: int, epoch: int, chunk: int) -> None:
        lo, hi = chunk * CHUNK, min((chunk + 1) * CHUNK, len(self.source.x))
        self.buffers[k, lo:hi] = self.source.part(epoch, lo, hi)


_WORKER: _Shared | None = None  # the worker's view of it


def _start_worker(shared: _Shared, nice: int) -> None:
    global _WORKER
    _WORKER = shared
    with contextlib.suppress(OSError):  # not allowed here: the training's priority
        os.nice(nice)


def _fill_from_front(k: int, epoch: int) -> int:
    """The worker's job: chunks of ``epoch`` into buffer ``k`` until none is left."""
    assert _WORKER is not None
    done = 0
    while (chunk := _WORKER.claim(k, front=True)) is not None:
        _WORKER.compute(k, epoch, chunk)
        done += 1
    return done


def spare_cores() -> int:
    """The cores this process may use, less one for the training itself (at least 1)."""
    return max(1, len(os.sched_getaffinity(0)) - 1)


class PrefetchedEpochs:
    """``images(epoch)`` like ``source``, with epoch ``epoch + 1`` started in ``workers``
    worker processes before returning (up to ``source.epochs``). The array returned is valid
    until the next call. :meth:`close` stops the workers. :attr:`chunks_here` /
    :attr:`chunks_worker` count who computed what (for the benchmarks)."""

    def __init__(self, source: EpochImages, nice: int = NICE, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.source = source
        self.nice, self.workers = nice, int(workers)
        self.n_chunks = -(-len(source.x) // CHUNK)
        self._pool: multiprocessing.pool.Pool | None = None
        self._shared: _Shared | None = None
        self._pending: dict[int, tuple[int, list[Any]]] = {}  # epoch -> (buffer, results)
        self._failed = False
        self.chunks_here = 0
        self.chunks_worker = 0

    def _start(self) -> multiprocessing.pool.Pool | None:
        # not from another thread: other threads may be computing (see the module text)
        if (self._pool is None and not self._failed
                and threading.current_thread() is threading.main_thread()):
            try:
                context = multiprocessing.get_context("fork")
                self._shared = _Shared(self.source, context.Lock())
                with FORK_GATE.forking(), self._blas_limit():
                    self._pool = context.Pool(self.workers, initializer=_start_worker,
                                              initargs=(self._shared, self.nice))
            except (ValueError, OSError, AssertionError):  # no fork; a daemon process
                self._failed = True
        return self._pool

    def _blas_limit(self) -> contextlib.AbstractContextManager[Any]:
        """The BLAS thread limit the workers are forked with and keep (the elastic
        smoothing's products): one thread each when there are several, else the training
        process's own (one per process under the split engine on two cores). Set here,
        before the fork, never in a worker: after a fork OpenBLAS has no thread pool, and
        setting its thread count would create one in every worker, whose new threads spin
        for ~0.1 s (see :func:`digitnet.engine.split._serve`)."""
        if self.workers == 1:
            return contextlib.nullcontext()
        from threadpoolctl import threadpool_limits

        return threadpool_limits(1)

    def __call__(self, epoch: int) -> NDArray[np.uint8]:
        # An epoch not started ahead (the first one, or one asked out of turn): the workers
        # start on it now and this process works from the back, so even the first epoch's
        # images are not left to this process alone.
        pending = self._pending.pop(epoch, None) or self._begin(epoch)
        images = self._finish(epoch, *pending) if pending is not None else self.source(epoch)
        if epoch < self.source.epochs:
            upcoming = self._begin(epoch + 1)
            if upcoming is not None:
                self._pending[epoch + 1] = upcoming
        return images

    def _begin(self, epoch: int) -> tuple[int, list[Any]] | None:
        """Start the workers on ``epoch`` in buffer ``epoch % 2`` (so the one just handed
        out is not touched); ``None`` where there are no workers."""
        pool = self._start()
        if pool is None:
            return None
        assert self._shared is not None
        k = epoch % 2
        self._shared.reset(k, self.n_chunks)
        return k, [pool.apply_async(_fill_from_front, (k, epoch)) for _ in range(self.workers)]

    def _finish(self, epoch: int, k: int, results: list[Any]) -> NDArray[np.uint8]:
        """Buffer ``k`` complete: what the workers have not taken yet is computed here."""
        assert self._shared is not None
        while (chunk := self._shared.claim(k, front=False)) is not None:
            self._shared.compute(k, epoch, chunk)
            self.chunks_here += 1
        try:
            for result in results:  # their last chunks, if they have one in hand
                self.chunks_worker += int(result.get())
        except Exception:  # the worker died: recompute the whole epoch here
            self.close()
            self._failed = True
            return self.source(epoch)
        return self._shared.buffers[k]

    def close(self) -> None:
        self._pending.clear()
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
