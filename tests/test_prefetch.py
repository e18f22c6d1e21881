"""The augmentation worker (digitnet.engine.prefetch): the same images whoever computed which
chunk, the training process doing what a starved worker did not, and no worker at all."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np
import pytest

from digitnet.augment import AUGMENTERS
from digitnet.engine import prefetch
from digitnet.engine.prefetch import CHUNK, PrefetchedEpochs
from digitnet.training import EpochImages


def _slow_worker(k: int, epoch: int) -> int:  # a worker that gets almost no CPU time
    time.sleep(0.5)
    return REAL_FILL(k, epoch)


def _crashing_worker(k: int, epoch: int) -> int:
    raise RuntimeError("worker lost")


REAL_FILL = prefetch._fill_from_front


def _source(n: int = 5 * CHUNK + 37, epochs: int = 4) -> EpochImages:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 64), dtype=np.uint8)
    augmenter = AUGMENTERS["elastic"]
    assert augmenter is not None
    return EpochImages(augmenter, x, seed=3, epochs=epochs)


def test_a_part_is_those_images_of_the_whole_epoch() -> None:
    source = _source()
    whole = source(2)
    np.testing.assert_array_equal(source.part(2, CHUNK, 3 * CHUNK + 5), whole[CHUNK:3 * CHUNK + 5])


def test_every_epoch_is_the_textbook_epoch_and_the_worker_helps() -> None:
    source = _source()
    epochs = PrefetchedEpochs(source)
    try:
        for epoch in range(1, source.epochs + 1):
            time.sleep(0.3)  # training: the worker gets epoch + 1 done meanwhile
            np.testing.assert_array_equal(epochs(epoch), source(epoch))
    finally:
        epochs.close()
    assert epochs.chunks_worker > 0
    assert epochs.chunks_worker + epochs.chunks_here == source.epochs * epochs.n_chunks


def test_the_workers_help_with_the_first_epoch_too(monkeypatch: pytest.MonkeyPatch) -> None:
    source = _source(n=40 * CHUNK)
    epochs = PrefetchedEpochs(source)
    assert epochs._start() is not None  # the worker, forked with the real compute
    real_compute = prefetch._Shared.compute

    def after_the_worker(shared: Any, k: int, epoch: int, chunk: int) -> None:
        # Here only: wait (at most 10 s) until the worker has taken a chunk from the front,
        # so that a loaded machine cannot let this process finish alone first.
        deadline = time.monotonic() + 10
        while shared.counters[k][0] == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        real_compute(shared, k, epoch, chunk)

    monkeypatch.setattr(prefetch._Shared, "compute", after_the_worker)
    try:
        np.testing.assert_array_equal(epochs(1), source(1))  # nothing was started ahead
    finally:
        epochs.close()
    assert epochs.chunks_worker > 0 and epochs.chunks_here > 0
    assert epochs.chunks_worker + epochs.chunks_here == epochs.n_chunks


def test_a_starved_worker_leaves_the_rest_to_the_training_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    source = _source()
    monkeypatch.setattr(prefetch, "_fill_from_front", _slow_worker)  # pickled by name
    epochs = PrefetchedEpochs(source)
    try:
        for epoch in range(1, source.epochs + 1):
            np.testing.assert_array_equal(epochs(epoch), source(epoch))
    finally:
        epochs.close()
    assert epochs.chunks_here == source.epochs * epochs.n_chunks
    assert epochs.chunks_worker == 0


def test_the_worker_runs_at_a_lower_priority() -> None:
    source = _source(epochs=2)
    epochs = PrefetchedEpochs(source)
    try:
        epochs(1)
        epochs(2)  # the worker has run its start (and epoch 2's job) by now
        pool = epochs._pool
        assert pool is not None
        (worker,) = pool._pool  # type: ignore[attr-defined]
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, worker.pid) == min(mine + prefetch.NICE, 19)
    finally:
        epochs.close()


def test_a_dead_worker_means_the_epoch_is_computed_here(monkeypatch: pytest.MonkeyPatch) -> None:
    source = _source()
    monkeypatch.setattr(prefetch, "_fill_from_front", _crashing_worker)
    epochs = PrefetchedEpochs(source)
    try:
        for epoch in range(1, source.epochs + 1):
            np.testing.assert_array_equal(epochs(epoch), source(epoch))
        assert epochs._failed  # and no worker is asked again
    finally:
        epochs.close()
    assert epochs._pool is None


def test_from_a_thread_other_than_the_main_one_nothing_is_forked() -> None:
    """A threaded Dask worker's fit: other threads may be computing (digitnet.forking)."""
    source = _source()
    epochs = PrefetchedEpochs(source)
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.extend(
        epochs(e).copy() for e in range(1, source.epochs + 1)))
    thread.start()
    thread.join(60)
    try:
        assert len(out) == source.epochs
        for epoch, images in enumerate(out, start=1):
            np.testing.assert_array_equal(images, source(epoch))
        assert epochs._pool is None and epochs.chunks_worker == 0
    finally:
        epochs.close()


