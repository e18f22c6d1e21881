"""Where the arithmetic runs: NumPy on the CPU, or CuPy on a GPU.

The math of :mod:`digitnet.layers`, :mod:`digitnet.activations`, :mod:`digitnet.optimizers`
and :mod:`digitnet.regularizers` is written once. Each function asks the arrays it is given
which module they belong to and calls that module, the way CuPy's own
``cupy.get_array_module`` does::

    xp = get_array_module(x)          # numpy for NumPy arrays, cupy for CuPy arrays
    z = xp.matmul(x, W)

so the very code a learner reads runs on a GPU when its arrays live there. This module is
the one place that knows about CuPy: it is imported only when a GPU is asked for
(``device="gpu"``), and a missing CuPy or GPU is one clear error (:class:`DeviceError`),
raised before any work starts.

Models are always saved from, and loaded into, NumPy arrays: a GPU-trained model is
evaluated, served and predicted on a CPU unchanged.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

from digitnet.config import DEVICES
from digitnet.errors import DigitnetError

# What to install for `device="gpu"` (the wheels of CuPy for each CUDA major version).
GPU_INSTALL = ("pip install 'digitnet[gpu]' (CuPy for CUDA 12, the cupy-cuda12x wheel) or "
               "'digitnet[gpu-cuda13]' (cupy-cuda13x)")

# Array types by the top-level package that defines them, and the module of their math.
# Tests register a stand-in here to run the GPU dispatch on a machine without one.
ARRAY_MODULES: dict[str, str] = {"cupy": "cupy"}


class DeviceError(DigitnetError):
    """The device asked for is not usable here (no CuPy, no GPU); the message says why."""


def get_array_module(*arrays: Any) -> ModuleType:
    """The module of the arrays' math: :mod:`cupy` if any of them is a CuPy array (or of a
    module registered in :data:`ARRAY_MODULES`), else :mod:`numpy`. Never imports CuPy for
    NumPy arrays."""
    for a in arrays:
        package = type(a).__module__.partition(".")[0]
        if package in ARRAY_MODULES:
            return importlib.import_module(ARRAY_MODULES[package])
    return np


def array_module(device: str) -> ModuleType:
    """The array module for ``device`` (``"cpu"``: NumPy, ``"gpu"``: CuPy), checked to work:
    raises :class:`DeviceError` with what is missing (CuPy, a CUDA GPU)."""
    if device == "cpu":
        return np
    if device != "gpu":
        raise ValueError(f"unknown device {device!r}; expected one of: {', '.join(DEVICES)}")
    try:
        xp = importlib.import_module(ARRAY_MODULES["cupy"])
    except ImportError as error:
        raise DeviceError(f"device 'gpu' needs CuPy, which is not installed ({error}); "
                          f"{GPU_INSTALL}") from None
    try:
        count = int(xp.cuda.runtime.getDeviceCount())
        if count > 0:
            xp.zeros(1).sum().item()  # the CUDA libraries load and run
    except Exception as error:  # CUDA driver missing or broken: CuPy raises its own errors
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DeviceError(f"device 'gpu': CuPy is installed but cannot use a CUDA GPU "
                          f"({reason})") from None
    if count == 0:
        raise DeviceError("device 'gpu': CuPy is installed but found no CUDA GPU")
    return xp


def device_of(a: Any) -> str:
    """``"gpu"`` for an array of a GPU module, else ``"cpu"``."""
    return "cpu" if get_array_module(a) is np else "gpu"


def to_host(a: Any) -> Any:
    """``a`` as a NumPy array (copied off the GPU when it lives there; NumPy arrays as they are)."""
    xp = get_array_module(a)
    return a if xp is np else xp.asnumpy(a)


def to_device(a: Any, xp: ModuleType) -> Any:
    """``a`` as an array of ``xp`` (copied to the GPU for CuPy; NumPy arrays stay as they are)."""
    if xp is np:
        return to_host(a)
    return xp.asarray(a)


def random_generator(xp: ModuleType, seed: np.random.SeedSequence) -> Any:
    """A random generator of ``xp`` seeded from ``seed``: NumPy's PCG64 on the CPU, CuPy's
    own generator on a GPU (its numbers differ from NumPy's, so dropout masks on a GPU are
    not those of the CPU; everything else is)."""
    if xp is np:
        return np.random.default_rng(seed)
    return xp.random.default_rng(int(seed.generate_state(1, np.uint64)[0]))


def generator_state(rng: Any) -> Any:
    """The state of a NumPy generator (for a checkpoint), ``None`` for a GPU one."""
    return rng.bit_generator.state if isinstance(rng, np.random.Generator) else None


def take_rows(x: Any, idx: Any, out: Any) -> None:
    """``out[:] = x[idx]`` (rows), without a temporary. The indices must be valid (a
    permutation's): NumPy's ``mode="clip"`` then spares the copy of ``out`` that its default
    ``mode="raise"`` makes; CuPy's ``take`` has no modes."""
    xp = get_array_module(x)
    if xp is np:
        np.take(x, idx, axis=0, out=out, mode="clip")
    else:
        xp.take(x, idx, axis=0, out=out)
