"""A stand-in for CuPy on a machine without a GPU: NumPy underneath, CuPy's rules on top.

Registered in :data:`digitnet.devices.ARRAY_MODULES` by the tests (``fake_gpu`` fixture), it
lets the GPU code path run in CI. Its arrays (:class:`ndarray`, a NumPy subclass) refuse
what CuPy refuses, so code that would break on a GPU breaks here too:

* an operation, ufunc or indexing that mixes them with NumPy arrays (CuPy raises
  ``TypeError: Unsupported type <class 'numpy.ndarray'>``);
* ``np.take(..., mode=...)`` and other keywords that CuPy's functions do not take (only the
  ones this project uses are checked: see :data:`UNSUPPORTED_KEYWORDS`).

And it gives what CuPy gives where NumPy gives something else: an element read by integer
indices (``a[j]`` of a vector) is a 0-d *view* of the array, not a scalar copy, so a value
kept that way changes when the array does; reductions give 0-d arrays.

Moving data is explicit, as in CuPy: :func:`asarray` copies host arrays "to the device",
:func:`asnumpy` (or ``.get()``) copies them back.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

UNSUPPORTED_KEYWORDS = {"take": {"mode"}}


def _is_host(a: Any) -> bool:
    return isinstance(a, np.ndarray) and not isinstance(a, ndarray) and a.ndim > 0


def _check(values: Any, what: str) -> None:
    for value in values:
        if isinstance(value, (tuple, list)):
            _check(value, what)
        elif _is_host(value):
            raise TypeError(f"Unsupported type {type(value)} in {what} (fakecupy: a NumPy "
                            "array mixed with device arrays)")


def _plain(value: Any) -> Any:
    if isinstance(value, ndarray):
        return value.view(np.ndarray)
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _wrap(value: Any) -> Any:
    if isinstance(value, np.ndarray) and not isinstance(value, ndarray):
        return value.view(ndarray)
    if isinstance(value, np.generic):  # CuPy's reductions give 0-d arrays
        return np.asarray(value).view(ndarray)
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    return value


class ndarray(np.ndarray):  # named like cupy.ndarray
    """A "device" array: NumPy memory that does not mix with NumPy arrays."""

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        _check(inputs, f"{ufunc.__name__}")
        _check(kwargs.get("out", ()), f"{ufunc.__name__}(out=)")
        out = kwargs.get("out")
        result = getattr(ufunc, method)(*_plain(inputs), **_plain(kwargs))
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func: Any, types_: Any, args: Any, kwargs: Any) -> Any:
        _check(args, func.__name__)
        _check(kwargs.values(), func.__name__)
        bad = UNSUPPORTED_KEYWORDS.get(func.__name__, set()) & set(kwargs)
        if bad:
            raise TypeError(f"{func.__name__}() got an unexpected keyword argument "
                            f"{sorted(bad)[0]!r} (fakecupy: CuPy has no such keyword)")
        out = kwargs.get("out")
        result = func(*_plain(args), **_plain(kwargs))
        return out if out is not None else _wrap(result)

    def __getitem__(self, key: Any) -> Any:
        keys = key if isinstance(key, tuple) else (key,)
        _check(keys, "indexing")
        plain = self.view(np.ndarray)
        if len(keys) == self.ndim and all(isinstance(k, (int, np.integer)) for k in keys):
            return plain[(*keys, Ellipsis)].view(ndarray)  # CuPy: a 0-d view, not a copy
        return _wrap(plain[_plain(key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        _check(key if isinstance(key, tuple) else (key,), "indexing")
        _check((value,), "assignment")
        self.view(np.ndarray)[_plain(key)] = _plain(value)

    def get(self) -> np.ndarray:
        """A NumPy copy (CuPy's device-to-host copy)."""
        return np.array(self.view(np.ndarray), copy=True)

    def item(self, *args: Any) -> Any:
        return self.view(np.ndarray).item(*args)


def asarray(a: Any, dtype: Any = None) -> ndarray:
    """To the "device": a copy for host data, the array itself for device arrays."""
    if isinstance(a, ndarray):
        return a if dtype is None else a.astype(dtype)
    return np.array(a, dtype=dtype, copy=True).view(ndarray)


def asnumpy(a: Any) -> np.ndarray:
    """Back to the host (a copy)."""
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


def _function(name: str) -> Any:
    numpy_function = getattr(np, name)

    def call(*args: Any, **kwargs: Any) -> Any:
        if name in {"empty", "zeros", "ones", "arange", "full", "eye"}:
            return _wrap(numpy_function(*args, **kwargs))
        _check(args, name)
        _check(kwargs.values(), name)
        bad = UNSUPPORTED_KEYWORDS.get(name, set()) & set(kwargs)
        if bad:
            raise TypeError(f"{name}() got an unexpected keyword argument {sorted(bad)[0]!r}")
        out = kwargs.get("out")
        result = numpy_function(*_plain(args), **_plain(kwargs))
        return out if out is not None else _wrap(result)

    return call


class _Generator:
    """CuPy's random generator: its own stream (here NumPy's, offset), device arrays out."""

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng([seed, 12345])

    def random(self, size: Any = None, dtype: Any = np.float64) -> ndarray:
        return _wrap(self._rng.random(size, dtype=dtype))

    def standard_normal(self, size: Any = None, dtype: Any = np.float64) -> ndarray:
        return _wrap(self._rng.standard_normal(size, dtype=dtype))


random = types.SimpleNamespace(default_rng=lambda seed=0: _Generator(int(seed)))
cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    value = getattr(np, name)
    if not callable(value) or isinstance(value, type):  # dtypes, newaxis, pi...
        return value
    return _function(name)
