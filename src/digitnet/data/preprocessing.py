"""Preprocessing: min-max scaling to [0, 1], one-hot labels, and the validation split.

All three are fitted on the training set only; the test set is touched only by the final
evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from digitnet.devices import get_array_module


@dataclass(frozen=True)
class MinMaxScaler:
    """``x' = (x - lo) / (hi - lo)``: maps the training range ``[lo, hi]`` onto ``[0, 1]``.

    One ``lo`` and ``hi`` for all pixels (not per pixel): a pixel that is always 0 in
    training (an MNIST corner) must not blow up on a test image.
    For MNIST ``lo = 0`` and ``hi = 255``, so ``x' = x / 255``.
    """

    lo: float
    hi: float

    @classmethod
    def fit(cls, x: NDArray[Any]) -> MinMaxScaler:
        lo, hi = float(x.min()), float(x.max())
        if hi <= lo:
            raise ValueError(f"cannot scale constant data (all values are {lo})")
        return cls(lo, hi)

    def transform(
        self, x: NDArray[Any], dtype: type = np.float32, out: NDArray[Any] | None = None
    ) -> NDArray[np.floating]:
        """Scaled copy of ``x`` as ``dtype`` (into ``out`` when given, to avoid an allocation).

        Computed as ``x * s - lo * s`` with ``s = 1 / (hi - lo)`` in the output's precision:
        a plain conversion, then an in-place multiply (faster than NumPy's buffered
        convert-and-multiply in one ufunc), and a subtraction only when ``lo != 0``.
        """
        xp = get_array_module(x)  # NumPy, or CuPy for images on a GPU
        if out is None:
            out = xp.empty(x.shape, dtype=dtype)
        kind = out.dtype.type
        scale = 1.0 / (self.hi - self.lo)
        xp.copyto(out, x, casting="unsafe")
        xp.multiply(out, kind(scale), out=out)
        if self.lo:
            out -= kind(self.lo * scale)
        return out

    def to_dict(self) -> dict[str, float]:
        return {"lo": self.lo, "hi": self.hi}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MinMaxScaler:
        return cls(float(d["lo"]), float(d["hi"]))


def one_hot(labels: NDArray[np.integer], n_classes: int, dtype: type = np.float32) -> NDArray[Any]:
    """``Y[i, k] = 1`` if ``labels[i] == k`` else 0; shape ``(n, n_classes)``."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    out: NDArray[Any] = np.zeros((labels.shape[0], n_classes), dtype=dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out


def stratified_split(
    labels: NDArray[np.integer], fraction: float, seed: int
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Indices ``(train, validation)``: ``fraction`` of each class goes to validation.

    Seeded, so the same seed always carves out the same validation images. A fraction
    that would leave no training sample is refused (``ValueError``).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    val_parts = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        rng.shuffle(members)
        n_val = max(1, round(fraction * len(members))) if len(members) > 1 else 0
        val_parts.append(members[:n_val])
    val = np.sort(np.concatenate(val_parts))
    mask = np.ones(len(labels), dtype=bool)
    mask[val] = False
    train = np.flatnonzero(mask)
    if len(train) == 0:
        raise ValueError(f"validation fraction {fraction:g} leaves no training samples (of "
                         f"{len(labels)}): hold out less")
    return train, val
