"""Metrics cross-checked against scikit-learn, and their edge cases."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm

from digitnet.metrics import (
    accuracy,
    classification_metrics,
    classification_report,
    confusion_matrix,
    format_confusion_matrix,
    precision_recall_f1,
)

NAMES = tuple(str(k) for k in range(10))
LABELS = list(range(10))


def _ours(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zero denominators must not warn
        with np.errstate(all="raise"):
            return classification_metrics(y_true, y_pred, NAMES)


def _assert_matches_sklearn(y_true: np.ndarray, y_pred: np.ndarray) -> None:
    ours = _ours(y_true, y_pred)
    np.testing.assert_array_equal(
        ours["confusion_matrix"], skm.confusion_matrix(y_true, y_pred, labels=LABELS)
    )
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)
    assert accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    p, r, f, s = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=LABELS, average=None, zero_division=0
    )
    for k, name in enumerate(NAMES):
        row = ours["per_class"][name]
        assert row["precision"] == pytest.approx(p[k], abs=1e-12)
        assert row["recall"] == pytest.approx(r[k], abs=1e-12)
        assert row["f1"] == pytest.approx(f[k], abs=1e-12)
        assert row["support"] == s[k]
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=LABELS, average=average, zero_division=0
        )
        assert ours[f"precision_{average}"] == pytest.approx(p, abs=1e-12)
        assert ours[f"recall_{average}"] == pytest.approx(r, abs=1e-12)
        assert ours[f"f1_{average}"] == pytest.approx(f, abs=1e-12)
    assert ours["n_samples"] == len(y_true)


@pytest.mark.parametrize("seed", range(6))
def test_random_predictions_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 500))
    y_true = rng.integers(0, 10, size=n)
    # Mostly right, sometimes wrong, with a skew so that classes differ.
    noise = rng.integers(0, 10, size=n)
    y_pred = np.where(rng.random(n) < 0.7, y_true, noise)
    _assert_matches_sklearn(y_true, y_pred)


def test_a_class_never_predicted() -> None:
    rng = np.random.default_rng(10)
    y_true = rng.integers(0, 10, size=200)
    y_pred = np.where(y_true == 3, 5, y_true)  # class 3 is never predicted
    ours = _ours(y_true, y_pred)
    assert ours["per_class"]["3"]["precision"] == 0.0
    assert ours["per_class"]["3"]["recall"] == 0.0
    assert ours["per_class"]["3"]["f1"] == 0.0
    _assert_matches_sklearn(y_true, y_pred)


def test_a_class_absent_from_the_truth() -> None:
    rng = np.random.default_rng(11)
    y_true = rng.integers(0, 9, size=150)  # class 9 never occurs
    y_pred = y_true.copy()
    y_pred[:10] = 9
    ours = _ours(y_true, y_pred)
    assert ours["per_class"]["9"]["support"] == 0
    assert ours["per_class"]["9"]["recall"] == 0.0
    assert ours["per_class"]["9"]["precision"] == 0.0
    _assert_matches_sklearn(y_true, y_pred)


def test_all_correct() -> None:
    y = np.arange(100) % 10
    ours = _ours(y, y)
    assert ours["accuracy"] == 1.0
    for key in ("precision", "recall", "f1"):
        assert ours[f"{key}_macro"] == 1.0 and ours[f"{key}_weighted"] == 1.0
    np.testing.assert_array_equal(ours["confusion_matrix"], np.diag(np.full(10, 10)))
    _assert_matches_sklearn(y, y)


def test_single_class() -> None:
    y_true = np.full(20, 4)
    y_pred = y_true.copy()
    y_pred[:5] = 7
    ours = _ours(y_true, y_pred)
    assert ours["accuracy"] == 0.75
    assert ours["per_class"]["4"] == {"precision": 1.0, "recall": 0.75,
                                      "f1": pytest.approx(6 / 7), "support": 20}
    assert ours["precision_weighted"] == 1.0  # all weight on class 4
    _assert_matches_sklearn(y_true, y_pred)


def test_all_wrong() -> None:
    y_true = np.arange(50) % 10
    y_pred = (y_true + 1) % 10
    ours = _ours(y_true, y_pred)
    assert ours["accuracy"] == 0.0 and ours["f1_macro"] == 0.0
    _assert_matches_sklearn(y_true, y_pred)


def test_empty_input_does_not_divide_by_zero() -> None:
    empty = np.array([], dtype=np.int64)
    ours = _ours(empty, empty)
    assert ours["accuracy"] == 0.0 and ours["n_samples"] == 0
    assert accuracy(empty, empty) == 0.0


def test_confusion_matrix_orientation_and_validation() -> None:
    cm = confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 0]), 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 0]])  # rows = truth
    with pytest.raises(ValueError, match=r"y_pred has labels outside 0\.\.2"):
        confusion_matrix(np.array([0]), np.array([3]), 3)
    with pytest.raises(ValueError, match="y_true has labels outside"):
        confusion_matrix(np.array([-1]), np.array([0]), 3)
    with pytest.raises(ValueError, match="equal length"):
        confusion_matrix(np.array([0, 1]), np.array([0]), 3)


def test_precision_recall_f1_from_a_matrix() -> None:
    per = precision_recall_f1(np.array([[3, 1], [2, 4]]))
    np.testing.assert_allclose(per["precision"], [3 / 5, 4 / 5])
    np.testing.assert_allclose(per["recall"], [3 / 4, 4 / 6])
    np.testing.assert_allclose(per["support"], [4, 6])


def test_metrics_are_plain_json_types() -> None:
    import json

    rng = np.random.default_rng(0)
    ours = _ours(rng.integers(0, 10, 30), rng.integers(0, 10, 30))
    assert json.loads(json.dumps(ours)) == ours
    assert ours["class_names"] == list(NAMES)


def test_classification_report_text() -> None:
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 10, size=300)
    y_pred = np.where(rng.random(300) < 0.8, y_true, rng.integers(0, 10, size=300))
    ours = _ours(y_true, y_pred)
    text = classification_report(ours)
    lines = text.splitlines()
    assert lines[0].split() == ["precision", "recall", "f1-score", "support"]
    for name in NAMES:
        row = next(line for line in lines if line.split()[:1] == [name])
        values = row.split()[1:]
        assert values == [f"{ours['per_class'][name][k]:.4f}" for k in ("precision", "recall",
                                                                          "f1")] + [
            str(ours["per_class"][name]["support"])]
    acc_line = next(line for line in lines if line.strip().startswith("accuracy"))
    assert acc_line.split() == ["accuracy", f"{ours['accuracy']:.4f}", "300"]
    for avg in ("macro", "weighted"):
        line = next(line for line in lines if line.strip().startswith(f"{avg} avg"))
        assert line.split()[2:] == [f"{ours[f'precision_{avg}']:.4f}",
                                    f"{ours[f'recall_{avg}']:.4f}",
                                    f"{ours[f'f1_{avg}']:.4f}", "300"]
    # metrics.json stores the accuracy as test_accuracy: the report reads either.
    renamed = {("test_accuracy" if k == "accuracy" else k): v for k, v in ours.items()}
    assert classification_report(renamed) == text


def test_format_confusion_matrix() -> None:
    cm = [[5, 0], [12345, 3]]
    text = format_confusion_matrix(cm, ["T-shirt/top", "Trouser"])
    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[0].split()[-2:] == ["T-shir", "Trouse"]  # long names are shortened
    assert lines[2].split() == ["Trouse", "12345", "3"]
    assert len({len(line) for line in lines}) == 1  # aligned