def test_several_workers_share_the_chunks_and_give_the_same_bits() -> None:
    source = _source(n=9 * CHUNK + 5)
    epochs = PrefetchedEpochs(source, workers=3)
    try:
        for epoch in range(1, source.epochs + 1):
            time.sleep(0.3)
            np.testing.assert_array_equal(epochs(epoch), source(epoch))
        pool = epochs._pool
        assert pool is not None and len(pool._pool) == 3  # type: ignore[attr-defined]
    finally:
        epochs.close()
    assert epochs.chunks_worker + epochs.chunks_here == source.epochs * epochs.n_chunks
    with pytest.raises(ValueError, match="workers"):
        PrefetchedEpochs(source, workers=0)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc")
def test_several_workers_run_blas_on_one_thread_and_start_no_blas_threads() -> None:
    from threadpoolctl import threadpool_info

    if not any(i["internal_api"] == "openblas" and i["num_threads"] > 1
               for i in threadpool_info()):
        pytest.skip("needs OpenBLAS with a thread pool (2 or more cores)")
    source = _source(n=9 * CHUNK + 5, epochs=2)
    epochs = PrefetchedEpochs(source, workers=2)
    try:
        for epoch in (1, 2):  # elastic: the smoothing's matrix products run in the workers
            np.testing.assert_array_equal(epochs(epoch), source(epoch))
        pool = epochs._pool
        assert pool is not None
        for worker in pool._pool:  # type: ignore[attr-defined]
            assert os.listdir(f"/proc/{worker.pid}/task") == [str(worker.pid)]
    finally:
        epochs.close()


def test_training_on_a_gpu_gives_the_augmentation_the_spare_cores(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from digitnet import devices
    from digitnet.config import TrainConfig
    from digitnet.data.preprocessing import MinMaxScaler
    from digitnet.engine import FusedTrainer
    from digitnet.network import MLP

    monkeypatch.setattr(devices, "ARRAY_MODULES", {"cupy": "fakecupy", "fakecupy": "fakecupy"})
    from digitnet.engine import flat

    monkeypatch.setattr(flat, "spare_cores", lambda: 5)
    source = _source()
    seen = {}
    for device in ("cpu", "gpu"):
        net = MLP(64, (8,), 10, seed=0).to(device)
        config = TrainConfig(hidden=(8,), epochs=2, device=device, augment="affine")
        y = np.zeros(len(source.x), dtype=np.intp)
        trainer = FusedTrainer(net, config, source.x, y, MinMaxScaler(0, 255),
                               np.random.default_rng(0))
        seen[device] = trainer.prefetch_images(source).workers
        trainer.__exit__()
    assert seen == {"cpu": 1, "gpu": 5}
