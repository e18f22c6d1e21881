"""Finding and loading data sets (folders, cache, digits) and preprocessing."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import synthetic_idx, write_idx_folder

from digitnet.data import load_dataset
from digitnet.data.datasets import (
    FASHION_MNIST,
    IDX_DATASETS,
    IDX_FILES,
    MNIST,
    _check_identity,
    cache_root,
    load_idx_dataset,
)
from digitnet.data.idx import idx_bytes, md5_of
from digitnet.data.preprocessing import MinMaxScaler, one_hot, stratified_split
from digitnet.errors import DataError, DownloadError

MNIST_LIKE = synthetic_idx(n_train=20, n_test=10, shape=(28, 28), seed=1)


def test_folder_with_plain_or_gzipped_files(tmp_path: Path) -> None:
    for compress in (True, False):
        folder = write_idx_folder(tmp_path / str(compress), MNIST_LIKE, compress=compress)
        data = load_dataset("mnist", folder, download_ok=False, progress=False)
        assert data.source == str(folder)
        assert data.x_train.shape == (20, 784) and data.x_test.shape == (10, 784)
        assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int64
        np.testing.assert_array_equal(data.x_train, MNIST_LIKE.train_images.reshape(20, -1))
        np.testing.assert_array_equal(data.y_test, MNIST_LIKE.test_labels)
        assert data.n_features == 784 and data.n_classes == 10
        assert data.class_names == tuple("0123456789")


def test_files_in_a_subfolder_named_after_the_data_set(tmp_path: Path) -> None:
    write_idx_folder(tmp_path / "mnist", MNIST_LIKE)
    data = load_dataset("mnist", tmp_path, download_ok=False, progress=False)
    np.testing.assert_array_equal(data.y_train, MNIST_LIKE.train_labels)


def test_data_dir_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_idx_folder(tmp_path / "data", MNIST_LIKE)
    monkeypatch.setenv("DIGITNET_DATA_DIR", str(folder))
    data = load_dataset("mnist", download_ok=False, progress=False)
    assert data.source == str(folder)


def test_missing_data_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=re.escape(str(missing)) + r": data folder \(--data-dir\)"):
        load_dataset("mnist", missing, progress=False)


def test_missing_files_are_listed(tmp_path: Path) -> None:
    folder = tmp_path / "partial"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(DataError) as info:
        load_dataset("mnist", folder, progress=False)
    message = str(info.value)
    assert message.startswith(f"{folder}: data folder (--data-dir) lacks ")
    for stem in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert stem in message
    assert "train-images" not in message


def test_env_data_dir_without_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITNET_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match=r"DIGITNET_DATA_DIR.*lacks"):
        load_dataset("mnist", progress=False)


def test_env_data_dir_with_mnist_does_not_block_fashion_mnist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DIGITNET_DATA_DIR usually holds MNIST; Fashion-MNIST then comes from elsewhere."""
    _pretend_mnist_is(monkeypatch, MNIST_LIKE)
    spec = dataclasses.replace(FASHION_MNIST, system_dirs=())
    monkeypatch.setenv("DIGITNET_DATA_DIR", str(write_idx_folder(tmp_path / "m", MNIST_LIKE)))
    with pytest.raises(DownloadError, match="fashion-mnist not found locally"):
        load_idx_dataset(spec, download_ok=False, progress=False)
    fashion = synthetic_idx(n_train=10, n_test=10, shape=(28, 28), seed=9)
    write_idx_folder(cache_root() / "fashion-mnist", fashion)
    data = load_idx_dataset(spec, download_ok=False, progress=False)
    assert data.source == str(cache_root() / "fashion-mnist")
    np.testing.assert_array_equal(data.y_train, fashion.train_labels)
    # Given explicitly, the same folder is an error that says what it holds.
    with pytest.raises(DataError, match="these are the mnist files"):
        load_idx_dataset(spec, tmp_path / "m", download_ok=False, progress=False)


def test_cache_is_used_and_nothing_found_gives_the_offline_hint(tmp_path: Path) -> None:
    spec = dataclasses.replace(MNIST, name="tiny", image_shape=(4, 4))
    with pytest.raises(DownloadError) as info:
        load_idx_dataset(spec, download_ok=False, progress=False)
    message = str(info.value)
    assert "\n" not in message
    for hint in ("--data-dir", "DIGITNET_DATA_DIR", "--dataset digits"):
        assert hint in message
    arrays = synthetic_idx(shape=(4, 4))
    write_idx_folder(cache_root() / "tiny", arrays)
    data = load_idx_dataset(spec, download_ok=False, progress=False)
    assert data.source == str(cache_root() / "tiny")


def test_wrong_image_size_is_refused(tmp_path: Path) -> None:
    folder = write_idx_folder(tmp_path, synthetic_idx(shape=(8, 8)))
    with pytest.raises(DataError, match=r"t.*-images-idx3-ubyte.gz: expected 28x28 images, got"):
        load_dataset("mnist", folder, progress=False)


