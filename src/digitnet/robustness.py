"""How robust is the network? Damaged test images, and answers only above a confidence.

:func:`damage` applies, to images with values in [0, 1] (ink 1), the kinds of damage a
hand-written digit meets: Gaussian pixel noise of standard deviation ``noise``, a rotation by
``rotation`` degrees about the centre, and strokes made ``thickness`` pixels thicker (a
grey dilation by a disc; negative values thin them by erosion). ``digitnet evaluate --noise
--rotation --thickness`` reports the metrics on the damaged test set.

:func:`coverage_accuracy` answers "what if the network may say *I don't know*": with a
threshold ``t``, it answers only when its top probability is at least ``t``; coverage is the
share answered, accuracy is measured on those.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

Array = NDArray[np.floating]


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
        out = ndimage.rotate(out, rotation, axes=(2, 1), reshape=False, order=1, mode="constant")
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
