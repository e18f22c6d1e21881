"""The fast engine on several cores: the large layers' weight rows split between two
processes, with a step that measures itself and works alone when the other process does
not pay.

The math is that of :class:`digitnet.layers.Dense` and :mod:`digitnet.engine.optimizers`,
regrouped; this module only changes *where* it runs.

Why
---
The first layers hold most of the FLOPs and parameters (784x256 of 235,146 for the default
784-256-128-10). With BLAS running each matrix product on two threads, the other core writes
half of ``dL/dW``, and the optimizer (NumPy, one thread) then pulls that half, and the ``W``
it rewrites, across the cores' caches on every step. Python threads cannot share the work
instead: handing a job to a thread and back costs ~80 µs (the interpreter lock), as much as
the job. A *process* that spins on a flag in shared memory answers in ~1 µs.

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
touching the same half of ``W``, ``dL/dW`` and the optimizer state. The leading layers
with at least :data:`MIN_SPLIT_WORK` multiply-adds per batch are split
(:func:`layers_to_split`); the small ones stay whole.

More cores: the split stays two shares (so the arithmetic, and the weights, do not depend
on the machine's core count), and each process runs BLAS on :func:`blas_threads_per_process`
threads: half of the threads BLAS may use, at least one.

A machine that is busy
----------------------
The two processes hand jobs to each other many times per step. That is fast while each has
a core; when something else wants the cores (another training, a browser, a CI job), every
hand-off can wait for a time slice and the split gets *slower* than one process. So the
helper's share can run in either of two places, with the very same arithmetic:

* ``PROCESS``: in the helper process, while this process does its own share;
* ``INLINE``: here, right after this process's share; the helper sleeps (blocked on a
  pipe, using no CPU).

:class:`ModeChooser` times every step and picks the faster place: it measures both at the
start, re-measures the other one now and then (less and less often while the choice
holds, at once when the steps slow down), and abandons a measurement after one step that
is clearly slower. Waiting for the other process spins for a few microseconds, then yields
the core to whatever else wants it (``os.sched_yield``). The weights are bit for bit the
same whatever was chosen, when or how often.

Without a helper at all (one CPU, BLAS limited to one thread, a daemon process such as a
Dask or joblib worker, a thread other than the main one unless the caller says it may fork
from there, a platform other than Linux on x86-64, or when the fork fails), the helper's
share always runs inline.

Changed while training
----------------------
The learning rate goes with every ``UPDATE`` job. Momentum and weight decay, which the
optimizers keep as attributes, may change between two steps too
(:meth:`SplitTrainer.set_optimizer_setting`, for the live lab): both processes' optimizers
read them from a small shared array (:data:`OPTIMIZER_SETTINGS`) at every ``UPDATE``. An
SGD optimizer built without momentum keeps its (unused) velocity in the shared state all
the same, so that momentum can be switched on later in both places alike. A caller that
waits between two steps (the lab, paused) sends the helper to sleep
(:meth:`SplitTrainer.rest`); the next job wakes it.

Protocol
--------
Both processes share the arrays (anonymous shared memory, inherited by ``fork``) and a small
control block ``ctl``. To give the helper a job, this process writes the command and its
arguments, then increments ``ctl[SEQ]``; the helper, spinning on ``ctl[SEQ]``, runs the
job and then sets ``ctl[DONE] = ctl[SEQ]``, on which this process spins. On x86-64 stores
become visible to the other core in program order, so the flag is seen after the data.
The ``SLEEP`` job sends the helper to a blocking read of a pipe; one byte written into it
wakes it. An idle helper spins for :data:`SPIN_SECONDS`, then polls every
:data:`IDLE_POLL_SECONDS`, and exits if this process has gone.

OpenBLAS's idle threads spin for ~0.1 s after a multi-threaded product (unless
``OPENBLAS_THREAD_TIMEOUT`` was set before NumPy loaded, as the ``digitnet`` command does:
:data:`digitnet.cli.OPENBLAS_THREAD_TIMEOUT`). This process's stop when the helper is
forked (OpenBLAS shuts its pool down for a fork), and the helper never starts any: it
inherits its BLAS thread limit through the fork instead of setting it (see :func:`_serve`),
so the engine's first steps are as fast from Python as from the command line. For the same
reason a product under way in another thread of this process would wait forever for the
stopped pool: the fork goes through :data:`digitnet.forking.FORK_GATE` (the live lab's
server threads compute inside it).
"""

