"""``--dataset``: the bundled digits, Fashion-MNIST beside MNIST, per-data-set recipes."""

from __future__ import annotations

import copy
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from helpers import synthetic_idx, write_idx_folder

from digitnet.cli import main
from digitnet.config import RECIPES, TrainConfig, recipe
from digitnet.data import load_dataset
from digitnet.data.datasets import FASHION_MNIST
from digitnet.network import MLP
from digitnet.training import fit

FASHION_SYSTEM_DIR = Path(FASHION_MNIST.system_dirs[0])


def test_digits_needs_no_network_and_takes_input_size_from_data() -> None:
    ds = load_dataset("digits", download_ok=False)
    assert ds.n_features == 64 and ds.image_shape == (8, 8)
    assert len(ds.x_train) + len(ds.x_test) == 1797
    assert ds.x_train.max() == 16 and ds.x_train.min() == 0
    # Stratified split: every digit on both sides, in about the same share.
    train_share = np.bincount(ds.y_train) / len(ds.y_train)
    test_share = np.bincount(ds.y_test) / len(ds.y_test)
    assert np.abs(train_share - test_share).max() < 0.01


def test_digits_trains_to_95_percent_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert "DIGITNET_DATA_DIR" not in os.environ  # conftest removes it: nothing to fall back on
    out = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--no-plots", "--no-progress",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.95
    assert metrics["layer_sizes"][0] == 64
    assert metrics["config"]["hidden"] == list(RECIPES["digits"]["hidden"])
    assert "test accuracy" in capsys.readouterr().out


def test_recipe_applies_dataset_defaults_then_overrides() -> None:
    assert recipe("mnist") == TrainConfig(**RECIPES["mnist"]) != TrainConfig()
    assert recipe("fashion-mnist") == recipe("mnist", "plain") == TrainConfig()
    digits = recipe("digits")
    assert digits.epochs == RECIPES["digits"]["epochs"] != TrainConfig().epochs
    assert recipe("digits", epochs=3).epochs == 3
    assert recipe("digits", epochs=3).batch_size == RECIPES["digits"]["batch_size"]
    with pytest.raises(ValueError, match="unknown training option"):
        recipe("mnist", epoch=3)


def test_fashion_mnist_from_a_folder_keeps_class_names(tmp_path: Path) -> None:
    folder = write_idx_folder(tmp_path / "fashion", synthetic_idx(60, 20, shape=(28, 28)))
    out = tmp_path / "run"
    code = main(["train", "--dataset", "fashion-mnist", "--data-dir", str(folder),
                 "--epochs", "2", "--no-plots", "--no-progress", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["class_names"] == list(FASHION_MNIST.class_names)
    assert "Sneaker" in metrics["per_class"] and "7" not in metrics["per_class"]
    assert metrics["dataset"]["name"] == "fashion-mnist"
    from digitnet.model_io import load_model

    model = load_model(out / "model.npz")
    assert model.class_names[7] == "Sneaker" and model.dataset == "fashion-mnist"


def test_fashion_mnist_folder_may_hold_a_subfolder_per_dataset(tmp_path: Path) -> None:
    write_idx_folder(tmp_path / "fashion-mnist", synthetic_idx(20, 10, shape=(28, 28)))
    ds = load_dataset("fashion-mnist", tmp_path, download_ok=False)
    assert ds.name == "fashion-mnist" and len(ds.x_train) == 20


def test_evaluate_takes_the_dataset_from_the_model(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "3", "--no-plots",
                 "--no-progress", "--out", str(out)]) == 0
    trained = json.loads((out / "metrics.json").read_text())["test_accuracy"]
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test_accuracy"] == pytest.approx(trained, abs=0)


@pytest.mark.skipif(not FASHION_SYSTEM_DIR.is_dir(),
                    reason=f"real Fashion-MNIST not installed ({FASHION_SYSTEM_DIR}: Debian "
                    "package dataset-fashion-mnist)")
def test_real_fashion_mnist_reaches_85_percent(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["train", "--dataset", "fashion-mnist", "--no-plots", "--no-progress",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"]["source"] == str(FASHION_SYSTEM_DIR)
    assert metrics["test_accuracy"] >= 0.85


@pytest.mark.parametrize("clone", [copy.deepcopy, lambda n: pickle.loads(pickle.dumps(n))])
@pytest.mark.parametrize("engine", ["textbook", "fast"])
def test_a_copied_network_trains_like_the_original(clone, engine: str) -> None:  # type: ignore[no-untyped-def]
    from digitnet.data import MinMaxScaler
    from digitnet.engine import trainer_factory

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(64, 12)).astype(np.uint8)
    y = rng.integers(0, 3, size=64)
    original = MLP(12, (8,), 3, seed=0)
    net = clone(original)
    before = net.get_state()
    config = TrainConfig(hidden=(8,), epochs=2, batch_size=16, validation_fraction=0)
    for n in (net, original):
        fit(n, x, y, MinMaxScaler(0, 255), config, engine=trainer_factory(engine))
    assert not any(np.array_equal(a, b) for a, b in zip(before, net.get_state(), strict=True))
    for a, b in zip(net.get_state(), original.get_state(), strict=True):
        np.testing.assert_array_equal(a, b)
