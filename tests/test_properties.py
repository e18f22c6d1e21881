"""Property-based tests (hypothesis) and fuzzing of everything that reads untrusted input:
preprocessing, metrics, the IDX reader, model files, images. Whatever the bytes, the answer
is the value or the documented one-line error: never another exception, never a hang."""

from __future__ import annotations

import contextlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from digitnet import imageprep
from digitnet.data.idx import decompress, idx_bytes, parse_idx
from digitnet.data.preprocessing import MinMaxScaler, stratified_split
from digitnet.errors import DataError, ModelFileError
from digitnet.metrics import classification_metrics
from digitnet.model_io import TrainedModel, load_model, save_model
from digitnet.network import MLP

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


# ------------------------------------------------------------------------ preprocessing
@settings(deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 20), st.integers(1, 20))))
def test_scaling_maps_the_training_range_onto_zero_one(x: np.ndarray) -> None:
    if x.min() == x.max():
        with pytest.raises(ValueError, match="constant"):
            MinMaxScaler.fit(x)
        return
    out = MinMaxScaler.fit(x).transform(x, np.float64)
    # x*s - lo*s with s = 1/(hi - lo), for speed: [0, 1] up to a rounding error at the ends
    # (hypothesis found 6 -> 1.0000000000000002 for the range 1..6)
    assert abs(out.min()) <= 1e-12 and abs(out.max() - 1.0) <= 1e-12
    assert out.shape == x.shape


@given(st.lists(st.integers(0, 4), min_size=2, max_size=200), st.floats(0.05, 0.6),
       st.integers(0, 2**31))
def test_a_stratified_split_is_a_partition(labels: list[int], fraction: float,
                                           seed: int) -> None:
    y = np.array(labels)
    try:
        train, val = stratified_split(y, fraction, seed)
    except ValueError as exc:
        assert "leaves no training samples" in str(exc)
        return
    assert len(train) > 0
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(y)))
    again = stratified_split(y, fraction, seed)
    assert np.array_equal(again[1], val)  # seeded


# ------------------------------------------------------------------------------ metrics
@settings(deadline=None)
@given(st.integers(2, 6).flatmap(lambda k: st.tuples(
    st.just(k), st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)),
                         min_size=1, max_size=300))))
def test_metrics_agree_with_scikit_learn(case: tuple[int, list[tuple[int, int]]]) -> None:
    from sklearn import metrics as sk

    k, pairs = case
    y_true, y_pred = (np.array(v) for v in zip(*pairs, strict=True))
    names = [str(i) for i in range(k)]
    ours = classification_metrics(y_true, y_pred, names)
    labels = list(range(k))
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(y_true, y_pred))
    assert np.array_equal(ours["confusion_matrix"],
                          sk.confusion_matrix(y_true, y_pred, labels=labels))
    for avg in ("macro", "weighted"):
        p, r, f, _ = sk.precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                        average=avg, zero_division=0)
        assert (ours[f"precision_{avg}"], ours[f"recall_{avg}"], ours[f"f1_{avg}"]) == \
            pytest.approx((p, r, f))


# --------------------------------------------------------------------------- IDX reader
@given(arrays(np.uint8, st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple)))
def test_idx_round_trips(x: np.ndarray) -> None:
    assert np.array_equal(parse_idx(idx_bytes(x), "x", x.ndim), x)


@FUZZ
@given(st.binary(max_size=300), st.integers(1, 3))
def test_random_bytes_are_an_idx_file_or_a_data_error(data: bytes, ndim: int) -> None:
    with contextlib.suppress(DataError):
        parse_idx(decompress(data, "f"), "f", ndim)


@FUZZ
@given(st.data())
def test_mutated_idx_files_are_read_or_refused(data: st.DataObject) -> None:
    x = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    raw = bytearray(idx_bytes(x))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        out = parse_idx(bytes(raw[:cut]), "f", 3)
        assert out.size <= len(raw)  # never more than the file holds
    except DataError:
        pass


# ---------------------------------------------------------------------------- model files
def _model_bytes(tmp_path: Path) -> bytes:
    net = MLP(6, (5,), 3, seed=0)
    model = TrainedModel(net, MinMaxScaler(0.0, 255.0), ("a", "b", "c"), (2, 3))
    return save_model(model, tmp_path / "good.npz").read_bytes()


@FUZZ
@given(st.data())
def test_mutated_model_files_load_whole_or_are_refused(tmp_path: Path,
                                                       data: st.DataObject) -> None:
    raw = bytearray(_model_bytes(tmp_path))
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(len(raw) // 2, len(raw)))]
    path = tmp_path / "mutated.npz"
    path.write_bytes(bytes(raw))
    try:
        model = load_model(path)
    except ModelFileError as exc:
        assert str(exc).startswith(str(path))
        return
    assert all(np.isfinite(p).all() for p in model.network.parameters())


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes_are_not_a_model(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "random.npz"
    path.write_bytes(data)
    with pytest.raises(ModelFileError):
        load_model(path)


@FUZZ
@given(st.dictionaries(st.sampled_from(["W1", "b1", "W2", "b2", "extra"]),
                       arrays(st.sampled_from([np.float32, np.float64, np.int8]),
                              st.tuples(st.integers(0, 7), st.integers(1, 7))), max_size=5))
def test_members_of_any_shape_and_dtype_are_checked(tmp_path: Path,
                                                    members: dict[str, np.ndarray]) -> None:
    path = tmp_path / "model.npz"
    path.write_bytes(_model_bytes(tmp_path))
    with zipfile.ZipFile(path) as archive:
        original = {n: archive.read(n) for n in archive.namelist()}
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in original.items():
            if name[:-4] not in members:
                archive.writestr(name, content)
        for name, array in members.items():
            buffer = io.BytesIO()
            np.save(buffer, array)
            archive.writestr(f"{name}.npy", buffer.getvalue())
    with contextlib.suppress(ModelFileError):
        load_model(path)


# --------------------------------------------------------------------------------- images
def _png(size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("L", size, 255)
    image.paste(0, (10, 5, 20, 25))
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@FUZZ
@given(st.data())
def test_mutated_images_are_decoded_or_refused(data: st.DataObject) -> None:
    raw = bytearray(_png())
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(0, len(raw)))]
    budget = imageprep.ImageBudget(max_bytes=10_000, max_pixels=200_000, max_side=2000)
    try:
        prep = imageprep.preprocess_bytes(bytes(raw), budget=budget)
    except imageprep.ImageInputError:
        return
    assert np.isfinite(prep.image).all() and prep.image.shape == (28, 28)


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes_are_not_an_image(data: bytes) -> None:
    with contextlib.suppress(imageprep.ImageInputError):
        imageprep.preprocess_bytes(data)
