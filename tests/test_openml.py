"""The OpenML route (scikit-learn's ``fetch_openml``) with the network boundary replaced.

``sklearn.datasets._openml.urlopen`` is swapped for a fake OpenML server that answers the
requests ``fetch_openml`` makes for a data set given by name and version (gzipped, as
OpenML does):

1. ``api/v1/json/data/list/data_name/<name>/limit/2/data_version/<v>``: the data-set id;
2. ``api/v1/json/data/<id>``: the description, with the ARFF file's URL and MD5;
3. ``api/v1/json/data/features/<id>``: the columns (pixels numeric, ``class`` nominal target);
4. ``api/v1/json/data/qualities/<id>``: ``NumberOfInstances``;
5. the ARFF file itself.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import urllib.error
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import closed_port_url, http_server, mirror_routes, synthetic_idx

from digitnet.data.datasets import IDX_FILES, MNIST, IdxDatasetSpec, cache_root, load_idx_dataset
from digitnet.data.download import Deadline, download_from_openml
from digitnet.data.idx import idx_bytes, md5_of, read_images, read_labels
from digitnet.errors import DownloadError

API = "https://www.openml.org/api/v1/json/data/"
DATA_ID = 4242
N_TRAIN, N_TEST, SHAPE = 6, 4, (2, 2)


def _synthetic(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(N_TRAIN + N_TEST, *SHAPE), dtype=np.uint8)
    labels = rng.integers(0, 10, size=N_TRAIN + N_TEST).astype(np.uint8)
    return images, labels


IMAGES, LABELS = _synthetic()


def _spec(images: np.ndarray = IMAGES, labels: np.ndarray = LABELS) -> IdxDatasetSpec:
    parts = {
        "train_images": images[:N_TRAIN], "train_labels": labels[:N_TRAIN],
        "test_images": images[N_TRAIN:], "test_labels": labels[N_TRAIN:],
    }
    return dataclasses.replace(
        MNIST, name="tiny-openml", title="tiny OpenML digits", openml_name="Tiny_Digits",
        openml_version=1, n_train=N_TRAIN, n_test=N_TEST, image_shape=SHAPE,
        md5={key: md5_of(idx_bytes(array)) for key, array in parts.items()},
        mirrors=(),
    )


def _arff(images: np.ndarray, labels: np.ndarray) -> bytes:
    n_pixels = int(np.prod(images.shape[1:]))
    lines = ["% synthetic digits", "@RELATION tiny_digits"]
    lines += [f"@ATTRIBUTE pixel{i} NUMERIC" for i in range(1, n_pixels + 1)]
    lines += ["@ATTRIBUTE class {0,1,2,3,4,5,6,7,8,9}", "@DATA"]
    for image, label in zip(images.reshape(len(images), -1), labels, strict=True):
        lines.append(",".join(map(str, image.tolist())) + f",{label}")
    return ("\n".join(lines) + "\n").encode()


def _feature(index: int, name: str, data_type: str, target: bool) -> dict[str, Any]:
    feature: dict[str, Any] = {
        "index": str(index), "name": name, "data_type": data_type,
        "is_target": "true" if target else "false", "is_ignore": "false",
        "is_row_identifier": "false", "number_of_missing_values": "0",
    }
    if data_type == "nominal":
        feature["nominal_value"] = [str(d) for d in range(10)]
    return feature


class _Response:
    """What ``urlopen`` returns: a gzip-encoded body, as OpenML serves it."""

    def __init__(self, body: bytes) -> None:
        self._stream = io.BytesIO(gzip.compress(body))

    def read(self, amt: int = -1) -> bytes:
        return self._stream.read(amt)

    def info(self) -> dict[str, str]:
        return {"Content-Encoding": "gzip"}

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakeOpenML:
    """Serves one data set; ``asked`` lists every URL requested."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, arff_md5: str | None = None,
                 name: str = "tiny_digits") -> None:
        arff = _arff(images, labels)
        data_url = f"https://api.openml.org/data/v1/download/99{DATA_ID}/{name}.arff"
        n_pixels = int(np.prod(images.shape[1:]))
        features = [_feature(i, f"pixel{i + 1}", "numeric", False) for i in range(n_pixels)]
        features.append(_feature(n_pixels, "class", "nominal", True))
        description = {
            "id": str(DATA_ID), "name": name, "version": "1", "description": "synthetic",
            "format": "ARFF", "url": data_url, "file_id": f"99{DATA_ID}",
            "default_target_attribute": "class", "status": "active",
            "md5_checksum": arff_md5 or hashlib.md5(arff).hexdigest(),
        }
        self.routes: dict[str, bytes] = {
            f"{API}list/data_name/{name}/limit/2/data_version/1": json.dumps(
                {"data": {"dataset": [{"did": DATA_ID, "name": name, "version": 1,
                                       "status": "active", "format": "ARFF"}]}}).encode(),
            f"{API}{DATA_ID}": json.dumps({"data_set_description": description}).encode(),
            f"{API}features/{DATA_ID}": json.dumps(
                {"data_features": {"feature": features}}).encode(),
            f"{API}qualities/{DATA_ID}": json.dumps({"data_qualities": {"quality": [
                {"name": "NumberOfInstances", "value": f"{len(images)}.0"},
                {"name": "NumberOfFeatures", "value": f"{n_pixels + 1}.0"},
            ]}}).encode(),
            data_url: arff,
        }
        self.asked: list[str] = []

    def urlopen(self, request: Any, *args: Any, **kwargs: Any) -> _Response:
        url = getattr(request, "full_url", request)
        self.asked.append(url)
        if url not in self.routes:
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)  # type: ignore[arg-type]
        return _Response(self.routes[url])