from __future__ import annotations

import contextlib
import mmap
import multiprocessing
import os
import platform
import signal
import stat
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
from numpy.typing import NDArray

from digitnet.batches import BatchLoader
from digitnet.config import TrainConfig
from digitnet.data.preprocessing import MinMaxScaler
from digitnet.engine.flat import FlatParameters
from digitnet.engine.optimizers import SGD, Optimizer, make_optimizer, n_state_vectors
from digitnet.engine.prefetch import PrefetchedEpochs
from digitnet.forking import FORK_GATE
from digitnet.inference import evaluate_loss_accuracy
from digitnet.layers import Dense
from digitnet.network import MLP
from digitnet.optimizers import load_state_dict, state_dict
from digitnet.training import EpochImages

Array = NDArray[np.floating]

# Split a layer only when its product has at least this many multiply-adds per batch (784x128
# weights and batch 128 have 12.8 million): below, the hand-offs cost more than they save.
MIN_SPLIT_WORK = 1 << 22

SPIN_SECONDS = 0.05
SPINS_BEFORE_YIELD = 256
IDLE_POLL_SECONDS = 0.0005
STOP_TIMEOUT_SECONDS = 5.0

# Control block: ctl[SEQ] job number, ctl[CMD] what to do, ctl[LAYER] for which split layer
# (for UPDATE: the optimizer's step number), ctl[ROWS] batch rows, ctl[BUFFER] which input
# buffer, ctl[DONE] the last job finished, ctl[FAILED] 1 after an exception.
SEQ, CMD, LAYER, ROWS, BUFFER, DONE, FAILED = range(7)
LOAD, PREPARE, FORWARD, BACKWARD, UPDATE, STOP, SLEEP = range(1, 8)

# Where the helper's share runs (ModeChooser).
PROCESS, INLINE = "process", "inline"

# Optimizer settings that may change between two steps, in this order in the shared array
# both processes' optimizers read at every UPDATE (SplitTrainer.set_optimizer_setting).
OPTIMIZER_SETTINGS = ("momentum", "weight_decay")


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


def _blas_threads() -> int:
    from threadpoolctl import threadpool_info

    threads = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    return min(threads) if threads else 1


