"""Training on two CPU cores: the weight rows of the large layers split between two processes.

This is digitnet's one speed trick that changes *where* the arithmetic runs; the math is
that of :class:`digitnet.layers.Dense` and :mod:`digitnet.optimizers`, regrouped.

Why
---
The first layers hold most of the FLOPs and parameters (784x128 of 109,386 for
784-128-64-10). With OpenBLAS running each matrix product on two threads, the other core
writes half of ``dL/dW``, and the optimizer (NumPy, one thread) then pulls that half, and
the ``W`` it rewrites, across the cores' caches on every step: the update got half again as
slow as in cache, and the products lost as much. Python threads cannot share the work
instead: handing a job to a thread and back costs ~80 µs on these machines (the
interpreter lock), as much as the job. A *process* that spins on a flag in shared memory
answers in ~1 µs.

The split
---------
For a layer ``z = x @ W + b`` with ``W`` of shape ``(d, h)``, cut the ``d`` input rows at
``r = d // 2``; with ``delta = dL/dz``::

    z             = x[:, :r] @ W[:r]  +  x[:, r:] @ W[r:]  +  b      (n, h)
    dL/dW[:r]     = x[:, :r].T @ delta                              (r, h)
    dL/dW[r:]     = x[:, r:].T @ delta                              (d - r, h)
    dL/dx[:, :r]  = delta @ W[:r].T,   dL/dx[:, r:] = delta @ W[r:].T

A helper process owns rows ``r:`` of every split layer: it computes their share of ``z``,
their gradient rows, their columns of ``dL/dx`` and -- optimizers being element-wise --
their update, with its own slice of the optimizer state. This process does rows ``:r``,
the biases, the activations, the loss, the small layers and the data. Each core thus keeps
touching the same half of ``W``, ``dL/dW`` and the optimizer state, and BLAS runs on one
thread in each process. The leading layers with at least :data:`MIN_SPLIT_WORK`
multiply-adds per batch are split (:func:`layers_to_split`); the small ones stay whole.

Determinism
-----------
Whenever a layer is worth splitting, training uses this split arithmetic, with or without
the helper: without it (one CPU, BLAS limited to one thread, a daemon process such as a
Dask or joblib worker, a thread other than the main one, a platform other than Linux on
x86-64, or when the fork fails), the helper's share runs here, in the same order. The
weights are bit for bit the same whether the helper ran or not.

Protocol
--------
Both processes share the arrays (anonymous shared memory, inherited by ``fork``) and a small
control block ``ctl``. To give the helper a job, this process writes the command and its
arguments, then increments ``ctl[SEQ]``; the helper, spinning on ``ctl[SEQ]``, runs the
job and then sets ``ctl[DONE] = ctl[SEQ]``, on which this process spins. On x86-64 stores
become visible to the other core in program order, so the flag is seen after the data.
An idle helper spins for :data:`SPIN_SECONDS`, then polls every :data:`IDLE_POLL_SECONDS`
and exits if this process has gone.

OpenBLAS's own idle threads in this process spin for ~0.1 s after a multi-threaded product,
on the helper's core; the ``digitnet`` command therefore sets ``OPENBLAS_THREAD_TIMEOUT``
(:data:`digitnet.cli.OPENBLAS_THREAD_TIMEOUT`). From Python, set it before NumPy is imported
to spare the first epoch up to ~0.2 s.
"""

from __future__ import annotations

import contextlib
import mmap
import multiprocessing
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
from numpy.typing import NDArray

from digitnet.batches import BatchLoader
from digitnet.config import TrainConfig
from digitnet.data.preprocessing import MinMaxScaler
from digitnet.inference import evaluate_loss_accuracy
from digitnet.layers import Dense
from digitnet.network import MLP
from digitnet.optimizers import Optimizer, make_optimizer

Array = NDArray[np.floating]

# Split a layer only when its product has at least this many multiply-adds per batch (784x128
# weights and batch 128 have 12.8 million): below, the hand-offs cost more than they save.
MIN_SPLIT_WORK = 1 << 22

