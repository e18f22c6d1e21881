"""A run folder: what ``digitnet train`` leaves behind, and where.

``runs/<time>-<dataset>/`` (:func:`default_run_dir`) holds:

* :data:`MODEL_FILE` (``model.npz``, :mod:`digitnet.model_io`),
* :data:`METRICS_FILE` (``metrics.json``: test metrics, history, configuration),
* the figures and :data:`REPORT_FILE` (``report.html``, :mod:`digitnet.report`).

Everything is written atomically (:mod:`digitnet.fileio`). This module imports nothing
heavy, so the report and the command line can name the files without the training code.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digitnet.fileio import atomic_write_json

if TYPE_CHECKING:
    from digitnet.model_io import TrainedModel

MODEL_FILE = "model.npz"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
RUNS_FOLDER = "runs"


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
