"""digitnet: handwritten-digit classification with a neural network written from scratch in NumPy.

Data flows one way: :mod:`digitnet.data` -> :mod:`digitnet.network` (built from
:mod:`digitnet.layers` and :mod:`digitnet.activations`) -> :mod:`digitnet.training`
(with :mod:`digitnet.optimizers`) -> :mod:`digitnet.metrics` -> the command line.

Importing the package is cheap; the names below load their modules on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "MLP": "digitnet.network",
    "TrainConfig": "digitnet.training",
    "fit": "digitnet.training",
    "TrainedModel": "digitnet.model_io",
    "load_model": "digitnet.model_io",
    "save_model": "digitnet.model_io",
    "load_dataset": "digitnet.data",
    "train_run": "digitnet.experiment",
    "evaluate_model": "digitnet.experiment",
    "DigitNetClassifier": "digitnet.estimator",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'digitnet' has no attribute {name!r}")
