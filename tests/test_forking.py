"""The fork gate (:mod:`digitnet.forking`): a fork waits for the threads that compute, and
threads wait for a fork that is due; with real BLAS products beside many forks nothing
hangs (without the gate OpenBLAS leaves the computing thread waiting forever)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

import numpy as np
import pytest
from helpers import blobs, finishes, held

from digitnet import plots
from digitnet.augment import AUGMENTERS
from digitnet.config import TrainConfig
from digitnet.data.preprocessing import MinMaxScaler
from digitnet.engine import split
from digitnet.engine.prefetch import PrefetchedEpochs
from digitnet.forking import FORK_GATE, ForkGate
from digitnet.network import MLP
from digitnet.training import EpochImages

WAIT = 30.0  # seconds: a busy machine
NOT_YET = 0.2  # seconds in which something that must wait does not happen


def passes(section: Callable[[], AbstractContextManager[None]]) -> threading.Event:
    """A thread that enters ``section()`` and leaves it at once; the event is set when done."""
    def work() -> None:
        with section():
            pass
    return finishes(work)


def test_a_fork_waits_for_the_computing_threads_and_goes_before_new_ones() -> None:
    gate = ForkGate()
    release = held(gate.computing())
    forked = passes(gate.forking)
    assert not forked.wait(NOT_YET)  # the other thread is computing
    computed = passes(gate.computing)
    assert not computed.wait(NOT_YET)  # a fork is due: it goes first
    release.set()
    assert forked.wait(WAIT) and computed.wait(WAIT)


def test_many_threads_compute_at_once() -> None:
    gate = ForkGate()
    barrier = threading.Barrier(3, timeout=WAIT)

    def compute() -> None:
        with gate.computing():
            barrier.wait()  # all three inside together

    assert all(done.wait(WAIT) for done in [finishes(compute) for _ in range(3)])


def test_computing_waits_while_a_fork_is_under_way() -> None:
    gate = ForkGate()
    release = held(gate.forking())
    computed = passes(gate.computing)
    assert not computed.wait(NOT_YET)
    release.set()
    assert computed.wait(WAIT)


def test_the_sections_nest_in_a_thread_without_waiting_for_itself() -> None:
    """A computing thread may fork (its own section does not hold it up), a forking thread
    may compute, and a thread already computing goes on into a nested section while
    another thread's fork is due (waiting there would wait for itself)."""
    gate = ForkGate()

    def nested() -> None:
        with gate.computing(), gate.forking(), gate.forking(), gate.computing():
            pass

    assert finishes(nested).wait(WAIT)

    inside, go_on = threading.Event(), threading.Event()

    def outer() -> None:
        with gate.computing():
            inside.set()
            go_on.wait(WAIT)
            with gate.computing():  # a fork is due meanwhile
                pass

    outer_done = finishes(outer)
    assert inside.wait(WAIT)
    forked = passes(gate.forking)
    assert not forked.wait(NOT_YET)
    go_on.set()
    assert outer_done.wait(WAIT) and forked.wait(WAIT)


GATED_FORKS = textwrap.dedent("""
    import os, threading
    import numpy as np
    from threadpoolctl import threadpool_info
    from digitnet.forking import FORK_GATE

    assert min(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas") >= 2
    a = np.ones((300, 300), np.float32)
    stop, products = threading.Event(), [0]

    def compute():  # products large enough for OpenBLAS to use its threads
        while not stop.is_set():
            with FORK_GATE.computing():
                a @ a
            products[0] += 1

    threads = [threading.Thread(target=compute) for _ in range(2)]
    for t in threads:
        t.start()
    for _ in range(100):
        with FORK_GATE.forking():
            pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    stop.set()
    for t in threads:
        t.join()
    print("products", products[0])
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is Linux's here")
def test_forks_beside_threads_running_blas_products_hang_nothing() -> None:
    """Two threads multiply with OpenBLAS's threads while the main one forks 100 times (as
    the live lab forks the split engine's helper while its server computes). Without the
    gate this script hangs within a few forks: OpenBLAS stops its threads for the fork,
    and the product under way waits for them forever."""
    try:
        out = subprocess.run([sys.executable, "-c", GATED_FORKS], capture_output=True,
                             text=True, timeout=120,
                             env={**os.environ, "OPENBLAS_NUM_THREADS": "2"})
    except subprocess.TimeoutExpired:
        pytest.fail("the forks beside BLAS products hung")
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) > 0



@pytest.mark.skipif(not split.helper_can_run(), reason="no helper process here (one core, "
                    "not Linux)")
def test_every_fork_digitnet_makes_goes_through_the_gate(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """The split engine's helper, the augmentation workers and the report's renderers are
    all forked inside ``FORK_GATE.forking()``, by the thread that holds it."""
    real_fork, forks = os.fork, []

    def fork() -> int:
        forks.append(FORK_GATE._forker == threading.get_ident())
        return real_fork()

    monkeypatch.setattr(os, "fork", fork)
    monkeypatch.setattr(split, "MIN_SPLIT_WORK", 0)
    x, y = blobs(40, n_classes=4, n_features=64, seed=3)
    config = TrainConfig(hidden=(12,), epochs=1, batch_size=16, validation_fraction=0.0)
    trainer = split.SplitTrainer(MLP(64, (12,), 4, seed=0), config, x, y, MinMaxScaler.fit(x),
                                 np.random.default_rng(0), use_helper=True)
    with trainer:
        assert trainer.helper.process is not None
    augmenter = AUGMENTERS["elastic"]
    assert augmenter is not None
    images = x.astype(np.uint8)
    epochs = PrefetchedEpochs(EpochImages(augmenter, images, seed=0, epochs=2), workers=2)
    try:
        epochs(1)
    finally:
        epochs.close()
    figures = {f"{i}.png": plots.confusion_matrix(np.eye(3, dtype=int), list("abc"))
               for i in range(2)}
    plots.save_pngs(figures, workers=2)
    assert len(forks) >= 1 + 2 + 2 and all(forks)