SPIN_SECONDS = 0.05
IDLE_POLL_SECONDS = 0.0005
STOP_TIMEOUT_SECONDS = 5.0

# Control block: ctl[SEQ] job number, ctl[CMD] what to do, ctl[LAYER] for which split layer,
# ctl[ROWS] batch rows, ctl[BUFFER] which input buffer, ctl[DONE] the last job finished,
# ctl[FAILED] 1 after an exception.
SEQ, CMD, LAYER, ROWS, BUFFER, DONE, FAILED = range(7)
LOAD, PREPARE, FORWARD, BACKWARD, UPDATE, STOP = range(1, 7)


def layers_to_split(network: MLP, batch_size: int) -> int:
    """How many leading Dense layers are large enough to split for ``batch_size``."""
    count = 0
    for d, h in zip(network.layer_sizes[:-1], network.layer_sizes[1:], strict=True):
        if d < 2 or batch_size * d * h < MIN_SPLIT_WORK:
            break
        count += 1
    return count


def worth_splitting(network: MLP, batch_size: int) -> bool:
    """Whether training ``network`` with ``batch_size`` splits at least its first layer."""
    return layers_to_split(network, batch_size) > 0


def helper_can_run() -> bool:
    """Whether a helper process may use a second core here (see "Determinism" above)."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False
    if len(os.sched_getaffinity(0)) < 2 or multiprocessing.current_process().daemon:
        return False
    if threading.current_thread() is not threading.main_thread():
        return False  # e.g. a threaded Dask worker: fork() copies only this thread
    from threadpoolctl import threadpool_info

    blas_threads = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    return bool(blas_threads) and min(blas_threads) >= 2


def shared_array(shape: tuple[int, ...], dtype: Any) -> NDArray[Any]:
    """A zero-filled array in anonymous shared memory (shared with processes forked later)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    buffer = mmap.mmap(-1, max(count * dtype.itemsize, 1))
    return np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape)


class RowShare:
    """One process's share of a split layer: the rows ``rows`` of ``W``.

    The buffers hold up to a full batch of ``n_max`` rows and are shared by both processes:
    ``inputs`` the layer's input ``(n_max, d)`` (two for the first layer, whose batches are
    double-buffered; :meth:`use` picks one as ``x``), ``delta`` its ``dL/dz`` ``(n_max, h)``,
    ``dx`` its ``dL/dx`` ``(n_max, d)`` (``None`` for the first layer); ``partial``
    ``(n_max, h)`` receives this share's product.
    """

    def __init__(self, layer: Dense, rows: slice, inputs: list[Array], delta: Array,
                 dx: Array | None, partial: Array) -> None:
        self.W, self.grad_W, self.rows = layer.W, layer.grad_W, rows
        self.inputs, self.delta, self.dx, self.partial = inputs, delta, dx, partial
        self.x = inputs[0]

    def use(self, buffer: int) -> None:
        """Read the input from ``inputs[buffer]``."""
        self.x = self.inputs[buffer]

    def forward(self, n: int) -> Array:
        """``partial = x[:, rows] @ W[rows]`` for the first ``n`` samples."""
        return np.matmul(self.x[:n, self.rows], self.W[self.rows], out=self.partial[:n])

    def backward(self, n: int) -> None:
        """``dL/dW[rows] = x[:, rows].T @ delta`` and ``dL/dx[:, rows] = delta @ W[rows].T``."""
        delta = self.delta[:n]
        np.matmul(self.x[:n, self.rows].T, delta, out=self.grad_W[self.rows])
        if self.dx is not None:
            np.matmul(delta, self.W[self.rows].T, out=self.dx[:n, self.rows])