def helper_can_run(any_thread: bool = False) -> bool:
    """Whether a helper process may use another core here (see "A machine that is busy").
    Only from the main thread unless ``any_thread``: say so from a thread that is the only
    one training in this process (the live lab's), not from one of several workers."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False
    if len(os.sched_getaffinity(0)) < 2 or multiprocessing.current_process().daemon:
        return False
    if not any_thread and threading.current_thread() is not threading.main_thread():
        return False  # e.g. a threaded Dask worker: fork() copies only this thread
    return _blas_threads() >= 2


def blas_threads_per_process() -> int:
    """BLAS threads for each of the two processes: half of what BLAS may use here (its own
    limit, ``OPENBLAS_NUM_THREADS`` or ``threadpool_limits``, and the usable cores), at least
    one. The same in both places the helper's share can run, so the choice of place never
    changes a product's rounding."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return max(1, min(_blas_threads(), cores) // 2)


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
    optimizer. It runs in the helper process or here (:class:`InlineHelper`), on the same
    shared arrays, so either may do the next job. ``settings``: a shared array of the
    :data:`OPTIMIZER_SETTINGS`, given to the optimizer before each of its steps."""

    def __init__(self, shares: list[RowShare], optimizer: Optimizer,
                 batches: SplitBatchLoader | None = None,
                 settings: NDArray[np.float64] | None = None) -> None:
        self.shares, self.optimizer, self.batches = shares, optimizer, batches
        self.settings = settings
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
        elif command == UPDATE:  # `layer` carries the step number, the same in both places
            self.optimizer.t = layer - 1
            if self.settings is not None:
                for name, value in zip(OPTIMIZER_SETTINGS, self.settings.tolist(), strict=True):
                    if hasattr(self.optimizer, name):
                        setattr(self.optimizer, name, value)
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
    process reads the helper's results through them. The helper starts asleep
    (:meth:`wake` it before posting) and goes back to sleep on :meth:`sleep`. It runs BLAS
    on the thread count in effect here when it starts (see :func:`_serve`).
    """

    def __init__(self, work: HelperWork) -> None:
        self.work = work
        self.ctl = shared_array((7,), np.int64)
        self.lr = shared_array((1,), np.float64)
        self._errors, child_end = multiprocessing.Pipe(duplex=False)
        self._wake_r, self._wake_w = os.pipe()
        context = multiprocessing.get_context("fork")
        self.process = context.Process(
            target=_serve,
            args=(work, self.ctl, self.lr, child_end, os.getpid(), self._wake_r,
                  self._wake_w),
            name="digitnet-helper", daemon=True,
        )
        try:
            with FORK_GATE.forking():  # no other thread in BLAS meanwhile
                self.process.start()
        finally:
            child_end.close()
            os.close(self._wake_r)
        self.asleep = True
        self._closed = False

    def post(self, command: int, layer: int = 0, n: int = 0, lr: float = 0.0,
             buffer: int = 0) -> None:
        """Start a job in the helper (after the previous one has finished; a sleeping helper
        is woken first); :meth:`wait` for it before using its results."""
        self.wait()
        if self.asleep:
            self.wake()
        self._send(command, layer, n, lr, buffer)

    def _send(self, command: int, layer: int = 0, n: int = 0, lr: float = 0.0,
              buffer: int = 0) -> None:
        ctl = self.ctl
        ctl[CMD], ctl[LAYER], ctl[ROWS], ctl[BUFFER], self.lr[0] = command, layer, n, buffer, lr
        ctl[SEQ] += 1

    def wait(self) -> None:
        """Spin until the helper has finished the last job posted, yielding the core to
        other work after :data:`SPINS_BEFORE_YIELD` spins."""
        ctl, seq, spins = self.ctl, self.ctl[SEQ], 0
        while ctl[DONE] != seq:
            spins += 1
            if spins > SPINS_BEFORE_YIELD:
                os.sched_yield()
                if spins & 0x3FF == 0 and not self.process.is_alive():
                    raise RuntimeError(
                        f"the training helper process ended unexpectedly "
                        f"(exit code {self.process.exitcode})"
                    )
        if ctl[FAILED]:
            message = self._errors.recv() if self._errors.poll(1.0) else "no details"
            raise RuntimeError(f"the training helper process failed: {message}")

    def sleep(self) -> None:
        """Send the (idle) helper to a blocking read: it uses no CPU until :meth:`wake`."""
        if not self.asleep:
            self.post(SLEEP)
            self.wait()
            self.asleep = True

    def wake(self) -> None:
        """Wake a sleeping helper; it then spins for jobs again."""
        if self.asleep:
            self.asleep = False
            with contextlib.suppress(OSError):  # a helper that died is reported by wait()
                os.write(self._wake_w, b"w")

    def close(self) -> None:
        """Let a running job finish, stop the helper and reap it."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while (self.ctl[DONE] != self.ctl[SEQ] and self.process.is_alive()
               and time.monotonic() < deadline):
            os.sched_yield()
        if self.process.is_alive():
            # Wake it even if it is not known to sleep (an interrupted sleep()): a byte too
            # many is never read, one too few would leave it blocked.
            self.asleep = True
            self.wake()
            self._send(STOP)
        self.process.join(STOP_TIMEOUT_SECONDS)
        if self.process.is_alive():  # pragma: no cover - only if the helper hangs
            self.process.kill()
            self.process.join()
        self._errors.close()
        os.close(self._wake_w)


def _serve(
    work: HelperWork, ctl: NDArray[np.int64], lr: NDArray[np.float64], errors: Connection,
    parent: int, wake_r: int, wake_w: int,
) -> None:
    """The helper's loop: wait for a job, run it, report it done; until STOP.

    Its BLAS thread count is the one in effect when it was forked (:class:`SplitTrainer`
    sets it first), never set here: after a fork OpenBLAS has no thread pool, and setting
    its thread count would create one, whose fresh worker threads spin for about 0.1 s
    (2^28 cycles, unless ``OPENBLAS_THREAD_TIMEOUT`` was set before NumPy loaded) on the
    cores the training needs; the first steps of every run took 5-8x as long on a
    two-core machine. With one thread, the helper never creates the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    os.close(wake_w)  # so that the read below ends (empty) once the parent has gone
    _close_sockets()
    done = int(ctl[DONE])
    if not os.read(wake_r, 1):  # starts asleep
        return
    while True:
        seq = _next_job(ctl, done, parent)
        if seq is None:
            return
        command = int(ctl[CMD])
        if command in (STOP, SLEEP):
            ctl[DONE] = done = seq
            if command == STOP or not os.read(wake_r, 1):
                return
            continue
        try:
            work.run(command, int(ctl[LAYER]), int(ctl[ROWS]), float(lr[0]),
                     int(ctl[BUFFER]))
        except BaseException as error:  # reported to the parent, which raises
            errors.send(f"{type(error).__name__}: {error}")
            ctl[FAILED] = 1
            ctl[DONE] = seq
            return
        ctl[DONE] = done = seq


