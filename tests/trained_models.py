"""Small trained models for the prediction, server and browser tests (trained once per session).

:func:`small_model` trains on real MNIST when the ``mnist`` fixture has it (a 784-64-10
network on 20,000 images, about 90 % test accuracy: enough to read clear drawings), and on
scikit-learn's bundled 8x8 ``digits`` otherwise, so the tests run offline too.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from digitnet.data.datasets import Dataset
from digitnet.experiment import MODEL_FILE, train_run
from digitnet.training import TrainConfig

_CACHE: dict[str, Path] = {}


def mnist_or_none(request: pytest.FixtureRequest) -> Dataset | None:
    """The session's real MNIST, or None where the ``mnist`` fixture skips."""
    try:
        return request.getfixturevalue("mnist")  # type: ignore[no-any-return]
    except pytest.skip.Exception:
        return None


def train_small(dataset: Dataset, folder: Path) -> Path:
    """Train a one-hidden-layer network on (a subset of) ``dataset``; return its run folder."""
    if dataset.name == "mnist":
        dataset = dataclasses.replace(
            dataset, x_train=dataset.x_train[:20_000], y_train=dataset.y_train[:20_000]
        )
        config = TrainConfig(hidden=(64,), epochs=3, validation_fraction=0.0, seed=0)
    else:
        config = TrainConfig(hidden=(32,), epochs=30, batch_size=32, validation_fraction=0.0,
                             seed=0)
    train_run(dataset, config, folder)
    return folder


def small_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                dataset_name: str | None = None) -> Path:
    """Path of a trained ``model.npz``: MNIST if available (or ``dataset_name``), else digits."""
    if dataset_name is None:
        dataset_name = "mnist" if mnist_or_none(request) is not None else "digits"
    if dataset_name not in _CACHE:
        from digitnet.data import load_dataset

        dataset = (request.getfixturevalue("mnist") if dataset_name == "mnist"
                   else load_dataset(dataset_name))
        folder = tmp_path_factory.mktemp(f"model-{dataset_name}")
        _CACHE[dataset_name] = train_small(dataset, folder) / MODEL_FILE
    return _CACHE[dataset_name]
