"""model.npz: round trip, plain-NumPy readability, every kind of bad file, atomic saving."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from digitnet.data.preprocessing import MinMaxScaler
from digitnet.errors import ModelFileError
from digitnet.model_io import FORMAT, FORMAT_VERSION, TrainedModel, load_model, save_model
from digitnet.network import MLP

X = np.random.default_rng(0).integers(0, 256, size=(25, 12), dtype=np.uint8)


def _model(dtype: str = "float32", activation: str = "tanh") -> TrainedModel:
    net = MLP(12, (9, 7), 4, activation=activation, dtype=dtype, seed=5)
    rng = np.random.default_rng(1)
    for layer in net.dense:  # non-zero biases, so that they are checked too
        layer.b[...] = rng.normal(size=layer.b.shape)
    return TrainedModel(net, MinMaxScaler(0.0, 255.0), ("a", "b", "c", "d"), (3, 4),
                        dataset="toy", info={"test_accuracy": 0.5, "config": {"seed": 5}})


def _raises_naming(path: Path, match: str = ""):  # type: ignore[no-untyped-def]
    return pytest.raises(ModelFileError, match="^" + re.escape(str(path)) + ": .*" + match)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_gives_identical_predictions_and_metadata(tmp_path: Path, dtype: str) -> None:
    model = _model(dtype)
    path = save_model(model, tmp_path / "run" / "model.npz")
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.metadata() == model.metadata()
    assert loaded.network.describe() == "12-9-7-4 tanh"
    assert loaded.class_names == ("a", "b", "c", "d") and loaded.image_shape == (3, 4)
    assert loaded.scaler == model.scaler and loaded.dataset == "toy"
    assert loaded.info == {"test_accuracy": 0.5, "config": {"seed": 5}}
    for a, b in zip(loaded.network.parameters(), model.network.parameters(), strict=True):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a, b)


def test_predict_accepts_images_and_single_samples() -> None:
    model = _model()
    images = X.reshape(25, 3, 4)
    np.testing.assert_array_equal(model.predict(images), model.predict(X))
    assert model.predict(X[0]).shape == (1,)


def test_file_is_plain_numpy_without_pickle(tmp_path: Path) -> None:
    path = save_model(_model(), tmp_path / "model.npz")
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["W1", "W2", "W3", "b1", "b2", "b3", "metadata"]
        meta = json.loads(str(archive["metadata"]))
        assert archive["W1"].shape == (12, 9) and archive["b3"].shape == (4,)
    assert meta["format"] == FORMAT and meta["format_version"] == FORMAT_VERSION
    assert meta["network"]["hidden"] == [9, 7]
    assert meta["preprocessing"] == {"minmax": {"lo": 0.0, "hi": 255.0}}


def test_missing_file(tmp_path: Path) -> None:
    with _raises_naming(tmp_path / "none.npz", "not found"):
        load_model(tmp_path / "none.npz")


def test_corrupt_file(tmp_path: Path) -> None:
    path = save_model(_model(), tmp_path / "model.npz")
    raw = bytearray(path.read_bytes())
    raw[40:400] = bytes(360)  # zero out part of the first member
    path.write_bytes(bytes(raw))
    with _raises_naming(path):
        load_model(path)


def test_truncated_file(tmp_path: Path) -> None:
    path = save_model(_model(), tmp_path / "model.npz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with _raises_naming(path, "not a digitnet model file"):
        load_model(path)


@pytest.mark.parametrize("content", [b"", b"hello, I am text\n", b"\x93NUMPY garbage"])
def test_not_an_npz_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    with _raises_naming(path):
        load_model(path)


def test_plain_npy_file(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    with open(path, "wb") as fh:
        np.save(fh, np.zeros(3))
    with _raises_naming(path):
        load_model(path)


def test_npz_without_metadata(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    np.savez(path, W1=np.zeros((2, 2)), b1=np.zeros(2))
    with _raises_naming(path, "no digitnet metadata"):
        load_model(path)


def _rewrite(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    meta = json.loads(str(arrays["metadata"]))
    change(arrays, meta)
    arrays["metadata"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda a, m: a.update(W2=np.zeros((7, 9), dtype=np.float32)), "shape mismatch"),
        (lambda a, m: a.update(b1=np.zeros(3, dtype=np.float32)), "shape mismatch"),
        (lambda a, m: a.pop("W3"), "W3"),
        (lambda a, m: m.update(format="something-else"), "format is not"),
        (lambda a, m: m.update(format_version=FORMAT_VERSION + 1), "newer"),
        (lambda a, m: m["network"].update(hidden=[9]), "inconsistent|expected"),
        (lambda a, m: m["network"].update(activation="swish"), "swish"),
        (lambda a, m: m.pop("preprocessing"), "preprocessing"),
        (lambda a, m: m.update(class_names=["a", "b"]), "2 class names for 4 outputs"),
    ],
)
def test_inconsistent_model_files(tmp_path: Path, change, match: str) -> None:  # type: ignore[no-untyped-def]
    path = save_model(_model(), tmp_path / "model.npz")
    _rewrite(path, change)
    with _raises_naming(path, match):
        load_model(path)


def test_metadata_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    np.savez(path, W1=np.zeros((2, 2)), metadata=np.array("{not json"))
    with _raises_naming(path, "no digitnet metadata"):
        load_model(path)


def test_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_model(_model(), tmp_path / "model.npz")
    before = path.read_bytes()

    def broken_savez(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        file.write(b"PK\x03\x04 half a zip")  # start writing, then fail like a full disk
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", broken_savez)
    other = _model(activation="relu")
    with pytest.raises(OSError, match="No space left"):
        save_model(other, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary left behind
    monkeypatch.undo()
    assert load_model(path).network.activation == "tanh"