def _close_sockets() -> None:
    """Close the sockets the fork copied (a server's, when the live lab forks its helper):
    the helper uses none, and its copy of a connection would keep it open after the server
    has closed it. Only this process's descriptors: the parent's stay as they are."""
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # e.g. the descriptor of the listing itself
            fd = int(name)
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.close(fd)


def _next_job(ctl: NDArray[np.int64], done: int, parent: int) -> int | None:
    """Spin (yielding the core after a few spins) until ``ctl[SEQ]`` moves past ``done``;
    ``None`` once the parent has gone."""
    spins = 0
    spin_until = time.perf_counter() + SPIN_SECONDS
    while ctl[SEQ] == done:
        spins += 1
        if spins > SPINS_BEFORE_YIELD:
            os.sched_yield()
            if spins & 0x3FF == 0 and time.perf_counter() > spin_until:
                if os.getppid() != parent:
                    return None
                time.sleep(IDLE_POLL_SECONDS)
    return int(ctl[SEQ])


def _other(mode: str) -> str:
    return INLINE if mode == PROCESS else PROCESS


class ModeChooser:
    """Picks, step by step, where the helper's share runs: ``PROCESS`` or ``INLINE``.

    :meth:`record` is told how long each step took and answers where the next one runs.
    It measures ``INLINE`` for ``probe_steps`` steps, then ``PROCESS``, and keeps the faster
    (medians; the first step after a move is left out, it pays for the move). Then, every
    ``period`` steps, it measures the other place again; ``period`` doubles (up to
    ``max_period``) each time the choice holds and starts over when it changes. A
    measurement ends after one step slower than ``abort_factor`` times the other place's
    median; and when ``PROCESS`` steps get slower than ``alarm_factor`` times ``INLINE``'s
    last median, ``INLINE`` is measured at once.
    """

    def __init__(self, probe_steps: int = 4, first_period: int = 32, max_period: int = 1024,
                 abort_factor: float = 1.5, alarm_factor: float = 1.25) -> None:
        self.probe_steps, self.first_period = probe_steps, first_period
        self.max_period, self.abort_factor, self.alarm_factor = (max_period, abort_factor,
                                                                 alarm_factor)
        self.recent: dict[str, deque[float]] = {m: deque(maxlen=9) for m in (PROCESS, INLINE)}
        self.chosen: str | None = None  # None until both places were measured once
        self.mode = INLINE  # where the next step runs
        self.period = first_period
        self.switches = 0  # how often the choice changed after the first
        self.steps = {PROCESS: 0, INLINE: 0}  # steps run in each place
        self._probe: list[float] = []
        self._skip = True
        self._until_probe = 0

    def record(self, seconds: float | None) -> str:
        """Note that the step just run (in :attr:`mode`) took ``seconds`` (``None``: not
        comparable, e.g. it included validation) and return where the next one runs."""
        self.steps[self.mode] += 1
        if seconds is None:
            return self.mode
        if self.mode != self.chosen:  # measuring
            if self._skip:
                self._skip = False
                if not self._slower_than_other(seconds, 2 * self.abort_factor):
                    return self.mode
            self._probe.append(seconds)
            if (len(self._probe) >= self.probe_steps - 1
                    or self._slower_than_other(seconds, self.abort_factor)):
                self._end_probe()
            return self.mode
        self.recent[self.mode].append(seconds)
        self._until_probe -= 1
        if self._until_probe <= 0 or self._alarm():
            self._start_probe(_other(self.mode))
        return self.mode

    def _slower_than_other(self, seconds: float, factor: float) -> bool:
        other = self.recent[_other(self.mode)]
        return bool(other) and seconds > factor * statistics.median(other)

    def _alarm(self) -> bool:
        mine, inline = self.recent[PROCESS], self.recent[INLINE]
        if self.mode != PROCESS or not inline or len(mine) < 3:
            return False
        return statistics.median(list(mine)[-3:]) > self.alarm_factor * statistics.median(inline)

    def _start_probe(self, mode: str) -> None:
        self.mode, self._probe, self._skip = mode, [], True

    def _end_probe(self) -> None:
        probed, other = self.mode, _other(self.mode)
        self.recent[probed] = deque(self._probe, maxlen=9)
        if self.chosen is None and probed == INLINE:  # the first measurement: now the other
            self._start_probe(PROCESS)
            return
        if statistics.median(self._probe) < statistics.median(self.recent[other]):
            self.switches += self.chosen is not None
            self.chosen, self.period = probed, self.first_period
        else:
            if self.chosen is not None:
                self.period = min(2 * self.period, self.max_period)
            self.chosen = other
        self.mode, self._until_probe = self.chosen, self.period


