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
import dataclasses
import json
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from digitnet import inside
from digitnet.config import is_int
from digitnet.data.datasets import Dataset
from digitnet.explain import explain
from digitnet.imageprep import ImageBudget, ImageInputError, preprocess, preprocess_bytes
from digitnet.inside import EditError, Edits
from digitnet.layers import softmax
from digitnet.model_io import TrainedModel, save_model
from digitnet.network import DTYPES, MLP
from digitnet.predict import (
    Prediction,
    explain_prediction,
    model_layout,
    predict_preprocessed,
    to_model_input,
)
from digitnet.projection import layer_representations, pca_2d, sample_indices

MAX_PIXEL_SIDE = 1024
# A drawing from the page is 280x280; a pasted photo of a digit rarely needs more than a few
# megapixels. With the request body's 1 MB and MAX_CONCURRENT_PREDICTIONS at a time, the
# server's decoding memory stays within about 4 x 2 MP x 4 bytes x a few copies.
SERVER_BUDGET = ImageBudget(max_bytes=1_000_000, max_pixels=2_000_000, max_side=4096)
POINTS_SAMPLE = 1000  # test images in the points map
EDITED_COPIES = 4  # edited networks kept, so that drawing under the same edits reuses one


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
    """Answers API requests with one model.

    ``test_set`` (the model's data set, optional) lets the inside view measure the test
    accuracy of an edited copy of the network and draw the points map; without it those
    requests get 409 with ``test_set_note`` as the reason.
    """

    def __init__(self, model: TrainedModel, test_set: Dataset | None = None,
                 test_set_note: str | None = None) -> None:
        self.model = model
        # The network keeps per-layer buffers for backpropagation, so two threads must not
        # run it (or an edited copy) at once; preprocessing (the slow part) runs in parallel.
        self._network_lock = threading.Lock()
        self.layout = model_layout(model)
        self.input_shape = self.layout.output_shape
        self._copies: OrderedDict[str, MLP] = OrderedDict()
        self.test_set_note = test_set_note or "the server was started without a test set"
        self._test: tuple[Any, Any] | None = None
        self._points: dict[str, Any] | None = None
        if test_set is not None:
            if test_set.n_features != model.network.n_inputs or \
                    list(test_set.class_names) != list(model.class_names):
                raise ValueError(f"data set {test_set.name!r} does not match the model")
            x = model.scaler.transform(test_set.x_test, DTYPES[model.network.dtype])
            self._test = (x, test_set.y_test)
            self._points_idx = sample_indices(len(x), POINTS_SAMPLE, seed=0)
            self._points_images = test_set.x_test[self._points_idx]
            self.test_set_note = f"{len(x):,} test images of {test_set.name}"

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
            "activation": network.activation,
            "test_set": self.test_set_note if self._test is not None else None,
            "test_set_missing": None if self._test is not None else self.test_set_note,
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
        pred = self._classify(*self._input(payload))
        answer = self.response(pred)
        if wants_explanation:  # saliency maps and hidden activations (digitnet.explain)
            with self._network_lock:
                answer["explanation"] = explain_prediction(self.model, pred).to_dict(
                    self.model.class_names)
        return answer

    def _input(self, payload: dict[str, Any]) -> tuple[Any, str, str | None]:
        """The preprocessed image of a request with ``image`` or ``pixels``, its source and
        polarity."""
        try:
            if "image" in payload:
                return self._from_image(payload["image"])
            return self._from_pixels(payload["pixels"], payload.get("preprocess", False))
        except ImageInputError as exc:
            raise ApiError(422, str(exc)) from None

    def _from_image(self, url: Any) -> tuple[Any, str, str | None]:
        prep = preprocess_bytes(decode_data_url(url), self.layout, SERVER_BUDGET)
        return prep.image, "image", prep.polarity

    def _from_pixels(self, values: Any, wants_preprocess: Any) -> tuple[Any, str, str | None]:
        if not isinstance(wants_preprocess, bool):
            raise ApiError(400, "'preprocess' must be true or false")
        array = pixel_array(values)
        if wants_preprocess:
            if array.ndim != 2 or max(array.shape) > MAX_PIXEL_SIDE:
                raise ApiError(400, "with 'preprocess', 'pixels' must be rows (2-D) of at "
                                    f"most {MAX_PIXEL_SIDE}x{MAX_PIXEL_SIDE}")
            prep = preprocess(array / 255, self.layout)
            return prep.image, "pixels", prep.polarity
        h, w = self.input_shape
        if array.size != h * w:
            raise ApiError(400, f"'pixels' must hold {h * w} values ({h}x{w}), got {array.size}")
        return (array / 255).reshape(h, w), "pixels", None

    def _classify(self, image: Any, source: str, polarity: str | None) -> Prediction:
        with self._network_lock:
            return predict_preprocessed(self.model, image, source, polarity)

    # ------------------------------------------------------------ inside view
    def _edits(self, payload: dict[str, Any]) -> Edits:
        try:
            return Edits.from_json(payload.get("edits")).check(self.model.network)
        except EditError as exc:
            raise ApiError(400, str(exc)) from None

    def _network_for(self, edits: Edits) -> MLP:
        """The network with ``edits`` applied (the model's own when they change no weight);
        a few recent copies are kept. Call with the network lock held."""
        if edits.keeps_weights():
            return self.model.network
        key = json.dumps({k: v for k, v in edits.to_json().items() if k != "temperature"})
        if key not in self._copies:
            self._copies[key] = inside.edited_copy(self.model.network, edits)
            while len(self._copies) > EDITED_COPIES:
                self._copies.popitem(last=False)
        self._copies.move_to_end(key)
        return self._copies[key]

    def _test_set(self) -> tuple[Any, Any]:
        if self._test is None:
            raise ApiError(409, f"no test set on this server: {self.test_set_note}")
        return self._test

    def inspect_payload(self, payload: Any) -> dict[str, Any]:
        """The answer to ``POST /api/inspect``: the prediction of the *edited* network for a
        drawing, with every hidden unit's output, the saliency maps, the softmax step by step
        and, when ``"unit": [layer, unit]`` is asked for, that unit's arithmetic."""
        if not isinstance(payload, dict):
            raise ApiError(400, "expected a JSON object with 'image' or 'pixels'")
        unknown = set(payload) - {"image", "pixels", "preprocess", "edits", "unit"}
        if unknown:
            raise ApiError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
        if ("image" in payload) == ("pixels" in payload):
            raise ApiError(400, "give exactly one of 'image' (a data URL) or 'pixels'")
        edits = self._edits(payload)
        unit = payload.get("unit")
        if unit is not None and not (isinstance(unit, list) and len(unit) == 2
                                     and all(is_int(v, 0) for v in unit)):
            raise ApiError(400, "'unit' must be [layer, unit], two whole numbers >= 0")
        image, source, polarity = self._input(payload)
        dtype = DTYPES[self.model.network.dtype]
        x = self.model.scaler.transform(to_model_input(image, self.model), dtype)[0]
        with self._network_lock:
            network = self._network_for(edits)
            logits, hidden = inside.hidden_outputs(network, x, edits)
            why = explain(network, x, np.shape(image))
            try:
                math = None if unit is None else inside.unit_math(network, x, unit[0], unit[1],
                                                                  edits)
            except EditError as exc:
                raise ApiError(400, str(exc)) from None
            original = None
            if not edits.is_identity():
                original = softmax(self.model.network.forward(x[None].copy()))[0]
        proba = softmax(logits[None].astype(np.float64) / edits.temperature)[0]
        pred = Prediction(source, proba, self.model.class_names,
                          np.asarray(image, np.float32), polarity)
        answer = self.response(pred)
        explanation = why.to_dict(self.model.class_names)
        explanation["hidden"] = [np.round(h, 6).tolist() for h in hidden]
        explanation["active_units"] = [int(np.count_nonzero(h > 0)) for h in hidden]
        answer.update(explanation=explanation, unit=math, edits=edits.to_json(),
                      softmax=inside.softmax_steps(logits, edits.temperature))
        if original is not None:
            k = int(np.argmax(original))
            answer["unedited"] = {"prediction": self.model.class_names[k],
                                  "probability": float(original[k])}
        return answer

    def scores_payload(self, payload: Any) -> dict[str, Any]:
        """``POST /api/scores``: test accuracy and loss of the edited network and of the
        model as saved."""
        if not isinstance(payload, dict) or set(payload) - {"edits"}:
            raise ApiError(400, "expected a JSON object with 'edits' only")
        edits = self._edits(payload)
        x, y = self._test_set()
        with self._network_lock:
            edited = inside.edited_scores(self.model.network, edits, x, y)
            if self._original_scores is None:
                self._original_scores = inside.edited_scores(self.model.network, Edits(), x, y)
        return {"edited": edited, "original": self._original_scores,
                "test_set": self.test_set_note, "edits": edits.to_json()}

    _original_scores: dict[str, float] | None = None

    def points_payload(self, payload: Any) -> dict[str, Any]:
        """``POST /api/points``: a sample of the test set projected onto each layer's first
        two principal components (under the edits), with true and predicted classes."""
        if not isinstance(payload, dict) or set(payload) - {"edits"}:
            raise ApiError(400, "expected a JSON object with 'edits' only")
        edits = self._edits(payload)
        x, y = self._test_set()
        xs = x[self._points_idx]
        with self._network_lock:
            layers = layer_representations(self._network_for(edits), xs)
        for layer, unit in edits.off:  # what the next layer receives
            layers[layer + 1][1][:, unit] = 0
        if self._points is None:  # the input layer does not depend on the edits
            self._points = {"input": np.round(pca_2d(xs), 4).tolist()}
        out = [{"name": name, "points": self._points["input"] if i == 0
                else np.round(pca_2d(values), 4).tolist()}
               for i, (name, values) in enumerate(layers)]
        predicted = layers[-1][1].argmax(axis=1)
        return {"layers": out, "labels": y[self._points_idx].tolist(),
                "predicted": predicted.tolist(), "class_names": list(self.model.class_names),
                "n": len(xs), "method": "PCA"}

    def points_images(self) -> dict[str, Any]:
        """``GET /api/points/images``: the points map's test images, as 8-bit grey levels
        (ink 255), base64 of ``n x h x w`` bytes in the order of :meth:`points_payload`."""
        self._test_set()
        lo, hi = self.model.scaler.lo, self.model.scaler.hi
        grey = np.clip(np.rint((self._points_images - lo) * (255 / (hi - lo))), 0, 255)
        return {"shape": [len(grey), *self.model.image_shape],
                "pixels": base64.b64encode(grey.astype(np.uint8).tobytes()).decode()}

    def edited_model(self, payload: Any) -> bytes:
        """``POST /api/edited-model``: the edited network as a model file (``.npz`` bytes),
        for the browser to save under a name of the user's choosing; nothing is written on
        the server but a temporary file."""
        if not isinstance(payload, dict) or set(payload) - {"edits"}:
            raise ApiError(400, "expected a JSON object with 'edits' only")
        edits = self._edits(payload)
        with self._network_lock:
            network = self._network_for(edits)
            info = {k: v for k, v in self.model.info.items() if k != "test_accuracy"}
            info["edited_from"] = {"test_accuracy": self.model.info.get("test_accuracy"),
                                   "edits": edits.to_json(),
                                   "note": "the temperature is not part of the weights"}
            if self._test is not None:
                info["test_accuracy"] = inside.edited_scores(
                    self.model.network, edits, *self._test)["accuracy"]
            model = dataclasses.replace(self.model, network=network, info=info)
            with tempfile.TemporaryDirectory() as folder:
                path = save_model(model, Path(folder) / "model.npz")
                return path.read_bytes()

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
