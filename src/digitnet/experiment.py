"""The whole job as a library call: data -> preprocessing -> network -> training -> metrics.

:func:`train_run` is what ``digitnet train`` does; :func:`evaluate_model` is what
``digitnet evaluate`` does. Both return plain dictionaries that are also written as
``metrics.json``.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from digitnet import engine as engines
from digitnet.data.datasets import Dataset
from digitnet.data.preprocessing import MinMaxScaler, stratified_split
from digitnet.errors import TrainingDivergedError
from digitnet.inference import predict_with_loss
from digitnet.metrics import classification_metrics
from digitnet.model_io import TrainedModel
from digitnet.network import DTYPES, MLP
from digitnet.runs import (
    METRICS_FILE,
    MODEL_FILE,
    RunDirError,
    load_checkpoint,
    remove_checkpoint,
    save_checkpoint,
    write_run,
)
from digitnet.training import TrainConfig, TrainResult, fit

__all__ = ["METRICS_FILE", "MODEL_FILE", "RunOutcome", "evaluate_model", "train_run"]


@dataclass
class RunOutcome:
    """What :func:`train_run` produced."""

    model: TrainedModel
    result: TrainResult
    metrics: dict[str, Any]
    out_dir: Path | None
    test_proba: NDArray[np.floating]  # the test set's class probabilities (n_test, K)


def evaluate_model(model: TrainedModel, dataset: Dataset,
                   proba: NDArray[np.floating] | None = None) -> dict[str, Any]:
    """Test-set metrics of ``model``: accuracy, precision/recall/F1 (macro, weighted, per class),
    confusion matrix and mean test loss. With ``proba`` ``(n_test, K)``, the class
    probabilities are left there too (so the report need not predict the test set again)."""
    if dataset.n_features != model.network.n_inputs:
        raise ValueError(
            f"the model expects {model.network.n_inputs} features but data set "
            f"{dataset.name!r} has {dataset.n_features}"
        )
    if len(dataset.class_names) != model.network.n_classes:
        raise ValueError(
            f"the model has {model.network.n_classes} classes but data set "
            f"{dataset.name!r} has {len(dataset.class_names)}"
        )
    started = time.perf_counter()
    y_pred, test_loss = predict_with_loss(model.network, dataset.x_test, dataset.y_test,
                                          model.scaler, proba=proba)
    metrics = classification_metrics(dataset.y_test, y_pred, dataset.class_names)
    out = {"test_accuracy": metrics.pop("accuracy"), "test_loss": test_loss, **metrics}
    out["eval_seconds"] = time.perf_counter() - started
    return out


def environment() -> dict[str, Any]:
    """Where a run happened: versions and thread settings that affect speed and bits."""
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }


def split_for_training(dataset: Dataset, config: TrainConfig) -> tuple[
    NDArray[np.uint8], NDArray[np.integer], NDArray[np.uint8] | None, NDArray[np.integer] | None
]:
    """``(x_train, y_train, x_val, y_val)``: ``dataset``'s training set with the fraction
    ``config.validation_fraction`` held out for validation (stratified, seeded with
    ``config.seed``); ``x_val`` and ``y_val`` are ``None`` when that fraction is 0."""
    if config.validation_fraction == 0:
        return dataset.x_train, dataset.y_train, None, None
    train_idx, val_idx = stratified_split(dataset.y_train, config.validation_fraction,
                                          config.seed)
    return (dataset.x_train[train_idx], dataset.y_train[train_idx],
            dataset.x_train[val_idx], dataset.y_train[val_idx])


def train_run(
    dataset: Dataset,
    config: TrainConfig,
    out_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    engine: str = "fast",
    resume: bool = False,
) -> RunOutcome:
    """Train a network on ``dataset`` with ``config``, evaluate it on the test set, and
    (with ``out_dir``) write ``model.npz`` and ``metrics.json`` there.

    The validation split is carved out of the training set (stratified, seeded with
    ``config.seed``); the test set is used only for the final evaluation. When training
    diverges (see :func:`~digitnet.training.fit`), the best epoch before it is evaluated and
    saved, ``metrics["diverged"]`` says what happened, and without any good epoch
    :class:`~digitnet.errors.TrainingDivergedError` is raised and nothing is written.
    ``engine``:
    ``"fast"`` (:mod:`digitnet.engine`, the default, as ``digitnet train``) or
    ``"textbook"`` (:class:`digitnet.training.TextbookTrainer`).

    With ``out_dir``, a checkpoint is written there at the end of every epoch
    (:func:`digitnet.runs.save_checkpoint`) and removed once training has completed;
    ``resume=True`` continues from it (same data set, configuration and engine, checked)
    and ends with the weights an uninterrupted run would have, bit for bit.
    """
    factory = engines.trainer_factory(engine)
    about = {"dataset": dataset.name, "config": config.to_dict(), "engine": engine,
             "n_train": len(dataset.x_train), "n_test": len(dataset.x_test)}
    resume_from = None
    if resume:
        if out_dir is None:
            raise ValueError("resume needs the run folder (out_dir) holding the checkpoint")
        resume_from, saved = load_checkpoint(out_dir)
        if saved != about:
            raise RunDirError(f"{Path(out_dir)}: its checkpoint belongs to another run "
                              f"(data set, configuration or engine differ)")

    def checkpoint(state: dict[str, Any]) -> None:
        assert out_dir is not None
        save_checkpoint(out_dir, state, about)

    scaler = MinMaxScaler.fit(dataset.x_train)
    x_tr, y_tr, x_val, y_val = split_for_training(dataset, config)
    network = MLP(dataset.n_features, config.hidden, dataset.n_classes, config.activation,
                  config.dtype, config.seed, config.dropout, config.input_dropout,
                  config.init_scale)
    if log is not None:
        log(f"{dataset.name}: {len(x_tr)} training, {0 if x_val is None else len(x_val)} "
            f"validation, {len(dataset.x_test)} test samples; network {network.describe()} "
            f"({network.n_parameters:,} parameters)")
    result = fit(network, x_tr, y_tr, scaler, config, x_val, y_val, progress=progress, log=log,
                 engine=factory, checkpoint=None if out_dir is None else checkpoint,
                 resume_from=resume_from)
    if result.diverged is not None and result.best_epoch == 0:
        raise TrainingDivergedError(result.diverged)
    model = TrainedModel(network, scaler, dataset.class_names, dataset.image_shape,
                         dataset.name)
    proba = np.empty((len(dataset.x_test), dataset.n_classes), DTYPES[network.dtype])
    test = evaluate_model(model, dataset, proba)
    model.info = {
        "test_accuracy": test["test_accuracy"],
        "f1_macro": test["f1_macro"],
        "config": config.to_dict(),
        "epochs_run": result.epochs_run,
    }
    metrics: dict[str, Any] = {
        **test,
        "train_seconds": result.train_seconds,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "interrupted": result.interrupted,
        "diverged": result.diverged,
        "history": result.history_dicts(),
        "config": config.to_dict(),
        "engine": engine,
        "engine_info": result.trainer_info,
        "seed": config.seed,
        "dataset": {"name": dataset.name, "source": dataset.source,
                    "n_train": len(x_tr), "n_validation": 0 if x_val is None else len(x_val),
                    "n_test": len(dataset.x_test)},
        "architecture": network.describe(),
        "layer_sizes": network.layer_sizes,
        "n_parameters": network.n_parameters,
        "environment": environment(),
    }
    out_path = None if out_dir is None else write_run(out_dir, model, metrics)
    if out_path is not None and not result.interrupted and result.diverged is None:
        remove_checkpoint(out_path)  # done: model.npz is the result; nothing to resume
    return RunOutcome(model, result, metrics, out_path, proba)
