"""Evaluation metrics in NumPy: confusion matrix, accuracy, precision, recall, F1.

For ``K`` classes the confusion matrix ``C`` is ``K x K`` with ``C[i, j]`` = number of
samples whose true class is ``i`` and predicted class is ``j`` (rows = truth). Then, per
class ``k``::

    TP_k = C[k, k]
    precision_k = TP_k / sum_i C[i, k]        (of those predicted k, how many are k)
    recall_k    = TP_k / sum_j C[k, j]        (of those that are k, how many were found)
    F1_k        = 2 * precision_k * recall_k / (precision_k + recall_k)

A ratio whose denominator is zero (a class never predicted, or never present) is 0, as
scikit-learn's ``zero_division=0``, without warnings. The *macro* average is the plain
mean over classes; the *weighted* average weights each class by its support
``sum_j C[k, j]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.integer]


def confusion_matrix(y_true: IntArray, y_pred: IntArray, n_classes: int) -> NDArray[np.int64]:
    """``C[i, j]`` = count of (true ``i``, predicted ``j``), shape ``(n_classes, n_classes)``."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of equal length, got "
                         f"{y_true.shape} and {y_pred.shape}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"{name} has labels outside 0..{n_classes - 1}")
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def _safe_divide(num: NDArray[Any], den: NDArray[Any]) -> NDArray[np.float64]:
    out = np.zeros(np.shape(num), dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def precision_recall_f1(cm: NDArray[np.integer]) -> dict[str, NDArray[np.float64]]:
    """Per-class ``precision``, ``recall``, ``f1`` and ``support`` from a confusion matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    actual = cm.sum(axis=1)
    precision = _safe_divide(tp, predicted)
    recall = _safe_divide(tp, actual)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": actual}


def accuracy(y_true: IntArray, y_pred: IntArray) -> float:
    """Fraction of samples whose prediction equals the truth."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if y_true.size else 0.0


def classification_metrics(
    y_true: IntArray, y_pred: IntArray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Everything ``metrics.json`` reports about predictions, as plain JSON types."""
    n_classes = len(class_names)
    cm = confusion_matrix(y_true, y_pred, n_classes)
    per = precision_recall_f1(cm)
    support = per["support"]
    total = support.sum()
    weights = support / total if total else np.zeros_like(support)
    result: dict[str, Any] = {
        "accuracy": float(np.trace(cm) / total) if total else 0.0,
        "n_samples": int(total),
    }
    for name in ("precision", "recall", "f1"):
        result[f"{name}_macro"] = float(per[name].mean())
        result[f"{name}_weighted"] = float((per[name] * weights).sum())
    result["per_class"] = {
        class_names[k]: {
            "precision": float(per["precision"][k]),
            "recall": float(per["recall"][k]),
            "f1": float(per["f1"][k]),
            "support": int(support[k]),
        }
        for k in range(n_classes)
    }
    result["confusion_matrix"] = cm.tolist()
    result["class_names"] = list(class_names)
    return result


def classification_report(metrics: dict[str, Any], digits: int = 4) -> str:
    """A text table like scikit-learn's: per-class precision, recall, F1, support, then averages.

    ``metrics`` is the output of :func:`classification_metrics` (its accuracy may be stored
    as ``accuracy`` or, in ``metrics.json``, as ``test_accuracy``).
    """
    names = list(metrics["per_class"])
    width = max(12, *(len(n) for n in names))
    head = f"{'':>{width}} {'precision':>10} {'recall':>10} {'f1-score':>10} {'support':>10}"
    lines = [head, ""]
    for name, row in metrics["per_class"].items():
        lines.append(
            f"{name:>{width}} {row['precision']:>10.{digits}f} {row['recall']:>10.{digits}f} "
            f"{row['f1']:>10.{digits}f} {row['support']:>10d}"
        )
    n = metrics["n_samples"]
    acc = metrics["test_accuracy"] if "test_accuracy" in metrics else metrics["accuracy"]
    lines += [
        "",
        f"{'accuracy':>{width}} {'':>10} {'':>10} {acc:>10.{digits}f} {n:>10d}",
    ]
    for avg in ("macro", "weighted"):
        lines.append(
            f"{avg + ' avg':>{width}} {metrics['precision_' + avg]:>10.{digits}f} "
            f"{metrics['recall_' + avg]:>10.{digits}f} {metrics['f1_' + avg]:>10.{digits}f} "
            f"{n:>10d}"
        )
    return "\n".join(lines)


def format_confusion_matrix(cm: Sequence[Sequence[int]], class_names: Sequence[str]) -> str:
    """The confusion matrix as an aligned text table (rows = true class, columns = predicted)."""
    labels = [n if len(n) <= 6 else n[:6] for n in class_names]
    cell = max(5, *(len(str(v)) for row in cm for v in row), *(len(x) for x in labels)) + 1
    corner = "true \\ pred"
    first = max(len(corner), *(len(x) for x in labels))
    lines = [f"{corner:>{first}}" + "".join(f"{x:>{cell}}" for x in labels)]
    for label, row in zip(labels, cm, strict=True):
        lines.append(f"{label:>{first}}" + "".join(f"{v:>{cell}d}" for v in row))
    return "\n".join(lines)
