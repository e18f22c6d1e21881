"""model.npz: round trip, plain-NumPy readability, every kind of bad file, atomic saving."""

from __future__ import annotations

import io
import json
import os
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
    with _raises_naming(path, "not a readable digitnet model file"):
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
        (lambda a, m: a.update(W2=np.zeros((7, 9), dtype=np.float32)), "W2 is .* expected"),
        (lambda a, m: a.update(b1=np.zeros(3, dtype=np.float32)), "b1 is .* expected"),
        (lambda a, m: a.pop("W3"), "W3"),
        (lambda a, m: m.update(format="something-else"), "format is not"),
        (lambda a, m: m.update(format_version=FORMAT_VERSION + 1), "newer"),
        (lambda a, m: m["network"].update(hidden=[9]), "inconsistent|expected"),
        (lambda a, m: m["network"].update(activation="swish"), "activation should be one of"),
        (lambda a, m: m.pop("preprocessing"), "preprocessing"),
        (lambda a, m: m.update(class_names=["a", "b"]), "class_names should be 4 strings"),
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
    with _raises_naming(path, "metadata is not JSON"):
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


# ------------------------------------------------ checked before anything is allocated
def _saved(tmp_path: Path) -> Path:
    return save_model(_model(), tmp_path / "model.npz")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda a, m: m["network"].update(hidden=[100_000, 100_000]), "larger than digitnet"),
        (lambda a, m: m["network"].update(n_inputs="6"), "positive integers"),
        (lambda a, m: m["network"].update(hidden=[True]), "positive integers"),
        (lambda a, m: m["network"].update(dtype="float16"), "dtype one of"),
        (lambda a, m: m.update(class_names=[1, 2, 3, 4]), "class_names"),
        (lambda a, m: m["preprocessing"]["minmax"].update(lo=5, hi=5), "lo < hi"),
        (lambda a, m: m["preprocessing"]["minmax"].update(hi=float("inf")), "lo < hi"),
        (lambda a, m: m.update(image_shape=[5, 5]), "image_shape"),
        (lambda a, m: m.update(info=[1]), "info an object"),
        (lambda a, m: m.update(format_version="1"), "format_version"),
        (lambda a, m: a.update(W1=a["W1"].astype(np.float64)), "W1 is float64"),
        (lambda a, m: a.update(b2=np.array(["x"] * 5)), "b2 is <U1"),
    ],
)
def test_metadata_and_members_are_checked_in_full(tmp_path: Path, change, match: str) -> None:  # type: ignore[no-untyped-def]
    path = _saved(tmp_path)
    _rewrite(path, change)
    with _raises_naming(path, match):
        load_model(path)


def test_a_huge_unused_member_is_never_read(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = _saved(tmp_path)
    _rewrite(path, lambda a, m: a.update(junk=np.zeros(10, np.uint8)))
    read: list[str] = []
    original = np.lib.format.read_array

    def spy(fp, *args, **kwargs):  # type: ignore[no-untyped-def]
        read.append(getattr(fp, "name", "?"))
        return original(fp, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "read_array", spy)
    load_model(path)
    assert not any("junk" in name for name in read) and len(read) == 1 + 2 * 3


def test_a_member_declaring_a_huge_shape_is_refused_from_its_header(tmp_path: Path) -> None:
    """The header says (10**6, 10**6) float32 (4 TB): refused without allocating it."""
    import zipfile

    path = _saved(tmp_path)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})
    with zipfile.ZipFile(path, "a") as archive:
        names = archive.namelist()
    rebuilt = tmp_path / "huge.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(rebuilt, "w") as dst:
        for name in names:
            data = header.getvalue() if name == "W1.npy" else src.read(name)
            dst.writestr(name, data)
    with _raises_naming(rebuilt, "W1 is float32 .1000000, 1000000."):
        load_model(rebuilt)


def test_archive_level_errors_are_one_line(tmp_path: Path) -> None:
    import zipfile

    path = _saved(tmp_path)
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    odd = tmp_path / "lzma.npz"
    with zipfile.ZipFile(odd, "w", compression=zipfile.ZIP_LZMA) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    raw = bytearray(odd.read_bytes())
    # Claim an unknown compression method (99, AES) in every local and central header.
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        start = 0
        while (start := raw.find(signature, start)) != -1:
            raw[start + offset : start + offset + 2] = (99).to_bytes(2, "little")
            start += 4
    odd.write_bytes(bytes(raw))
    with _raises_naming(odd, "not a readable digitnet model file"):
        load_model(odd)


def test_only_regular_files_are_read(tmp_path: Path) -> None:
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    with _raises_naming(fifo, "not a regular file"):
        load_model(fifo)  # would block forever if it were opened
