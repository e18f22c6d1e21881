"""Finite differences: the check that backpropagation computes the gradient it claims.

For a loss ``L`` and one parameter entry ``θ_j``, the central difference
``(L(θ + ε e_j) - L(θ - ε e_j)) / (2 ε)`` approximates ``dL/dθ_j`` to ``O(ε²)``; the
relative error ``||a - n|| / (||a|| + ||n||)`` between the analytic gradient ``a`` and the
numeric one ``n`` is about 1e-10-1e-8 in float64 when backpropagation is right, and of order 1
when it is not. The test suite (``tests/test_gradcheck.py``) and the lab's gradient check
(:func:`digitnet.lab.gradient_check`) both use these two functions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from digitnet.devices import to_host

Array = NDArray[np.floating]


def numerical_gradient(loss: Callable[[], float], param: Array, eps: float = 1e-6,
                       entries: NDArray[np.integer] | None = None) -> Array:
    """Central differences of ``loss()`` for the entries ``entries`` of ``param`` (flat
    indices; default: every entry), shaped like ``param`` when all, else ``(len(entries),)``.

    ``param`` is perturbed in place (and restored), so ``loss`` must read it. The result is
    a NumPy array, also for a ``param`` on a GPU.
    """
    flat = param.reshape(-1)
    picked = np.arange(flat.size) if entries is None else np.asarray(entries)
    numeric = np.empty(len(picked), dtype=np.float64)
    for k, j in enumerate(picked):
        saved = flat[j].copy()  # CuPy's flat[j] is a view, which the next line would change
        flat[j] = saved + eps
        up = loss()
        flat[j] = saved - eps
        down = loss()
        flat[j] = saved
        numeric[k] = (up - down) / (2 * eps)
    return numeric.reshape(param.shape).astype(param.dtype) if entries is None else numeric


def relative_error(analytic: Array, numeric: Array) -> float:
    """``||a - n|| / (||a|| + ||n||)`` (0 when both are 0; either may live on a GPU)."""
    analytic, numeric = to_host(analytic), to_host(numeric)
    denom = float(np.linalg.norm(analytic) + np.linalg.norm(numeric))
    return 0.0 if denom == 0.0 else float(np.linalg.norm(analytic - numeric)) / denom
