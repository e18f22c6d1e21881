"""Damaged images and answers above a confidence threshold (digitnet.robustness)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from digitnet.cli import main
from digitnet.data.datasets import Dataset, load_dataset
from digitnet.experiment import RunOutcome, evaluate_model, train_run
from digitnet.projection import sample_indices
from digitnet.robustness import (
    DAMAGE_KINDS,
    DAMAGE_LEVELS,
    coverage_accuracy,
    coverage_curve,
    damage,
    damage_dataset,
    disc,
    robustness_curves,
    take_test_images,
)
from digitnet.training import TrainConfig


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def digits_outcome(tmp_path_factory: pytest.TempPathFactory, digits: Dataset) -> RunOutcome:
    """A small network trained on the bundled 8x8 digits, saved (for `digitnet evaluate`)."""
    folder = tmp_path_factory.mktemp("digits-run")
    return train_run(digits, TrainConfig(hidden=(32,), epochs=8, batch_size=32, seed=0), folder)


def _stroke() -> np.ndarray:
    image = np.zeros((1, 15, 15))
    image[0, 3:12, 7] = 1.0  # a vertical bar
    return image


def test_no_damage_changes_nothing_and_values_stay_in_range() -> None:
    image = _stroke()
    np.testing.assert_array_equal(damage(image), image)
    noisy = damage(image, noise=0.5, seed=1)
    assert noisy.min() >= 0 and noisy.max() <= 1 and not np.array_equal(noisy, image)
    np.testing.assert_array_equal(noisy, damage(image, noise=0.5, seed=1))  # seeded


def test_rotation_by_90_degrees_turns_the_bar() -> None:
    turned = damage(_stroke(), rotation=90)[0]
    assert turned[7, 3:12].min() > 0.99 and turned[3:12, 7].sum() < 1.5


def test_thickness_grows_and_thins_strokes() -> None:
    image = _stroke()
    thick = damage(image, thickness=1)
    assert thick.sum() > 2.5 * image.sum() and (thick >= image).all()
    thin = damage(thick, thickness=-1)
    np.testing.assert_array_equal(thin, image)  # an opening of a bar gives the bar back
    assert disc(1).sum() == 9 and disc(2).sum() == 21


def test_coverage_and_accuracy_follow_the_threshold() -> None:
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.55, 0.45]])
    y = np.array([0, 1, 1, 0])
    rows = coverage_accuracy(proba, y, [0.0, 0.58, 0.85, 0.95])
    assert [r["coverage"] for r in rows] == [1.0, 0.75, 0.25, 0.0]
    assert [r["accuracy"] for r in rows] == [0.75, 2 / 3, 1.0, None]


def test_evaluate_on_damaged_images_and_with_a_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_path = tmp_path / "digits"  # the bundled data set: no download, whatever CI has
    assert main(["train", "--dataset", "digits", "--epochs", "10", "--no-plots",
                 "--no-progress", "--out", str(model_path)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(model_path), "--json"]) == 0
    clean = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--model", str(model_path), "--json", "--rotation", "45",
                 "--noise", "0.2", "--threshold", "0.9"]) == 0
    hurt: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert hurt["test_accuracy"] < clean["test_accuracy"]
    assert hurt["damage"] == {"noise": 0.2, "rotation": 45.0, "thickness": 0}
    assert 0 <= hurt["abstention"]["coverage"] <= 1 and hurt["abstention"]["threshold"] == 0.9


def test_predict_says_it_does_not_know_below_the_threshold(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image, ImageDraw

    image = Image.new("L", (100, 100), 255)
    ImageDraw.Draw(image).ellipse((20, 20, 80, 80), outline=0, width=8)
    path = tmp_path / "zero.png"
    image.save(path)
    assert main(["predict", "--model", str(model_path), "--threshold", "1.0", str(path)]) == 0
    assert "don't know (best guess" in capsys.readouterr().out
    assert main(["predict", "--model", str(model_path), "--threshold", "0.0", "--json",
                 str(path)]) == 0
    record = json.loads(capsys.readouterr().out)[0]
    assert record["answer"] == record["prediction"]


# ------------------------------------------------------------------ damaged data sets
def test_damage_dataset_damages_the_test_rows_only(digits: Dataset) -> None:
    assert damage_dataset(digits, (0.0, 16.0)) is digits  # no damage: the data set itself
    hurt = damage_dataset(digits, (0.0, 16.0), rotation=30.0, noise=0.1)
    assert hurt.x_test.dtype == digits.x_test.dtype and hurt.x_test.shape == digits.x_test.shape
    assert hurt.x_train is digits.x_train and hurt.y_test is digits.y_test
    images = digits.x_test.reshape(-1, 8, 8) / 16.0
    expected = np.rint(16.0 * damage(images, noise=0.1, rotation=30.0)).reshape(len(images), -1)
    np.testing.assert_array_equal(hurt.x_test, expected)
    with pytest.raises(ValueError, match="value range \\(3, 3\\) is empty"):
        damage_dataset(digits, (3.0, 3.0), noise=0.1)


def test_damage_dataset_takes_the_scaler_or_its_range(
    digits: Dataset, digits_outcome: RunOutcome
) -> None:
    scaler = digits_outcome.model.scaler
    by_scaler = damage_dataset(digits, scaler, thickness=1, noise=0.2, seed=3)
    by_range = damage_dataset(digits, (scaler.lo, scaler.hi), thickness=1, noise=0.2, seed=3)
    np.testing.assert_array_equal(by_scaler.x_test, by_range.x_test)


# ------------------------------------------------------------------ robustness curves
def test_robustness_curves_are_what_evaluate_measures(
    digits: Dataset, digits_outcome: RunOutcome
) -> None:
    """Each value is the accuracy of evaluate_model on the same damaged images."""
    model = digits_outcome.model
    curves = robustness_curves(model, digits)
    assert curves["sample_size"] == curves["n_test"] == len(digits.y_test)  # 360 < the sample
    assert list(curves["curves"]) == list(DAMAGE_KINDS)
    for kind, curve in curves["curves"].items():
        assert curve["levels"] == list(DAMAGE_LEVELS[kind])
        for level, accuracy in zip(curve["levels"], curve["accuracy"], strict=True):
            direct = evaluate_model(model, damage_dataset(digits, model.scaler, **{kind: level}))
            assert accuracy == direct["test_accuracy"], (kind, level)


def test_level_zero_is_the_undamaged_accuracy(
    digits: Dataset, digits_outcome: RunOutcome
) -> None:
    curves = robustness_curves(digits_outcome.model, digits)
    assert curves["undamaged_accuracy"] == digits_outcome.metrics["test_accuracy"]
    for curve in curves["curves"].values():
        assert curve["accuracy"][curve["levels"].index(0)] == curves["undamaged_accuracy"]
    noise = curves["curves"]["noise"]["accuracy"]
    assert noise[-1] < noise[0]  # noise of std 0.5 hurts


def test_robustness_curves_on_a_sample_match_evaluate_on_that_sample(
    digits: Dataset, digits_outcome: RunOutcome
) -> None:
    model = digits_outcome.model
    levels = {"noise": [0.3], "thickness": [2], "rotation": [-45.0]}
    curves = robustness_curves(model, digits, levels, sample_size=100, seed=4)
    assert curves["sample_size"] == 100 and curves["seed"] == 4
    sample = take_test_images(digits, sample_indices(len(digits.y_test), 100, seed=4))
    for kind, (level,) in levels.items():
        hurt = damage_dataset(sample, model.scaler, seed=4, **{kind: level})
        assert curves["curves"][kind]["accuracy"] == [evaluate_model(model, hurt)["test_accuracy"]]
    assert curves["undamaged_accuracy"] == evaluate_model(model, sample)["test_accuracy"]
    with pytest.raises(ValueError, match="unknown kind of damage 'blur'"):
        robustness_curves(model, digits, {"blur": [1.0]})


def test_robustness_curves_match_the_command_line(
    digits: Dataset, digits_outcome: RunOutcome, capsys: pytest.CaptureFixture[str]
) -> None:
    """`digitnet evaluate --noise/--rotation/--thickness` and the curves: one code path."""
    folder = str(digits_outcome.out_dir)
    curves = robustness_curves(digits_outcome.model, digits)["curves"]
    for option, kind, level in (("--noise", "noise", 0.2), ("--rotation", "rotation", 30.0),
                                ("--thickness", "thickness", -1)):
        assert main(["evaluate", "--model", folder, "--json", option, str(level)]) == 0
        reported = json.loads(capsys.readouterr().out)
        index = curves[kind]["levels"].index(level)
        assert reported["test_accuracy"] == curves[kind]["accuracy"][index], option


# ---------------------------------------------------------------------- coverage curve
def test_coverage_curve_falls_with_the_threshold(
    digits: Dataset, digits_outcome: RunOutcome
) -> None:
    curve = coverage_curve(digits_outcome.test_proba, digits.y_test)
    rows = curve["rows"]
    assert curve["n_test"] == len(digits.y_test)
    assert rows[0]["threshold"] == 0.0 and rows[-1]["threshold"] == 0.999
    assert rows[0]["coverage"] == 1.0
    assert rows[0]["accuracy"] == digits_outcome.metrics["test_accuracy"]
    coverage = [r["coverage"] for r in rows]
    assert all(a >= b for a, b in itertools.pairwise(coverage))
    assert coverage[-1] < 1.0
    with pytest.raises(ValueError, match="increasing"):
        coverage_curve(digits_outcome.test_proba, digits.y_test, [0.9, 0.5])
