"""Damaged images and answers above a confidence threshold (digitnet.robustness)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from digitnet.cli import main
from digitnet.robustness import coverage_accuracy, damage, disc


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