def test_inconsistent_counts_in_a_folder_are_refused(tmp_path: Path) -> None:
    arrays = dataclasses.replace(MNIST_LIKE, test_labels=MNIST_LIKE.test_labels[:-1])
    folder = write_idx_folder(tmp_path, arrays)
    with pytest.raises(DataError, match=r"10 images but .*t10k-labels-idx1-ubyte\.gz has 9 labels"):
        load_dataset("mnist", folder, progress=False)


def _pretend_mnist_is(monkeypatch: pytest.MonkeyPatch, arrays: object) -> None:
    """Give the MNIST spec the checksum of these synthetic test labels."""
    digest = md5_of(idx_bytes(arrays.test_labels))  # type: ignore[attr-defined]
    fake = dataclasses.replace(MNIST, md5={**MNIST.md5, "test_labels": digest})
    monkeypatch.setitem(IDX_DATASETS, "mnist", fake)


def test_check_identity_refuses_mnist_given_for_fashion_mnist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pretend_mnist_is(monkeypatch, MNIST_LIKE)
    folder = write_idx_folder(tmp_path, MNIST_LIKE)
    files = {key: folder / f"{stem}.gz" for key, stem in IDX_FILES.items()}
    with pytest.raises(DataError, match="these are the mnist files, not fashion-mnist"):
        _check_identity(FASHION_MNIST, files)
    _check_identity(IDX_DATASETS["mnist"], files)  # the right data set passes
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: .*--dataset mnist"):
        load_dataset("fashion-mnist", folder, progress=False)


def test_real_mnist_given_for_fashion_mnist(mnist_dir: Path) -> None:
    with pytest.raises(DataError, match="these are the mnist files, not fashion-mnist"):
        load_dataset("fashion-mnist", mnist_dir, progress=False)


def test_real_mnist_in_env_lets_fashion_mnist_look_elsewhere(
    mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGITNET_DATA_DIR", str(mnist_dir))
    spec = dataclasses.replace(FASHION_MNIST, system_dirs=())
    with pytest.raises(DownloadError, match="fashion-mnist not found locally"):
        load_idx_dataset(spec, download_ok=False, progress=False)


def test_unknown_data_set_name() -> None:
    with pytest.raises(DataError, match=r"'emnist'.*mnist, fashion-mnist, digits"):
        load_dataset("emnist")


def test_digits_loads_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the digits data set must not touch the network")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    data = load_dataset("digits")
    assert data.n_features == 64 and data.image_shape == (8, 8)
    assert len(data.x_train) + len(data.x_test) == 1797
    assert len(data.x_test) == 360  # 20 %
    assert data.x_train.dtype == np.uint8 and data.x_train.max() == 16
    assert set(np.unique(data.y_train)) == set(range(10)) == set(np.unique(data.y_test))
    # Stratified: every class keeps its share in the test set (within one image).
    full = np.bincount(np.concatenate([data.y_train, data.y_test]), minlength=10)
    np.testing.assert_allclose(np.bincount(data.y_test, minlength=10), full * 0.2, atol=1)
    again = load_dataset("digits")
    np.testing.assert_array_equal(again.x_train, data.x_train)


# --------------------------------------------------------------------- preprocessing


def test_minmax_scaler_maps_the_training_range_onto_unit_interval() -> None:
    x = np.array([[0, 128, 255], [10, 20, 30]], dtype=np.uint8)
    scaler = MinMaxScaler.fit(x)
    assert (scaler.lo, scaler.hi) == (0.0, 255.0)
    np.testing.assert_allclose(scaler.transform(x), x / 255.0, rtol=1e-6)
    shifted = MinMaxScaler.fit(np.array([[2, 4, 10]]))
    out = shifted.transform(np.array([[2, 6, 10, 18]]), np.float64)
    np.testing.assert_allclose(out, [[0.0, 0.5, 1.0, 2.0]])
    buffer = np.empty((1, 3), dtype=np.float32)
    assert shifted.transform(np.array([[2, 4, 10]]), out=buffer) is buffer
    assert MinMaxScaler.from_dict(scaler.to_dict()) == scaler
    with pytest.raises(ValueError, match="constant"):
        MinMaxScaler.fit(np.full((3, 3), 7))


def test_one_hot() -> None:
    np.testing.assert_array_equal(one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match=r"0\.\.2"):
        one_hot(np.array([3]), 3)


def test_stratified_split_keeps_class_shares_and_is_seeded() -> None:
    labels = np.repeat(np.arange(5), [100, 60, 40, 20, 10])
    train, val = stratified_split(labels, 0.1, seed=3)
    assert len(np.intersect1d(train, val)) == 0
    assert len(train) + len(val) == len(labels)
    np.testing.assert_array_equal(np.bincount(labels[val]), [10, 6, 4, 2, 1])
    again_train, again_val = stratified_split(labels, 0.1, seed=3)
    np.testing.assert_array_equal(val, again_val)
    np.testing.assert_array_equal(train, again_train)
    _, other = stratified_split(labels, 0.1, seed=4)
    assert not np.array_equal(val, other)
    with pytest.raises(ValueError, match="fraction"):
        stratified_split(labels, 0.0, seed=0)
