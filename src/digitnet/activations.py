"""Hidden-layer activation functions and their derivatives.

Every activation ``a = f(z)`` is applied element-wise to the pre-activations
``z`` of shape ``(n_samples, n_units)``. Backpropagation needs ``f'(z)``; for
each function here that derivative can be written in terms of the *output*
``a`` alone, so the network only keeps ``a`` from the forward pass:

==========  ===========================  =====================================
name        f(z)                         f'(z) written with a = f(z)
==========  ===========================  =====================================
relu        max(z, 0)                    1 if a > 0 else 0
leaky_relu  z if z > 0 else alpha * z    1 if a > 0 else alpha
sigmoid     1 / (1 + exp(-z))            a * (1 - a)
tanh        tanh(z)                      1 - a**2
==========  ===========================  =====================================

``backward(a, delta)`` turns ``delta = dL/da`` into ``dL/dz = delta * f'(z)``
*in place* (like scikit-learn's ``inplace_*_derivative``), which saves one
allocation per layer and batch. ``xp`` is the arrays' module (NumPy, or CuPy on a GPU:
:mod:`digitnet.devices`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from digitnet.devices import get_array_module

Array = NDArray[np.floating]

LEAKY_RELU_SLOPE = 0.01


def relu(z: Array) -> Array:
    """``a = max(z, 0)``, computed in place on ``z``."""
    return get_array_module(z).maximum(z, 0, out=z)


def relu_backward(a: Array, delta: Array) -> None:
    """``delta *= [a > 0]`` in place: the gradient flows only through active units."""
    get_array_module(delta).multiply(delta, a > 0, out=delta)


def leaky_relu(z: Array) -> Array:
    """``a = z if z > 0 else alpha * z`` with ``alpha = 0.01``, in place on ``z``."""
    return get_array_module(z).maximum(z, LEAKY_RELU_SLOPE * z, out=z)


def leaky_relu_backward(a: Array, delta: Array) -> None:
    """``delta *= 1 if a > 0 else alpha`` in place."""
    xp = get_array_module(delta)
    slopes = xp.where(a > 0, 1.0, LEAKY_RELU_SLOPE).astype(delta.dtype, copy=False)
    xp.multiply(delta, slopes, out=delta)


def sigmoid(z: Array) -> Array:
    """``a = 1 / (1 + exp(-z))``, numerically stable for large ``|z|``, in place on ``z``.

    Uses ``sigmoid(z) = (1 + tanh(z / 2)) / 2``, which never overflows.
    """
    z *= 0.5
    get_array_module(z).tanh(z, out=z)
    z += 1.0
    z *= 0.5
    return z


def sigmoid_backward(a: Array, delta: Array) -> None:
    """``delta *= a * (1 - a)`` in place."""
    delta *= a
    delta *= 1.0 - a


def tanh(z: Array) -> Array:
    """``a = tanh(z)``, in place on ``z``."""
    return get_array_module(z).tanh(z, out=z)


def tanh_backward(a: Array, delta: Array) -> None:
    """``delta *= 1 - a**2`` in place."""
    delta *= 1.0 - a * a


@dataclass(frozen=True)
class Activation:
    """An activation function, its in-place derivative, and the initializer it wants.

    ``init_gain`` is the variance numerator of the weight initialization:
    He (2 / fan_in) for the ReLU family, Glorot/Xavier (2 / (fan_in + fan_out))
    for the saturating sigmoid and tanh (see :func:`digitnet.layers.init_weights`).
    """

    name: str
    forward: Callable[[Array], Array]
    backward: Callable[[Array, Array], None]
    init: str  # "he" or "glorot"


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation("relu", relu, relu_backward, "he"),
    "leaky_relu": Activation("leaky_relu", leaky_relu, leaky_relu_backward, "he"),
    "sigmoid": Activation("sigmoid", sigmoid, sigmoid_backward, "glorot"),
    "tanh": Activation("tanh", tanh, tanh_backward, "glorot"),
}


def get_activation(name: str) -> Activation:
    """Look an activation up by name; raise ``ValueError`` naming the choices otherwise."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        choices = ", ".join(ACTIVATIONS)
        raise ValueError(f"unknown activation {name!r}; expected one of: {choices}") from None