class HelperWork:
    """What the helper does: its part of loading the batches of ``batches`` (with a loader of
    its own over the same data and buffers), its share of every split layer, and its
    optimizer."""

    def __init__(self, shares: list[RowShare], optimizer: Optimizer,
                 batches: SplitBatchLoader | None = None) -> None:
        self.shares, self.optimizer, self.batches = shares, optimizer, batches
        self.loader = None if batches is None else BatchLoader(
            batches.x, batches.y, batches.scaler, batches.buffers[0], batches.rng)

    def run(self, command: int, layer: int, n: int, lr: float, buffer: int) -> None:
        batches, loader = self.batches, self.loader
        if command in (LOAD, PREPARE):
            assert batches is not None and loader is not None
            loader.out = batches.buffers[buffer]
            if command == LOAD:  # the second half of the batch `indices`
                loader.load_part(batches.indices[:n], slice(n // 2, n))
            else:  # the whole next batch
                loader.load_part(batches.indices[:n], slice(0, n))
        elif command == FORWARD:
            self.shares[layer].use(buffer)
            self.shares[layer].forward(n)
        elif command == BACKWARD:
            self.shares[layer].use(buffer)
            self.shares[layer].backward(n)
        elif command == UPDATE:
            self.optimizer.step(lr)
        else:
            raise ValueError(f"unknown helper command {command}")


class InlineHelper:
    """Does the helper's work in this process, right away (same arithmetic, one core)."""

    def __init__(self, work: HelperWork) -> None:
        self.work = work

    def post(self, command: int, layer: int = 0, n: int = 0, lr: float = 0.0,
             buffer: int = 0) -> None:
        self.work.run(command, layer, n, lr, buffer)

    def wait(self) -> None:
        pass

    def close(self) -> None:
        pass


class HelperProcess:
    """Does the helper's work in a forked process that spins on a shared control block.

    ``work``'s buffers must be shared (:func:`shared_array`): after :meth:`wait`, this
    process reads the helper's results through them.
    """

    def __init__(self, work: HelperWork) -> None:
        self.work = work
        self.ctl = shared_array((7,), np.int64)
        self.lr = shared_array((1,), np.float64)
        self._errors, child_end = multiprocessing.Pipe(duplex=False)
        context = multiprocessing.get_context("fork")
        self.process = context.Process(
            target=_serve, args=(work, self.ctl, self.lr, child_end, os.getpid()),
            name="digitnet-helper", daemon=True,
        )
        self.process.start()
        child_end.close()
        self._closed = False

    def post(self, command: int, layer: int = 0, n: int = 0, lr: float = 0.0,
             buffer: int = 0) -> None:
        """Start a job in the helper (after the previous one has finished); :meth:`wait` for
        it before using its results."""
        self.wait()
        self._send(command, layer, n, lr, buffer)

    def _send(self, command: int, layer: int = 0, n: int = 0, lr: float = 0.0,
              buffer: int = 0) -> None:
        ctl = self.ctl
        ctl[CMD], ctl[LAYER], ctl[ROWS], ctl[BUFFER], self.lr[0] = command, layer, n, buffer, lr
        ctl[SEQ] += 1

    def wait(self) -> None:
        """Spin until the helper has finished the last job posted."""
        ctl, seq, spins = self.ctl, self.ctl[SEQ], 0
        while ctl[DONE] != seq:
            spins += 1
            if spins & 0xFFFF == 0 and not self.process.is_alive():
                raise RuntimeError(
                    f"the training helper process ended unexpectedly "
                    f"(exit code {self.process.exitcode})"
                )
        if ctl[FAILED]:
            message = self._errors.recv() if self._errors.poll(1.0) else "no details"
            raise RuntimeError(f"the training helper process failed: {message}")

    def close(self) -> None:
        """Let a running job finish, stop the helper and reap it."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while (self.ctl[DONE] != self.ctl[SEQ] and self.process.is_alive()
               and time.monotonic() < deadline):
            pass
        if self.process.is_alive():
            self._send(STOP)
        self.process.join(STOP_TIMEOUT_SECONDS)
        if self.process.is_alive():  # pragma: no cover - only if the helper hangs
            self.process.kill()
            self.process.join()
        self._errors.close()


def _serve(
    work: HelperWork, ctl: NDArray[np.int64], lr: NDArray[np.float64], errors: Connection,
    parent: int,
) -> None:
    """The helper's loop: wait for a job, run it, report it done; until STOP."""
    from threadpoolctl import threadpool_limits

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    with threadpool_limits(1):
        done = int(ctl[DONE])
        while True:
            seq = _next_job(ctl, done, parent)
            if seq is None:
                return
            if ctl[CMD] == STOP:
                ctl[DONE] = seq
                return
            try:
                work.run(int(ctl[CMD]), int(ctl[LAYER]), int(ctl[ROWS]), float(lr[0]),
                         int(ctl[BUFFER]))
            except BaseException as error:  # reported to the parent, which raises
                errors.send(f"{type(error).__name__}: {error}")
                ctl[FAILED] = 1
                ctl[DONE] = seq
                return
            ctl[DONE] = done = seq


def _next_job(ctl: NDArray[np.int64], done: int, parent: int) -> int | None:
    """Spin until ``ctl[SEQ]`` moves past ``done``; ``None`` once the parent has gone."""
    spins = 0
    spin_until = time.perf_counter() + SPIN_SECONDS
    while ctl[SEQ] == done:
        spins += 1
        if spins & 0x3FF == 0 and time.perf_counter() > spin_until:
            if os.getppid() != parent:
                return None
            time.sleep(IDLE_POLL_SECONDS)
    return int(ctl[SEQ])


class SplitDense(Dense):
    """A ``Dense`` layer computed as two row shares, this process's and the helper's.

    Batches in the shared input buffer go through the split; any other input (validation
    data) takes the plain ``Dense.forward``.
    """

    def __init__(self, layer: Dense, index: int, here: RowShare, there: RowShare,
                 helper: InlineHelper | HelperProcess) -> None:
        super().__init__(layer.W, layer.b, layer.grad_W, layer.grad_b, layer.needs_input_grad)
        self.index, self.here, self.there, self.helper = index, here, there, helper
        self.after_forward: Callable[[], None] | None = None
        self._n = self._buffer = 0

    def forward(self, x: Array) -> Array:
        """``z = x[:, :r] @ W[:r] + x[:, r:] @ W[r:] + b``, the two products on two cores."""
        buffer = next((i for i, b in enumerate(self.here.inputs) if np.may_share_memory(x, b)),
                      None)
        if buffer is None:
            return super().forward(x)
        n = self._n = x.shape[0]
        self._x, self._buffer = x, buffer
        self.helper.post(FORWARD, self.index, n, buffer=buffer)
        self.here.use(buffer)
        z = self.here.forward(n)  # a shared buffer, reused every batch
        self.helper.wait()
        z += self.there.partial[:n]
        z += self.b
        if self.after_forward is not None:
            self.after_forward()
        return z

    def backward(self, delta: Array) -> Array | None:
        """``dL/dW`` and ``dL/dx`` by row blocks on two cores, ``dL/db`` here."""
        n = self._n
        if not np.may_share_memory(delta, self.here.delta):
            np.copyto(self.here.delta[:n], delta)
        self.helper.post(BACKWARD, self.index, n, buffer=self._buffer)
        self.here.backward(n)
        np.sum(delta, axis=0, out=self.grad_b)
        self.helper.wait()
        return None if self.here.dx is None else self.here.dx[:n]


class SplitBatchLoader(BatchLoader):
    """Batches for the split layers, in two shared buffers used in turn (``buffers``).

    While this process computes the loss and the small layers, the helper would idle: there
    it loads the *next* batch, whole, into the buffer the current step does not use
    (:meth:`prefetch`, called by the last split layer). Batches that were not prefetched (an
    epoch's first) are loaded half here, half in the helper. The values are the same either
    way; gathering random rows is the slow part (memory latency, ~0.6 µs a row).
    """

    def __init__(self, x: NDArray[np.uint8], y: NDArray[np.integer], scaler: MinMaxScaler,
                 buffers: list[Array], rng: np.random.Generator) -> None:
        super().__init__(x, y, scaler, buffers[0], rng)
        n = len(buffers[0])
        self.buffers, self.current = buffers, 0
        # The samples the helper's LOAD (second half) or PREPARE (whole next batch) job loads;
        # both are waited for before the next job, so one buffer serves the two.
        self.indices = shared_array((n,), np.intp)
        self.helper: InlineHelper | HelperProcess | None = None  # set by SplitTrainer
        self._upcoming: NDArray[np.intp] | None = None
        self._prepared: NDArray[np.intp] | None = None

    def use(self, buffer: int) -> None:
        """Load into ``buffers[buffer]`` from now on."""
        self.current, self.out = buffer, self.buffers[buffer]

    def epoch(self) -> Iterator[tuple[Array, NDArray[np.intp]]]:
        order = self.rng.permutation(len(self.x))
        batches = [order[start : start + self.batch_size]
                   for start in range(0, len(order), self.batch_size)]
        for i, idx in enumerate(batches):
            self._upcoming = batches[i + 1] if i + 1 < len(batches) else None
            yield self.load(idx), self.y[idx]

    def prefetch(self) -> None:
        """Have the helper load the next batch into the other buffer (no-op at an epoch's
        end); :meth:`load` then only switches buffers."""
        upcoming = self._upcoming
        if upcoming is None or self._prepared is upcoming or self.helper is None:
            return
        self.indices[: len(upcoming)] = upcoming
        self.helper.post(PREPARE, n=len(upcoming), buffer=1 - self.current)
        self._prepared = upcoming

    def load(self, idx: NDArray[np.intp]) -> Array:
        assert self.helper is not None, "the SplitTrainer has not started"
        n = len(idx)
        if self._prepared is idx:
            self._prepared = None
            self.use(1 - self.current)
        else:
            self.indices[:n] = idx
            self.helper.post(LOAD, n=n, buffer=self.current)
            self.load_part(idx, slice(0, n // 2))
        self.helper.wait()
        return self.out[:n]


class SplitTrainer:
    """Trains ``network`` with its large layers split over two processes; a context manager.

    On entry the network's flat parameter and gradient vectors move into shared memory, its
    leading large layers become :class:`SplitDense` and the helper starts (or runs inline:
    ``use_helper=False``, or by default when :func:`helper_can_run` says no). On exit the
    helper stops and the network gets private vectors and plain layers back.
    """

    def __init__(
        self,
        network: MLP,
        config: TrainConfig,
        x: NDArray[np.uint8],
        y: NDArray[np.integer],
        scaler: MinMaxScaler,
        rng: np.random.Generator,
        use_helper: bool | None = None,
    ) -> None:
        self.network, self.config = network, config
        self.batch_size = n = min(config.batch_size, len(x))
        self.n_split = max(layers_to_split(network, n), 1)
        self.use_helper = helper_can_run() if use_helper is None else use_helper
        dtype = network.flat_parameters.dtype
        self.batch_buffers = [shared_array((n, network.n_inputs), dtype) for _ in range(2)]
        self.batches = SplitBatchLoader(x, y, scaler, self.batch_buffers, rng)
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> SplitTrainer:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def _start(self) -> None:
        net, n, k = self.network, self.batch_size, self.n_split
        dtype = net.flat_parameters.dtype
        net.move_parameters(shared_array(net.flat_parameters.shape, dtype),
                            shared_array(net.flat_gradients.shape, dtype))
        self._stack.callback(self._restore_private_parameters)

        # Layer i reads layer i-1's output (this process's partial buffer, after the bias and
        # the activation), and its dL/dx is layer i-1's delta.
        widths = [layer.W.shape[1] for layer in net.dense[:k]]
        deltas = [shared_array((n, h), dtype) for h in widths]
        here_partials = [shared_array((n, h), dtype) for h in widths]
        inputs = [self.batch_buffers, *([p] for p in here_partials[:-1])]
        cuts = [layer.W.shape[0] // 2 for layer in net.dense[:k]]  # r: the helper's rows
        here, there = [], []
        for i, (layer, r) in enumerate(zip(net.dense[:k], cuts, strict=True)):
            dx = deltas[i - 1] if i > 0 else None
            args = (inputs[i], deltas[i], dx)
            here.append(RowShare(layer, slice(0, r), *args, here_partials[i]))
            there.append(RowShare(layer, slice(r, None), *args,
                                  shared_array((n, widths[i]), dtype)))
        here_optimizer, there_optimizer = self._optimizers(cuts)
        work = HelperWork(there, there_optimizer, self.batches)
        self.helper: InlineHelper | HelperProcess = InlineHelper(work)
        if self.use_helper:
            from threadpoolctl import threadpool_limits

            try:
                self.helper = HelperProcess(work)
            except OSError:  # no fork (memory, process limits): the same work, inline
                self.use_helper = False
            else:
                self._stack.enter_context(threadpool_limits(1))
        self._stack.callback(self.helper.close)
        self.batches.helper = self.helper
        splits = [SplitDense(net.dense[i], i, here[i], there[i], self.helper) for i in range(k)]
        for i, split in enumerate(splits):
            net.layers[net.layers.index(net.dense[i])] = net.dense[i] = split
        splits[-1].after_forward = self.batches.prefetch  # the helper is free until backward
        self.optimizer = here_optimizer

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def step(self, x: Array, y: NDArray[np.integer], lr: float) -> tuple[float, int]:
        """Forward, backward and one optimizer step on the batch ``x`` (from
        :attr:`batches`); returns the loss and the number of correct predictions."""
        loss, n_correct = self.network.loss_and_gradients(x, y)
        self.helper.post(UPDATE, lr=lr)
        self.optimizer.step(lr)
        self.helper.wait()
        return loss, n_correct

    def evaluate(self, x: NDArray[np.uint8], y: NDArray[np.integer]) -> tuple[float, float]:
        """Validation loss and accuracy, batch by batch through the split layers (both cores)."""
        return evaluate_loss_accuracy(self.network, x, y, self.batches.scaler, self.batch_size,
                                      self.batches.out)

    def _optimizers(self, cuts: list[int]) -> tuple[Optimizer, Optimizer]:
        """One optimizer for this process's parameters, one for the helper's rows: rows
        ``cuts[i]:`` of each split layer ``i``."""
        net, c = self.network, self.config
        params, grads = net.flat_parameters, net.flat_gradients
        theirs, here_pairs, there_pairs = [], [], []
        for i, ((w, _), layer) in enumerate(zip(net.flat_slices(), net.dense, strict=True)):
            if i < len(cuts):
                r, h = cuts[i], layer.W.shape[1]
                theirs.append(slice(w.start + r * h, w.stop))
                here_pairs.append((layer.W[:r], layer.grad_W[:r]))
                there_pairs.append((layer.W[r:], layer.grad_W[r:]))
            else:
                here_pairs.append((layer.W, layer.grad_W))
        ours = _complement(theirs, params.size)

        def build(slices: list[slice], pairs: list[tuple[Array, Array]]) -> Optimizer:
            return make_optimizer(c.optimizer, [params[s] for s in slices],
                                  [grads[s] for s in slices], c.lr, c.weight_decay,
                                  c.momentum, decay_pairs=pairs)

        return build(ours, here_pairs), build(theirs, there_pairs)

    def _restore_private_parameters(self) -> None:
        net = self.network
        net.move_parameters(np.empty_like(net.flat_parameters),
                            np.empty_like(net.flat_gradients))


def _complement(slices: list[slice], size: int) -> list[slice]:
    """The parts of ``range(size)`` not covered by ``slices`` (sorted, disjoint)."""
    gaps, start = [], 0
    for s in slices:
        if s.start > start:
            gaps.append(slice(start, s.start))
        start = s.stop
    if start < size:
        gaps.append(slice(start, size))
    return gaps
