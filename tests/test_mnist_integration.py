"""Training on the real MNIST (skipped, with the reason, without DIGITNET_DATA_DIR)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from digitnet.data.datasets import MNIST, Dataset
from digitnet.data.idx import idx_bytes, md5_of
from digitnet.data.preprocessing import stratified_split
from digitnet.experiment import train_run
from digitnet.training import TrainConfig

pytestmark = pytest.mark.mnist


def test_real_mnist_is_the_published_data_set(mnist: Dataset) -> None:
    assert mnist.x_train.shape == (60_000, 784) and mnist.x_test.shape == (10_000, 784)
    assert mnist.x_train.dtype == np.uint8 and int(mnist.x_train.max()) == 255
    assert np.bincount(mnist.y_test, minlength=10).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert md5_of(idx_bytes(mnist.y_test.astype(np.uint8))) == MNIST.md5["test_labels"]
    assert md5_of(idx_bytes(mnist.y_train.astype(np.uint8))) == MNIST.md5["train_labels"]


def test_ten_thousand_training_images_reach_95_percent(mnist: Dataset) -> None:
    _, subset = stratified_split(mnist.y_train, 10_000 / 60_000, seed=0)
    assert len(subset) == pytest.approx(10_000, abs=10)
    small = dataclasses.replace(mnist, x_train=mnist.x_train[subset],
                                y_train=mnist.y_train[subset])
    # No validation split: all 10,000 images train (about 96.5 % for seeds 0-2).
    config = TrainConfig(hidden=(256, 128), epochs=15, batch_size=128, validation_fraction=0.0)
    outcome = train_run(small, config)
    assert outcome.metrics["dataset"]["n_train"] == len(subset)
    assert outcome.metrics["test_accuracy"] >= 0.95, outcome.metrics["test_accuracy"]


@pytest.mark.slow
def test_plain_recipe_reaches_98_percent(mnist: Dataset) -> None:
    """The plain recipe (TrainConfig(), the speed benchmarks' and the old default) on all of
    MNIST (a few seconds on two cores)."""
    outcome = train_run(mnist, TrainConfig())
    accuracy = outcome.metrics["test_accuracy"]
    assert accuracy >= 0.980, f"plain recipe reached only {accuracy:.4f}"
    assert outcome.metrics["n_samples"] == 10_000
    assert not outcome.result.interrupted


@pytest.mark.slow
@pytest.mark.parametrize("preset, bar", [(None, 0.986), ("fast", 0.980)])
def test_the_default_and_the_fast_recipe_reach_their_bar(mnist: Dataset, preset: str | None,
                                                          bar: float) -> None:
    """The README's recipes (seed 0): the default past 98.6 % (issue 14's bar; it measured
    98.9 %), the fast preset past 98.0 %, the same code path as ``digitnet train``."""
    from digitnet.config import recipe

    outcome = train_run(mnist, recipe("mnist", preset))
    accuracy = outcome.metrics["test_accuracy"]
    assert accuracy >= bar, f"{preset or 'default'} recipe reached only {accuracy:.4f}"
