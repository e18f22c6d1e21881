"""Predictions for real images: preprocessing (:mod:`digitnet.imageprep`) plus a trained model.

Used by ``digitnet predict`` (image files) and ``digitnet serve`` (drawings sent by the web
page), so both see exactly the same pipeline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from digitnet.explain import Explanation, explain
from digitnet.imageprep import (
    ImageInputError,
    Layout,
    layout_for,
    preprocess,
    preprocess_bytes,
    preprocess_file,
)
from digitnet.model_io import TrainedModel, load_model
from digitnet.network import DTYPES


def load_predictor(path: str | os.PathLike[str]) -> TrainedModel:
    """Load a model file (or a run folder's ``model.npz``) and check that its input is an
    image that :mod:`digitnet.imageprep` can produce."""
    model = load_model(path)
    model_layout(model)
    return model


def model_layout(model: TrainedModel) -> Layout:
    """The preprocessing layout matching the model's input image."""
    layout = layout_for(model.image_shape, model.dataset)
    n_pixels = layout.output_shape[0] * layout.output_shape[1]
    if n_pixels != model.network.n_inputs:
        raise ValueError(
            f"the model takes {model.network.n_inputs} inputs, not a "
            f"{layout.output_shape[0]}x{layout.output_shape[1]} image"
        )
    return layout


def to_model_input(image: NDArray[np.floating], model: TrainedModel) -> NDArray[np.float32]:
    """Map a preprocessed image (ink 1, background 0) to one raw input row ``(1, n)`` in the
    model's training range: ``x = lo + v (hi - lo)`` with the scaler's ``lo`` and ``hi``
    (``x = 255 v`` for MNIST, ``16 v`` for the 8x8 digits)."""
    lo, hi = model.scaler.lo, model.scaler.hi
    values = np.asarray(image, dtype=np.float32).reshape(1, -1)
    return np.asarray(lo + values * (hi - lo), dtype=np.float32)


@dataclass
class Prediction:
    """A model's answer for one image.

    ``network_input`` is the preprocessed image (ink 1, background 0) the network saw.
    """

    source: str
    probabilities: NDArray[np.floating]
    class_names: tuple[str, ...]
    network_input: NDArray[np.float32]
    polarity: str | None = None

    @property
    def index(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def name(self) -> str:
        return self.class_names[self.index]

    @property
    def probability(self) -> float:
        return float(self.probabilities[self.index])

    def top(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` most probable classes, most probable first (ties: lower index first)."""
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(self.class_names[i], float(self.probabilities[i])) for i in order]

    def input_pixels(self) -> NDArray[np.uint8]:
        """The network's view as 8-bit grey levels (ink 255, background 0)."""
        return np.asarray(np.round(self.network_input * 255), dtype=np.uint8)

    def to_dict(self, k: int = 1) -> dict[str, Any]:
        """JSON-ready: the prediction, the top ``k`` and all probabilities by class name."""
        return {
            "file": self.source,
            "prediction": self.name,
            "index": self.index,
            "probability": self.probability,
            "top": [{"class": name, "probability": p} for name, p in self.top(k)],
            "probabilities": {
                name: float(p) for name, p in zip(self.class_names, self.probabilities, strict=True)
            },
        }


def predict_preprocessed(
    model: TrainedModel, image: NDArray[np.floating], source: str, polarity: str | None = None
) -> Prediction:
    """Classify an already preprocessed image of shape ``model.image_shape`` (values 0-1)."""
    image = np.asarray(image, dtype=np.float32)
    proba = model.predict_proba(to_model_input(image, model))[0]
    return Prediction(source, proba, model.class_names, image, polarity)


def predict_image(
    model: TrainedModel, image: Image.Image | NDArray[np.floating], source: str = "image"
) -> Prediction:
    """Preprocess a decoded image (or a 2-D grey array in [0, 1]) and classify it."""
    prep = preprocess(image, model_layout(model))
    return predict_preprocessed(model, prep.image, source, prep.polarity)


def predict_bytes(model: TrainedModel, data: bytes, source: str = "image") -> Prediction:
    """Decode, preprocess and classify the bytes of an image file."""
    prep = preprocess_bytes(data, model_layout(model))
    return predict_preprocessed(model, prep.image, source, prep.polarity)


def predict_file(model: TrainedModel, path: str | os.PathLike[str]) -> Prediction:
    """Read, preprocess and classify an image file; :class:`ImageInputError` names the file."""
    prep = preprocess_file(path, model_layout(model))
    return predict_preprocessed(model, prep.image, str(path), prep.polarity)


__all__ = [
    "ImageInputError",
    "Prediction",
    "load_predictor",
    "model_layout",
    "predict_bytes",
    "predict_file",
    "predict_image",
    "predict_preprocessed",
    "to_model_input",
]


def explain_prediction(model: TrainedModel, pred: Prediction) -> Explanation:
    """Why ``model`` answered ``pred``: hidden activations and the saliency maps of the answer
    and the runner-up (:mod:`digitnet.explain`), per pixel of the image the network saw."""
    x = model.scaler.transform(to_model_input(pred.network_input, model),
                               DTYPES[model.network.dtype])
    return explain(model.network, x[0], pred.network_input.shape)
