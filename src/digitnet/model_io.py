"""A trained model as a unit (network + preprocessing + class names) and its file format.

``model.npz`` is a plain NumPy archive, loadable with ``allow_pickle=False``:

* ``W1, b1, W2, b2, ...``: the weights and biases, layer by layer;
* ``metadata``: a 0-d string array holding JSON: ``format``, ``format_version``, the
  ``network`` architecture, the ``preprocessing`` (min-max range), ``class_names``,
  ``image_shape``, ``dataset`` and whatever the trainer adds under ``info``
  (configuration, test accuracy).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from digitnet.config import ACTIVATION_NAMES, DTYPE_NAMES, is_finite_number, is_int
from digitnet.data.preprocessing import MinMaxScaler
from digitnet.errors import ModelFileError
from digitnet.fileio import atomic_path
from digitnet.network import MLP
from digitnet.runs import MODEL_FILE

FORMAT = "digitnet-model"
FORMAT_VERSION = 1


@dataclass
class TrainedModel:
    """A network together with what it needs to read raw inputs and name its outputs."""

    network: MLP
    scaler: MinMaxScaler
    class_names: tuple[str, ...]
    image_shape: tuple[int, ...]
    dataset: str = "mnist"
    info: dict[str, Any] = field(default_factory=dict)

    def predict_proba(self, x_raw: NDArray[Any]) -> NDArray[np.floating]:
        """Class probabilities ``(n, K)`` for raw (unscaled) inputs ``(n, n_features)``."""
        x = np.asarray(x_raw)
        if x.ndim == 1:
            x = x[None, :]
        return self.network.predict_proba(self.scaler.transform(x.reshape(len(x), -1)))

    def predict(self, x_raw: NDArray[Any]) -> NDArray[np.integer]:
        """Most probable class index per sample."""
        return np.argmax(self.predict_proba(x_raw), axis=1)

    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "network": self.network.config(),
            "preprocessing": {"minmax": self.scaler.to_dict()},
            "class_names": list(self.class_names),
            "image_shape": list(self.image_shape),
            "dataset": self.dataset,
            "info": self.info,
        }


def save_model(model: TrainedModel, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` to ``path`` (``.npz``) atomically: a crash never leaves half a file."""
    path = Path(path)
    arrays: dict[str, NDArray[Any]] = {}
    for i, layer in enumerate(model.network.dense, start=1):
        arrays[f"W{i}"] = layer.W
        arrays[f"b{i}"] = layer.b
    if not all(np.isfinite(a).all() for a in arrays.values()):
        raise ValueError(f"{path}: not saved: the model has NaN or infinite weights")
    arrays["metadata"] = np.array(json.dumps(model.metadata()))
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    return path


# Limits for what a model file may declare, checked before anything is allocated: far above
# any network digitnet trains (Ciresan et al.'s 784-2500-2000-1500-1000-500-10 has 12 million
# parameters), far below what would exhaust a machine's memory.
MAX_PARAMETERS = 100_000_000
MAX_LAYERS = 64
MAX_METADATA_CHARS = 1 << 20
MAX_CLASSES = 100_000


