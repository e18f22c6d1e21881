"""A trained model as a unit (network + preprocessing + class names) and its file format.

``model.npz`` is a plain NumPy archive, loadable with ``allow_pickle=False``:

* ``W1, b1, W2, b2, ...``: the weights and biases, layer by layer;
* ``metadata``: a 0-d string array holding JSON: ``format``, ``format_version``, the
  ``network`` architecture, the ``preprocessing`` (min-max range), ``class_names``,
  ``image_shape``, ``dataset`` and whatever the trainer adds under ``info``
  (configuration, test accuracy).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

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


def load_model(path: str | os.PathLike[str]) -> TrainedModel:
    """Read a model written by :func:`save_model` (``path`` may be a run folder holding
    ``model.npz``); raise :class:`ModelFileError` naming the file."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a lone .npy array
            raise ValueError("a single array, not an .npz archive")
        with loaded as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFileError(f"{path}: not a digitnet model file ({exc})") from None
    try:
        meta = json.loads(str(arrays.pop("metadata")))
    except (KeyError, json.JSONDecodeError):
        raise ModelFileError(f"{path}: no digitnet metadata in this .npz file") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a digitnet model file (format is not {FORMAT!r})")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model format version {meta['format_version']} is newer than this "
            f"digitnet understands ({FORMAT_VERSION}); upgrade digitnet"
        )
    try:
        cfg = meta["network"]
        network = MLP(
            cfg["n_inputs"], cfg["hidden"], cfg["n_classes"], cfg["activation"],
            cfg["dtype"], cfg.get("seed", 0),
        )
        state = []
        for i in range(1, len(network.dense) + 1):
            state += [arrays[f"W{i}"], arrays[f"b{i}"]]
        if not all(np.issubdtype(a.dtype, np.floating) and np.isfinite(a).all() for a in state):
            raise ValueError("weights that are not finite floating-point numbers")
        network.set_state(state)
        model = TrainedModel(
            network=network,
            scaler=MinMaxScaler.from_dict(meta["preprocessing"]["minmax"]),
            class_names=tuple(meta["class_names"]),
            image_shape=tuple(meta["image_shape"]),
            dataset=meta.get("dataset", "unknown"),
            info=meta.get("info", {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: inconsistent model file ({exc})") from None
    if len(model.class_names) != network.n_classes:
        raise ModelFileError(f"{path}: {len(model.class_names)} class names for "
                             f"{network.n_classes} outputs")
    return model
