"""How robust is the network? Damaged test images, and answers only above a confidence.

:func:`damage` applies, to images with values in [0, 1] (ink 1), the kinds of damage a
hand-written digit meets: Gaussian pixel noise of standard deviation ``noise``, a rotation by
``rotation`` degrees about the centre, and strokes made ``thickness`` pixels thicker (a
grey dilation by a disc; negative values thin them by erosion). :func:`damage_dataset` does
it to a data set's raw test rows (scaled to [0, 1], damaged, scaled back): ``digitnet evaluate
--noise --rotation --thickness`` reports the metrics on that damaged test set, and
:func:`robustness_curves`, for the run report, the accuracy at each level of each kind of
damage (:data:`DAMAGE_LEVELS`) on a seeded sample of the test set, through the same function.

:func:`coverage_accuracy` answers "what if the network may say *I don't know*": with a
threshold ``t``, it answers only when its top probability is at least ``t``; coverage is the
share answered, accuracy is measured on those. :func:`coverage_curve` runs it over
:data:`COVERAGE_THRESHOLDS` for the report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from digitnet.augment import transform
from digitnet.data.datasets import Dataset
from digitnet.data.preprocessing import MinMaxScaler

if TYPE_CHECKING:
    from digitnet.model_io import TrainedModel

Array = NDArray[np.floating]

DAMAGE_KINDS = ("noise", "rotation", "thickness")
DAMAGE_LEVELS: dict[str, tuple[float, ...]] = {
    "noise": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
    "rotation": (-60.0, -45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0, 60.0),
    "thickness": (-1, 0, 1, 2, 3),
}
DAMAGE_TITLES = {"noise": "Gaussian noise", "rotation": "Rotation",
                 "thickness": "Stroke thickness"}
DAMAGE_UNITS = {"noise": "noise standard deviation (pixels in [0, 1])",
                "rotation": "rotation (degrees, counter-clockwise)",
                "thickness": "strokes thicker by (pixels; negative: thinner)"}
CURVE_SAMPLE = 1000  # 2,000 would add ~0.5 s to every MNIST report (2 cores)
COVERAGE_THRESHOLDS: tuple[float, ...] = (
    *(round(0.05 * i, 2) for i in range(20)), 0.96, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999)


def disc(radius: int) -> NDArray[np.bool_]:
    """A disc of ``radius`` pixels as a boolean footprint ``(2r+1, 2r+1)``."""
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius * radius + radius


def damage(images: Array, noise: float = 0.0, rotation: float = 0.0, thickness: int = 0,
           seed: int = 0) -> Array:
    """``images`` ``(n, h, w)`` in [0, 1], damaged (a new array, values clipped to [0, 1])."""
    out = np.asarray(images, dtype=np.float64).copy()
    if thickness:
        footprint = disc(abs(thickness))[None]
        grow = ndimage.grey_dilation if thickness > 0 else ndimage.grey_erosion
        out = grow(out, footprint=footprint)
    if rotation:
        # the warp data augmentation uses (bilinear, zero background), not a copy of it
        out = transform(out, rotation=rotation)
    if noise:
        out = out + np.random.default_rng(seed).normal(0.0, noise, out.shape)
    return np.clip(out, 0.0, 1.0)


def coverage_accuracy(proba: Array, y_true: NDArray[np.integer], thresholds: Sequence[float]
                      ) -> list[dict[str, float | None]]:
    """For each threshold ``t``: the share of samples whose top probability is >= ``t``
    (``coverage``) and the accuracy on them (``None`` when none is answered)."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == np.asarray(y_true)
    rows: list[dict[str, float | None]] = []
    for t in thresholds:
        answered = confidence >= t
        n = int(answered.sum())
        rows.append({"threshold": float(t), "coverage": n / len(confidence),
                     "accuracy": float(correct[answered].mean()) if n else None})
    return rows