class AdaptiveHelper:
    """The helper's share in the place :class:`ModeChooser` picks: the helper process
    (``process``, or ``None`` when there is none) or inline. Between steps only
    (:meth:`step_done`), when no job is pending."""

    def __init__(self, work: HelperWork, process: HelperProcess | None,
                 chooser: ModeChooser | None) -> None:
        self.inline = InlineHelper(work)
        self.process, self.chooser = process, chooser
        self.current: InlineHelper | HelperProcess = self.inline
        if process is not None and chooser is None:
            self._use(PROCESS)
        elif chooser is not None:
            self._use(chooser.mode)

    @property
    def mode(self) -> str:
        return PROCESS if self.current is self.process else INLINE

    def post(self, command: int, layer: int = 0, n: int = 0, lr: float = 0.0,
             buffer: int = 0) -> None:
        self.current.post(command, layer, n, lr, buffer)

    def wait(self) -> None:
        self.current.wait()

    def step_done(self, seconds: float | None) -> None:
        """Tell the chooser how long the step took; move the share if it says so."""
        if self.chooser is not None and self.process is not None:
            self._use(self.chooser.record(seconds))

    def _use(self, mode: str) -> None:
        if self.process is None or mode == self.mode:
            return
        if mode == PROCESS:
            self.process.wake()
            self.current = self.process
        else:
            self.process.sleep()
            self.current = self.inline

    def close(self) -> None:
        if self.process is not None:
            self.process.close()