def _member_header(archive: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype of the ``.npy`` member ``name``, from its header alone."""
    with archive.open(f"{name}.npy") as member:
        version = np.lib.format.read_magic(member)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read(member)
    return tuple(shape), dtype


def _read_member(archive: zipfile.ZipFile, name: str) -> NDArray[Any]:
    with archive.open(f"{name}.npy") as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def _is_int(value: Any, low: int = 1, high: int = MAX_PARAMETERS) -> bool:
    return is_int(value, low, high)


def _check_metadata(meta: Any) -> str | None:
    """What is wrong with a model file's metadata (``None``: nothing): types and ranges of
    every field that loading uses, before any array is read."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return f"not a digitnet model file (format is not {FORMAT!r})"
    version = meta.get("format_version", 0)
    if not _is_int(version, 0):
        return "format_version should be an integer"
    if version > FORMAT_VERSION:
        return (f"model format version {version} is newer than this digitnet understands "
                f"({FORMAT_VERSION}); upgrade digitnet")
    cfg = meta.get("network")
    if not isinstance(cfg, dict):
        return "network should be an object"
    hidden = cfg.get("hidden")
    if not (_is_int(cfg.get("n_inputs")) and _is_int(cfg.get("n_classes"), 2, MAX_CLASSES)
            and isinstance(hidden, list) and 1 <= len(hidden) <= MAX_LAYERS
            and all(_is_int(h) for h in hidden)):
        return "network: n_inputs, hidden and n_classes should be positive integers"
    sizes = [cfg["n_inputs"], *hidden, cfg["n_classes"]]
    if sum(a * b + b for a, b in itertools.pairwise(sizes)) > MAX_PARAMETERS:
        return f"network: {'-'.join(map(str, sizes))} is larger than digitnet loads"
    if cfg.get("activation") not in ACTIVATION_NAMES or cfg.get("dtype") not in DTYPE_NAMES:
        return (f"network: activation should be one of {', '.join(ACTIVATION_NAMES)} and "
                f"dtype one of {', '.join(DTYPE_NAMES)}")
    if "seed" in cfg and not _is_int(cfg["seed"], 0, 2**63):
        return "network: seed should be an integer >= 0"
    for key in ("dropout", "input_dropout"):
        if key in cfg and not (is_finite_number(cfg[key]) and 0 <= cfg[key] < 1):
            return f"network: {key} should be a number in [0, 1)"
    if "init_scale" in cfg and not (is_finite_number(cfg["init_scale"]) and cfg["init_scale"] > 0):
        return "network: init_scale should be a positive number"
    minmax = (meta.get("preprocessing") or {}).get("minmax") if isinstance(
        meta.get("preprocessing"), dict) else None
    if not (isinstance(minmax, dict) and all(
            isinstance(minmax.get(k), (int, float)) and not isinstance(minmax.get(k), bool)
            and math.isfinite(minmax[k]) for k in ("lo", "hi")) and minmax["lo"] < minmax["hi"]):
        return "preprocessing: minmax should hold finite numbers lo < hi"
    names = meta.get("class_names")
    if not (isinstance(names, list) and len(names) == cfg["n_classes"]
            and all(isinstance(n, str) for n in names)):
        return f"class_names should be {cfg['n_classes']} strings, one per output"
    shape = meta.get("image_shape")
    if not (isinstance(shape, list) and shape and all(_is_int(d) for d in shape)
            and math.prod(shape) == cfg["n_inputs"]):
        return f"image_shape should be positive integers whose product is {cfg['n_inputs']}"
    if not isinstance(meta.get("dataset", ""), str) or not isinstance(meta.get("info", {}), dict):
        return "dataset should be a string and info an object"
    return None


def load_model(path: str | os.PathLike[str]) -> TrainedModel:
    """Read a model written by :func:`save_model` (``path`` may be a run folder holding
    ``model.npz``); raise :class:`ModelFileError` naming the file.

    Everything is checked before it is used, and sizes before anything is allocated: the
    metadata's schema (types, ranges, a network of at most :data:`MAX_PARAMETERS`), then
    each weight member's shape and dtype from its header, then its values (finite). Only the
    members the metadata names are read; anything else in the archive is ignored unread.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():  # also refuses devices, FIFOs and sockets
        raise ModelFileError(f"{path}: model file not found (or not a regular file)")

    def refuse(reason: str) -> ModelFileError:
        return ModelFileError(f"{path}: {reason}")

    try:
        with zipfile.ZipFile(path) as archive:
            if "metadata.npy" not in archive.namelist():
                raise refuse("no digitnet metadata in this file (not a digitnet model)")
            shape, dtype = _member_header(archive, "metadata")
            if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * MAX_METADATA_CHARS:
                raise refuse("its metadata is not a JSON string of reasonable size")
            try:
                meta = json.loads(str(_read_member(archive, "metadata")))
            except json.JSONDecodeError as exc:
                raise refuse(f"its metadata is not JSON ({exc})") from None
            problem = _check_metadata(meta)
            if problem is not None:
                raise refuse(problem)
            cfg = meta["network"]
            sizes = [cfg["n_inputs"], *cfg["hidden"], cfg["n_classes"]]
            expected_dtype = np.dtype(cfg["dtype"])
            state = []
            for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes), 1):
                for name, want in ((f"W{i}", (fan_in, fan_out)), (f"b{i}", (fan_out,))):
                    if f"{name}.npy" not in archive.namelist():
                        raise refuse(f"lacks the weights {name}")
                    shape, dtype = _member_header(archive, name)
                    if shape != want or dtype != expected_dtype:
                        raise refuse(f"{name} is {dtype} {shape}, expected {expected_dtype} "
                                     f"{want}")
                    array = _read_member(archive, name)
                    if not np.isfinite(array).all():
                        raise refuse(f"{name} holds weights that are not finite")
                    state.append(array)
    except ModelFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, RuntimeError,
            NotImplementedError, KeyError) as exc:  # not a zip, encrypted, unknown compression
        raise refuse(f"not a readable digitnet model file ({type(exc).__name__}: {exc})"
                     ) from None
    network = MLP(cfg["n_inputs"], cfg["hidden"], cfg["n_classes"], cfg["activation"],
                  cfg["dtype"], cfg.get("seed", 0), cfg.get("dropout", 0.0),
                  cfg.get("input_dropout", 0.0), cfg.get("init_scale", 1.0))
    network.set_state(state)
    minmax = meta["preprocessing"]["minmax"]
    return TrainedModel(
        network=network,
        scaler=MinMaxScaler(float(minmax["lo"]), float(minmax["hi"])),
        class_names=tuple(meta["class_names"]),
        image_shape=tuple(meta["image_shape"]),
        dataset=meta.get("dataset", "unknown"),
        info=meta.get("info", {}),
    )