def damage_dataset(dataset: Dataset, value_range: MinMaxScaler | tuple[float, float],
                   noise: float = 0.0, rotation: float = 0.0, thickness: int = 0,
                   seed: int = 0) -> Dataset:
    """``dataset`` with its test images damaged by :func:`damage` (the training set untouched).

    The raw rows are mapped onto [0, 1] with ``value_range`` (the model's scaler, or its
    ``(lo, hi)``), damaged, mapped back and rounded to the rows' dtype. Without damage the
    data set itself is returned.
    """
    if not (noise or rotation or thickness):
        return dataset
    lo, hi = ((value_range.lo, value_range.hi) if isinstance(value_range, MinMaxScaler)
              else (float(value_range[0]), float(value_range[1])))
    if not hi > lo:
        raise ValueError(f"value range ({lo:g}, {hi:g}) is empty: expected lo < hi")
    x = dataset.x_test
    images = (x.reshape(len(x), *dataset.image_shape).astype(np.float64) - lo) / (hi - lo)
    hurt = damage(images, noise, rotation, thickness, seed)
    raw = np.rint(lo + hurt * (hi - lo)).astype(x.dtype)
    return dataclasses.replace(dataset, x_test=raw.reshape(len(raw), -1))


def take_test_images(dataset: Dataset, indices: NDArray[np.integer]) -> Dataset:
    """``dataset`` with only the test images ``indices`` (the training set untouched)."""
    return dataclasses.replace(dataset, x_test=dataset.x_test[indices],
                               y_test=dataset.y_test[indices])


def _accuracy(model: TrainedModel, dataset: Dataset) -> float:
    """Test accuracy as ``evaluate_model`` measures it (same predictions, same batches)."""
    from digitnet.inference import predict_with_loss

    predicted, _ = predict_with_loss(model.network, dataset.x_test, dataset.y_test,
                                     model.scaler)
    return float(np.mean(predicted == dataset.y_test)) if len(predicted) else 0.0


def _damaged(dataset: Dataset, scaler: MinMaxScaler, kind: str, level: float,
             seed: int) -> Dataset:
    """:func:`damage_dataset` with one kind of damage at ``level``, the others off."""
    return damage_dataset(dataset, scaler, seed=seed,
                          noise=level if kind == "noise" else 0.0,
                          rotation=level if kind == "rotation" else 0.0,
                          thickness=int(level) if kind == "thickness" else 0)


def robustness_curves(model: TrainedModel, dataset: Dataset,
                      levels: Mapping[str, Sequence[float]] | None = None,
                      sample_size: int = CURVE_SAMPLE, seed: int = 0) -> dict[str, Any]:
    """Accuracy at each level of each kind of damage, on a seeded sample of the test set.

    ``levels`` maps a kind of :data:`DAMAGE_KINDS` to its levels (default
    :data:`DAMAGE_LEVELS`); the sample is ``sample_size`` test images drawn with ``seed``
    (the whole test set when it is smaller), and ``seed`` also seeds the noise. Each value is
    what ``digitnet evaluate`` reports for that damage on the same images: the sample goes
    through :func:`damage_dataset`. Returns a JSON-ready dict: ``sample_size``, ``n_test``,
    ``seed``, ``undamaged_accuracy`` and ``curves``, one entry per kind with ``title``,
    ``unit``, ``levels`` and ``accuracy``.
    """
    from digitnet.projection import sample_indices

    chosen = dict(DAMAGE_LEVELS if levels is None else levels)
    unknown = sorted(set(chosen) - set(DAMAGE_KINDS))
    if unknown:
        raise ValueError(f"unknown kind of damage {unknown[0]!r}: expected one of "
                         f"{', '.join(DAMAGE_KINDS)}")
    n_test = len(dataset.y_test)
    sample = take_test_images(dataset, sample_indices(n_test, sample_size, seed))
    clean = _accuracy(model, sample)
    curves: dict[str, Any] = {}
    for kind, kind_levels in chosen.items():
        values = [int(v) if kind == "thickness" else float(v) for v in kind_levels]
        accuracy = [_accuracy(model, _damaged(sample, model.scaler, kind, v, seed))
                    for v in values]
        curves[kind] = {"title": DAMAGE_TITLES[kind], "unit": DAMAGE_UNITS[kind],
                        "levels": values, "accuracy": accuracy}
    return {"sample_size": len(sample.y_test), "n_test": n_test, "seed": seed,
            "undamaged_accuracy": clean, "curves": curves}


def coverage_curve(proba: Array, y_true: NDArray[np.integer],
                   thresholds: Sequence[float] = COVERAGE_THRESHOLDS) -> dict[str, Any]:
    """:func:`coverage_accuracy` over ``thresholds`` (increasing) as a JSON-ready dict:
    ``n_test`` and ``rows``, each with ``threshold``, ``coverage`` and ``accuracy``."""
    if list(thresholds) != sorted(thresholds):
        raise ValueError("coverage thresholds must be increasing")
    return {"n_test": len(proba), "rows": coverage_accuracy(proba, y_true, thresholds)}
