"""A run folder: what ``digitnet train`` leaves behind, and where.

``runs/<time>-<dataset>/`` (:func:`default_run_dir`) holds:

* :data:`MODEL_FILE` (``model.npz``, :mod:`digitnet.model_io`),
* :data:`METRICS_FILE` (``metrics.json``: test metrics, history, configuration),
* the figures and :data:`REPORT_FILE` (``report.html``, :mod:`digitnet.report`).

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
REPORT_FILE = "report.html"
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
