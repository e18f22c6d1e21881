"""What the JSON API does, without HTTP: validate a request payload, predict, describe the model.

``POST /api/predict`` takes a JSON object with exactly one of

* ``"image"``: a data URL ``data:image/png;base64,...`` (also JPEG, BMP, GIF), which goes
  through the same preprocessing as ``digitnet predict`` (:mod:`digitnet.imageprep`);
* ``"pixels"``: grey levels 0-255, flat or as rows. By default they are the network's input
  as is (``H x W`` of the model, light ink on black, like MNIST); with ``"preprocess": true``
  they are a picture of any size that is preprocessed first.

Problems in the request raise :class:`ApiError` with an HTTP status: 400 for a malformed
request, 422 for an image that is well-formed but unusable (blank, corrupt, not an image).
"""

from __future__ import annotations

import base64
import binascii
import threading
from typing import Any

import numpy as np

from digitnet.imageprep import ImageBudget, ImageInputError, preprocess, preprocess_bytes
from digitnet.model_io import TrainedModel
from digitnet.predict import Prediction, explain_prediction, model_layout, predict_preprocessed

MAX_PIXEL_SIDE = 1024
# A drawing from the page is 280x280; a pasted photo of a digit rarely needs more than a few
# megapixels. With the request body's 1 MB and MAX_CONCURRENT_PREDICTIONS at a time, the
# server's decoding memory stays within about 4 x 2 MP x 4 bytes x a few copies.
SERVER_BUDGET = ImageBudget(max_bytes=1_000_000, max_pixels=2_000_000, max_side=4096)


class ApiError(Exception):
    """A request the API refuses: ``status`` is the HTTP status, ``message`` the reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decode_data_url(url: Any) -> bytes:
    """The bytes of a base64 ``data:image/...`` URL."""
    if not isinstance(url, str):
        raise ApiError(400, "'image' must be a string holding a data URL")
    header, sep, payload = url.partition(",")
    if not sep or not header.startswith("data:image/") or not header.endswith(";base64"):
        raise ApiError(400, "'image' must be a data URL like data:image/png;base64,...")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "'image': invalid base64 data") from None


def pixel_array(values: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
    """``values`` (nested lists of numbers 0-255) as a float array, checked."""
    if not isinstance(values, list) or not values:
        raise ApiError(400, "'pixels' must be a non-empty list of numbers 0-255")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise ApiError(400, "'pixels' must be numbers 0-255, flat or as rows of equal "
                            "length") from None
    if array.ndim not in (1, 2):
        raise ApiError(400, f"'pixels' must be flat or 2-D, got {array.ndim} dimensions")
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 255:
        raise ApiError(400, "'pixels' values must lie in 0-255")
    return array


class PredictionService:
    """Answers API requests with one model."""

    def __init__(self, model: TrainedModel) -> None:
        self.model = model
        # The network keeps per-layer buffers for backpropagation, so two threads must not
        # run it at once; preprocessing (the slow part) runs in parallel.
        self._network_lock = threading.Lock()
        self.layout = model_layout(model)
        self.input_shape = self.layout.output_shape

    def model_info(self) -> dict[str, Any]:
        """What the page shows about the model."""
        network = self.model.network
        accuracy = self.model.info.get("test_accuracy")
        return {
            "architecture": network.describe(),
            "layer_sizes": network.layer_sizes,
            "n_parameters": network.n_parameters,
            "dataset": self.model.dataset,
            "test_accuracy": float(accuracy) if isinstance(accuracy, (int, float)) else None,
            "class_names": list(self.model.class_names),
            "input_shape": list(self.input_shape),
        }

    def predict_payload(self, payload: Any) -> dict[str, Any]:
        """The API's answer to one ``POST /api/predict`` body (already parsed JSON)."""
        if not isinstance(payload, dict):
            raise ApiError(400, "expected a JSON object with 'image' or 'pixels'")
        unknown = set(payload) - {"image", "pixels", "preprocess", "explain"}
        if unknown:
            raise ApiError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
        if ("image" in payload) == ("pixels" in payload):
            raise ApiError(400, "give exactly one of 'image' (a data URL) or 'pixels'")
        wants_explanation = payload.get("explain", False)
        if not isinstance(wants_explanation, bool):
            raise ApiError(400, "'explain' must be true or false")
        try:
            pred = (self._from_image(payload["image"]) if "image" in payload
                    else self._from_pixels(payload["pixels"], payload.get("preprocess", False)))
        except ImageInputError as exc:
            raise ApiError(422, str(exc)) from None
        answer = self.response(pred)
        if wants_explanation:  # saliency maps and hidden activations (digitnet.explain)
            with self._network_lock:
                answer["explanation"] = explain_prediction(self.model, pred).to_dict(
                    self.model.class_names)
        return answer

    def _from_image(self, url: Any) -> Prediction:
        prep = preprocess_bytes(decode_data_url(url), self.layout, SERVER_BUDGET)
        return self._classify(prep.image, "image", prep.polarity)

    def _from_pixels(self, values: Any, wants_preprocess: Any) -> Prediction:
        if not isinstance(wants_preprocess, bool):
            raise ApiError(400, "'preprocess' must be true or false")
        array = pixel_array(values)
        if wants_preprocess:
            if array.ndim != 2 or max(array.shape) > MAX_PIXEL_SIDE:
                raise ApiError(400, "with 'preprocess', 'pixels' must be rows (2-D) of at "
                                    f"most {MAX_PIXEL_SIDE}x{MAX_PIXEL_SIDE}")
            prep = preprocess(array / 255, self.layout)
            return self._classify(prep.image, "pixels", prep.polarity)
        h, w = self.input_shape
        if array.size != h * w:
            raise ApiError(400, f"'pixels' must hold {h * w} values ({h}x{w}), got {array.size}")
        return self._classify((array / 255).reshape(h, w), "pixels", None)

    def _classify(self, image: Any, source: str, polarity: str | None) -> Prediction:
        with self._network_lock:
            return predict_preprocessed(self.model, image, source, polarity)

    @staticmethod
    def response(pred: Prediction) -> dict[str, Any]:
        h, w = pred.network_input.shape
        return {
            "prediction": pred.name,
            "index": pred.index,
            "probability": pred.probability,
            "probabilities": [float(p) for p in pred.probabilities],
            "class_names": list(pred.class_names),
            "polarity": pred.polarity,
            "input": {"shape": [h, w], "pixels": pred.input_pixels().ravel().tolist()},
        }