class SplitDense(Dense):
    """A ``Dense`` layer computed as two row shares, this process's and the helper's.

    Batches in the shared input buffer go through the split; any other input (validation
    data) takes the plain ``Dense.forward``.
    """

    def __init__(self, layer: Dense, index: int, here: RowShare, there: RowShare,
                 helper: AdaptiveHelper) -> None:
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
        self.helper: AdaptiveHelper | None = None  # set by SplitTrainer
        self._upcoming: NDArray[np.intp] | None = None
        self._prepared: NDArray[np.intp] | None = None

    def use(self, buffer: int) -> None:
        """Load into ``buffers[buffer]`` from now on."""
        self.current, self.out = buffer, self.buffers[buffer]

    def serve(self, batches: Sequence[NDArray[np.intp]]
              ) -> Iterator[tuple[Array, NDArray[np.intp]]]:
        """:meth:`BatchLoader.serve`, each next batch prefetched by the helper."""
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

    On entry the network's parameters move into shared flat vectors
    (:class:`~digitnet.engine.flat.FlatParameters`), its leading large layers become
    :class:`SplitDense` and the helper process starts. On exit the helper stops and the
    network gets its own arrays and plain layers back. The optimizer state lives in shared
    memory for the trainer's lifetime (:meth:`state_dict` copies it out).

    ``use_helper``: ``None`` (default) starts a helper where :func:`helper_can_run`;
    ``False`` never does (the helper's share runs inline); ``True`` always tries (read on
    entry: it may be set until then). ``adaptive``: let :class:`ModeChooser` move the
    helper's share between the processes (default); ``False`` keeps it in the helper
    process whenever there is one.
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
        adaptive: bool = True,
        chooser: ModeChooser | None = None,
    ) -> None:
        self.network, self.config = network, config
        self.batch_size = n = min(config.batch_size, len(x))
        self.n_split = max(layers_to_split(network, n), 1)
        self.use_helper = helper_can_run() if use_helper is None else use_helper
        self.threads = blas_threads_per_process()
        self.chooser = (chooser or ModeChooser()) if adaptive else None
        self.flat = FlatParameters(network, shared_array)
        dtype = self.flat.parameters.dtype
        self.state_vectors = [shared_array(self.flat.parameters.shape, dtype)
                              for _ in range(n_state_vectors(config.optimizer))]
        self.cuts = [layer.W.shape[0] // 2 for layer in network.dense[: self.n_split]]
        self.optimizer, self.helper_optimizer = self._optimizers()
        self.optimizer_settings = shared_array((len(OPTIMIZER_SETTINGS),), np.float64)
        self.optimizer_settings[:] = [float(getattr(self.optimizer, name, 0.0))
                                      for name in OPTIMIZER_SETTINGS]  # "sgd": momentum 0
        self.batch_buffers = [shared_array((n, network.n_inputs), dtype) for _ in range(2)]
        augmenting = config.augment != "none"
        if augmenting:  # each epoch's images are written here, where the helper reads them
            x = _shared_copy(x)
        self.batches = SplitBatchLoader(x, y, scaler, self.batch_buffers, rng)
        self.batches.owns_images = augmenting
        self._prefetch: PrefetchedEpochs | None = None
        self._stack = contextlib.ExitStack()
        self._last_step_end: float | None = None
        self._steps = 0

    def __enter__(self) -> SplitTrainer:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def _start(self) -> None:
        from threadpoolctl import threadpool_limits

        net, n, k = self.network, self.batch_size, self.n_split
        dtype = self.flat.parameters.dtype
        self.flat.attach()
        self._stack.callback(self.flat.detach)
        layers, dense = list(net.layers), list(net.dense)

        def restore_layers() -> None:
            net.layers[:], net.dense[:] = layers, dense

        self._stack.callback(restore_layers)

        # Layer i reads layer i-1's output (this process's partial buffer, after the bias and
        # the activation), and its dL/dx is layer i-1's delta.
        widths = [layer.W.shape[1] for layer in net.dense[:k]]
        deltas = [shared_array((n, h), dtype) for h in widths]
        here_partials = [shared_array((n, h), dtype) for h in widths]
        inputs = [self.batch_buffers, *([p] for p in here_partials[:-1])]
        here, there = [], []
        for i, (layer, r) in enumerate(zip(net.dense[:k], self.cuts, strict=True)):
            dx = deltas[i - 1] if i > 0 else None
            args = (inputs[i], deltas[i], dx)
            here.append(RowShare(layer, slice(0, r), *args, here_partials[i]))
            there.append(RowShare(layer, slice(r, None), *args,
                                  shared_array((n, widths[i]), dtype)))
        work = HelperWork(there, self.helper_optimizer, self.batches, self.optimizer_settings)
        process = None
        with FORK_GATE.forking():  # the thread limit changes and the fork: nobody in BLAS
            self._stack.enter_context(threadpool_limits(self.threads))
            if self.use_helper:
                try:
                    process = HelperProcess(work)
                except OSError:  # no fork (memory, process limits): the same work, inline
                    self.use_helper = False
        self.helper = AdaptiveHelper(work, process, self.chooser)
        self._stack.callback(self.helper.close)
        self.batches.helper = self.helper
        splits = [SplitDense(net.dense[i], i, here[i], there[i], self.helper) for i in range(k)]
        for i, split in enumerate(splits):
            net.layers[net.layers.index(net.dense[i])] = net.dense[i] = split
        splits[-1].after_forward = self.batches.prefetch  # the helper is free until backward
        self._last_step_end = None

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        if self._prefetch is not None:
            self._prefetch.close()

    def prefetch_images(self, source: EpochImages) -> PrefetchedEpochs:
        """Augmented epochs computed one ahead in a worker process (:mod:`.prefetch`)."""
        self._prefetch = PrefetchedEpochs(source)
        return self._prefetch

    def step(self, x: Array, y: NDArray[np.integer], lr: float) -> tuple[float, int]:
        """Forward, backward and one optimizer step on the batch ``x`` (from
        :attr:`batches`); returns the loss and the number of correct predictions."""
        loss, n_correct = self.network.loss_and_gradients(x, y)
        self.update(lr)
        return loss, n_correct

    def update(self, lr: float) -> None:
        """The second half of :meth:`step`: the optimizer's step on the gradients of the
        last ``network.loss_and_gradients``, in both processes."""
        t = self.optimizer.t + 1
        self.helper.post(UPDATE, t, lr=lr)
        self.optimizer.step(lr)
        self.helper.wait()
        # Step to step, the batch's loading included; the chooser may move the helper's share.
        now = time.perf_counter()
        last, self._last_step_end = self._last_step_end, now
        self.helper.step_done(None if last is None else now - last)
        self._steps += 1

    def skip_timing(self) -> None:
        """Leave the step that ends next out of the chooser's timing: something other than
        training ran since the last one (the lab's measurements, a pause)."""
        self._last_step_end = None

    def rest(self) -> None:
        """Between two steps, for a while (a paused lab): the helper process sleeps (no CPU)
        until the next job wakes it, and the next step is not timed."""
        if self.helper.process is not None:
            self.helper.process.sleep()
        self.skip_timing()

    def set_optimizer_setting(self, name: str, value: float) -> None:
        """Change one of the :data:`OPTIMIZER_SETTINGS` (momentum, weight decay) from the
        next step on, in both processes' optimizers. Between two steps only."""
        index = OPTIMIZER_SETTINGS.index(name)
        if hasattr(self.optimizer, name):
            setattr(self.optimizer, name, float(value))
        self.optimizer_settings[index] = value  # the helper's optimizer, at its next UPDATE

    def evaluate(self, x: NDArray[np.uint8], y: NDArray[np.integer]) -> tuple[float, float]:
        """Validation loss and accuracy, batch by batch through the split layers."""
        result = evaluate_loss_accuracy(self.network, x, y, self.batches.scaler,
                                        self.batch_size, self.batches.out)
        self._last_step_end = None  # the next step's time would include this
        return result

    def info(self) -> dict[str, Any]:
        """What the engine did: whether a helper process ran, the BLAS threads of each
        process, how many steps ran the helper's share in each place, how often that moved."""
        chooser = self.chooser
        if not self.use_helper:
            steps = {PROCESS: 0, INLINE: self._steps}
        elif chooser is None:
            steps = {PROCESS: self._steps, INLINE: 0}
        else:
            steps = dict(chooser.steps)
        return {
            "trainer": "split", "split_layers": self.n_split, "helper_process": self.use_helper,
            "blas_threads_per_process": self.threads, "steps": steps,
            "switches": 0 if chooser is None else chooser.switches,
        }

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state, to continue in another trainer (:meth:`load_state_dict`)."""
        return state_dict([self.optimizer, self.helper_optimizer], self.state_vectors)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_state_dict([self.optimizer, self.helper_optimizer], self.state_vectors, state)

    def _optimizers(self) -> tuple[Optimizer, Optimizer]:
        """One optimizer for this process's parameters, one for the helper's rows: rows
        ``cuts[i]:`` of each split layer ``i``; each over its slices of the shared state."""
        net, c, flat = self.network, self.config, self.flat
        theirs, here_pairs, there_pairs = [], [], []
        for i, ((w, _), (W, dW)) in enumerate(zip(flat.slices, flat.weight_pairs(),
                                                   strict=True)):
            if i < len(self.cuts):
                r, h = self.cuts[i], net.dense[i].W.shape[1]
                theirs.append(slice(w.start + r * h, w.stop))
                here_pairs.append((W[:r], dW[:r]))
                there_pairs.append((W[r:], dW[r:]))
            else:
                here_pairs.append((W, dW))
        ours = _complement(theirs, flat.parameters.size)

        def build(slices: list[slice], pairs: list[tuple[Array, Array]]) -> Optimizer:
            state = [v[s] for v in self.state_vectors for s in slices]
            optimizer = make_optimizer(c.optimizer, [flat.parameters[s] for s in slices],
                                       [flat.gradients[s] for s in slices], c.lr,
                                       c.weight_decay, c.momentum, decay_pairs=pairs,
                                       state=state)
            if isinstance(optimizer, SGD) and state and not optimizer.velocity:
                optimizer.velocity = state  # momentum 0 for now: unused until raised
            return optimizer

        return build(ours, here_pairs), build(theirs, there_pairs)


def _shared_copy(x: NDArray[Any]) -> NDArray[Any]:
    """``x`` copied into shared memory (writes after the fork are seen by both processes)."""
    copy = shared_array(x.shape, x.dtype)
    np.copyto(copy, x)
    return copy


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
