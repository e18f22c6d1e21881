"""A run folder: what ``digitnet train`` leaves behind, and where.

``runs/<time>-<dataset>/`` (:func:`default_run_dir`) holds:

* :data:`MODEL_FILE` (``model.npz``, :mod:`digitnet.model_io`),
* :data:`METRICS_FILE` (``metrics.json``: test metrics, history, configuration),
* the figures, :data:`ROBUSTNESS_FILE` (``robustness.json``: the numbers behind the
  robustness figures) and :data:`REPORT_FILE` (``report.html``, :mod:`digitnet.report`).

Everything is written atomically (:mod:`digitnet.fileio`). This module imports nothing
heavy, so the report and the command line can name the files without the training code.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digitnet.errors import DigitnetError
from digitnet.fileio import atomic_write_json

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: no lock there
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from digitnet.model_io import TrainedModel

MODEL_FILE = "model.npz"
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "checkpoint.npz"  # while training, and after an interrupted run
REPORT_FILE = "report.html"
ROBUSTNESS_FILE = "robustness.json"  # written with the report
RUNS_FOLDER = "runs"
LOCK_FILE = ".digitnet.lock"


class RunDirError(DigitnetError):
    """A run folder cannot be used: not a folder, not writable, in use, or holding a run."""


def default_run_dir(dataset: str, base: str | os.PathLike[str] = RUNS_FOLDER) -> Path:
    """``runs/<YYYYmmdd-HHMMSS>-<dataset>``, with ``-2``, ``-3``... if that exists already."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    first = Path(base) / f"{stamp}-{dataset}"
    candidate, n = first, 1
    while candidate.exists():
        n += 1
        candidate = first.with_name(f"{first.name}-{n}")
    return candidate


def write_run(folder: str | os.PathLike[str], model: TrainedModel,
              metrics: dict[str, Any]) -> Path:
    """Write ``model`` and ``metrics`` into the run folder ``folder`` (created if needed)."""
    from digitnet.model_io import save_model  # model_io imports this module

    folder = Path(folder)
    save_model(model, folder / MODEL_FILE)
    atomic_write_json(folder / METRICS_FILE, metrics)
    return folder


@contextlib.contextmanager
def claim_run_dir(folder: str | os.PathLike[str], force: bool = False) -> Iterator[Path]:
    """Make sure, before any work, that ``folder`` can take a new run, and hold it meanwhile.

    Refused with :class:`RunDirError` (one line naming the folder): a path that is not a
    folder, a folder that cannot be written, one that another digitnet run holds (a lock on
    :data:`LOCK_FILE`), or one that already holds a run (:data:`MODEL_FILE` or
    :data:`METRICS_FILE`) unless ``force``. The folder is created if needed, and removed
    again if the block leaves it empty (a run that failed before writing anything).
    """
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path}: exists and is not a folder (--out expects a run folder)")
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise RunDirError(f"{path}: cannot write a run there ({exc.strerror or exc})") from None
    lock = open(path / LOCK_FILE, "a")  # noqa: SIM115 - held until the block ends
    if fcntl is not None:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()  # the lock file is the other run's: leave it
            raise RunDirError(f"{path}: another digitnet run is writing there") from None
    for stale in path.glob(".*.tmp"):  # left by a run killed while writing a file
        with contextlib.suppress(OSError):
            stale.unlink()
    try:
        held = [name for name in (MODEL_FILE, METRICS_FILE) if (path / name).exists()]
        if held and not force:
            raise RunDirError(f"{path}: already holds a run ({', '.join(held)}); choose "
                              f"another --out or pass --force to replace it")
        yield path
    finally:
        with contextlib.suppress(OSError):
            (path / LOCK_FILE).unlink()
        lock.close()
        if created:
            with contextlib.suppress(OSError):
                path.rmdir()  # only if empty


def save_checkpoint(folder: str | os.PathLike[str], state: dict[str, Any],
                    about: dict[str, Any]) -> Path:
    """Write a training state of :func:`digitnet.training.fit` (its ``checkpoint``) into
    ``folder/checkpoint.npz``, atomically: a run killed at any moment leaves the previous
    checkpoint or this one, whole. ``about``: what the state belongs to (configuration,
    engine, data set), checked on resume."""
    import json

    import numpy as np

    from digitnet.fileio import atomic_path

    arrays: dict[str, Any] = {}
    for key in ("network", "best"):
        for i, a in enumerate(state[key] or []):
            arrays[f"{key}_{i}"] = a
    for i, a in enumerate(state["optimizer"]["state"]):
        arrays[f"optimizer_{i}"] = a
    average = state.get("average")
    for i, a in enumerate(average["average"] if average else []):
        arrays[f"average_{i}"] = a
    best_loss = state["best_loss"]
    meta = {
        "format": "digitnet-checkpoint", "format_version": 1, "about": about,
        "epoch": state["epoch"], "best_epoch": state["best_epoch"],
        "best_loss": best_loss if best_loss != float("inf") else None,
        "has_best": state["best"] is not None, "n_parameters": len(state["network"]),
        "n_optimizer": len(state["optimizer"]["state"]), "t": state["optimizer"]["t"],
        "rng": state["rng"], "history": state["history"],
        "dropout_rng": state.get("dropout_rng"),
        "average_t": None if average is None else average["t"],
        "best_loss_epoch": state.get("best_loss_epoch", state["best_epoch"]),
    }
    arrays["state"] = np.array(json.dumps(meta, allow_nan=False))
    path = Path(folder) / CHECKPOINT_FILE
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def load_checkpoint(folder: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(state, about)`` from ``folder/checkpoint.npz`` (see :func:`save_checkpoint`);
    :class:`RunDirError` naming the file if there is none or it cannot be read."""
    import json
    import zipfile

    import numpy as np

    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        raise RunDirError(f"{path}: no checkpoint to resume from (a run writes one at the end "
                          f"of each epoch, and removes it when it completes)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["state"]))
            if not isinstance(meta, dict) or meta.get("format") != "digitnet-checkpoint":
                raise ValueError("not a digitnet checkpoint")
            network = [archive[f"network_{i}"] for i in range(int(meta["n_parameters"]))]
            best = ([archive[f"best_{i}"] for i in range(len(network))]
                    if meta["has_best"] else None)
            optimizer = [archive[f"optimizer_{i}"] for i in range(int(meta["n_optimizer"]))]
            average = None if meta.get("average_t") is None else {
                "t": int(meta["average_t"]),
                "average": [archive[f"average_{i}"] for i in range(len(network))]}
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError,
            RuntimeError, NotImplementedError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path}: not a readable checkpoint ({exc})") from None
    best_loss = meta["best_loss"]
    state = {
        "epoch": int(meta["epoch"]), "best_epoch": int(meta["best_epoch"]),
        "best_loss": float("inf") if best_loss is None else float(best_loss),
        "network": network, "best": best, "rng": meta["rng"], "history": meta["history"],
        "optimizer": {"t": int(meta["t"]), "state": optimizer},
        "dropout_rng": meta.get("dropout_rng"), "average": average,
        "best_loss_epoch": int(meta.get("best_loss_epoch") or meta["best_epoch"]),
    }
    return state, meta["about"]


def remove_checkpoint(folder: str | os.PathLike[str]) -> None:
    (Path(folder) / CHECKPOINT_FILE).unlink(missing_ok=True)