@pytest.fixture
def fake_openml(monkeypatch: pytest.MonkeyPatch) -> FakeOpenML:
    server = FakeOpenML(IMAGES, LABELS)
    monkeypatch.setattr("sklearn.datasets._openml.urlopen", server.urlopen)
    return server


def _idx_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "idx" in p.name) if folder.exists() else []


def test_openml_download_writes_idx_files_with_the_right_split(
    fake_openml: FakeOpenML, tmp_path: Path
) -> None:
    download_from_openml(_spec(), tmp_path, Deadline(30), progress=False)
    assert set(fake_openml.routes) <= set(fake_openml.asked)
    assert _idx_files(tmp_path) == sorted(f"{stem}.gz" for stem in IDX_FILES.values())
    files = {key: tmp_path / f"{stem}.gz" for key, stem in IDX_FILES.items()}
    np.testing.assert_array_equal(read_images(files["train_images"]), IMAGES[:N_TRAIN])
    np.testing.assert_array_equal(read_labels(files["train_labels"]), LABELS[:N_TRAIN])
    np.testing.assert_array_equal(read_images(files["test_images"]), IMAGES[N_TRAIN:])
    np.testing.assert_array_equal(read_labels(files["test_labels"]), LABELS[N_TRAIN:])
    # Byte for byte the IDX encoding that the spec's checksums describe.
    for key, path in files.items():
        assert md5_of(gzip.decompress(path.read_bytes())) == _spec().md5[key]


def test_load_idx_dataset_uses_openml_before_the_mirrors(fake_openml: FakeOpenML) -> None:
    dataset = load_idx_dataset(_spec(), mirrors=[closed_port_url()], progress=False)
    cache = cache_root() / "tiny-openml"
    assert dataset.source == f"downloaded to {cache}"
    np.testing.assert_array_equal(dataset.x_train, IMAGES[:N_TRAIN].reshape(N_TRAIN, -1))
    np.testing.assert_array_equal(dataset.y_test, LABELS[N_TRAIN:])
    # The next load comes from the cache, without asking OpenML again.
    asked = len(fake_openml.asked)
    again = load_idx_dataset(_spec(), mirrors=[closed_port_url()], progress=False)
    assert again.source == str(cache)
    assert len(fake_openml.asked) == asked


def test_openml_data_that_differ_from_the_published_files(
    fake_openml: FakeOpenML, tmp_path: Path
) -> None:
    other_images = IMAGES.copy()
    other_images[0, 0, 0] ^= 1
    spec = _spec(images=other_images)  # checksums of slightly different images
    with pytest.raises(DownloadError, match=r"OpenML Tiny_Digits: train_images differ .*MD5"):
        download_from_openml(spec, tmp_path, Deadline(30), progress=False)
    assert _idx_files(tmp_path) == []


def test_corrupt_openml_download_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = FakeOpenML(IMAGES, LABELS, arff_md5="0" * 32)  # ARFF does not match its MD5
    monkeypatch.setattr("sklearn.datasets._openml.urlopen", server.urlopen)
    with pytest.raises(DownloadError, match=r"^OpenML Tiny_Digits: .*md5"):
        download_from_openml(_spec(), tmp_path, Deadline(30), progress=False)
    assert _idx_files(tmp_path) == []


def test_openml_data_of_the_wrong_size(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    server = FakeOpenML(IMAGES[:-1], LABELS[:-1])
    monkeypatch.setattr("sklearn.datasets._openml.urlopen", server.urlopen)
    with pytest.raises(DownloadError, match="expected 10 x 4 values, got \\(9, 4\\)"):
        download_from_openml(_spec(), tmp_path, Deadline(30), progress=False)
    assert _idx_files(tmp_path) == []


def test_openml_unknown_data_set(fake_openml: FakeOpenML, tmp_path: Path) -> None:
    spec = dataclasses.replace(_spec(), openml_name="no_such_set")
    with pytest.raises(DownloadError, match=r"^OpenML no_such_set: ") as info:
        download_from_openml(spec, tmp_path, Deadline(30), progress=False)
    assert "\n" not in str(info.value)


def test_spec_without_openml_name(tmp_path: Path) -> None:
    spec = dataclasses.replace(_spec(), openml_name=None)
    with pytest.raises(DownloadError, match="not on OpenML"):
        download_from_openml(spec, tmp_path, Deadline(30), progress=False)


def test_openml_failure_falls_back_to_mirrors(monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = synthetic_idx(n_train=N_TRAIN, n_test=N_TEST, shape=SHAPE, seed=3)
    spec = dataclasses.replace(_spec(), md5=arrays.md5())
    server = FakeOpenML(IMAGES[:-1], LABELS[:-1])  # wrong size: the OpenML route fails
    monkeypatch.setattr("sklearn.datasets._openml.urlopen", server.urlopen)
    with http_server(mirror_routes(arrays)) as mirror:
        dataset = load_idx_dataset(spec, mirrors=[mirror.url], progress=False)
    assert server.asked
    np.testing.assert_array_equal(dataset.y_train, arrays.train_labels)
