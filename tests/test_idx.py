"""The IDX reader on small files written here: good ones, and every way a file can be wrong."""

from __future__ import annotations

import gzip
import hashlib
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from digitnet.data.idx import (
    idx_bytes,
    md5_of,
    parse_idx,
    read_bytes,
    read_images,
    read_labels,
    read_pair,
    write_idx,
)
from digitnet.errors import DataError

IMAGES = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
LABELS = np.array([7, 0, 9], dtype=np.uint8)


def _header(ndim: int, dims: tuple[int, ...], type_byte: int = 0x08) -> bytes:
    return struct.pack(">HBB", 0, type_byte, ndim) + struct.pack(f">{ndim}I", *dims)


def _write(path: Path, payload: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def _raises_naming(path: Path, match: str = ""):  # type: ignore[no-untyped-def]
    """pytest.raises(DataError) whose message starts with the file name (and has ``match``)."""
    return pytest.raises(DataError, match=re.escape(str(path)) + ".*" + match)


def test_idx_bytes_layout() -> None:
    raw = idx_bytes(LABELS)
    assert raw[:4] == b"\x00\x00\x08\x01"
    assert raw[4:8] == (3).to_bytes(4, "big")
    assert raw[8:] == LABELS.tobytes()
    raw3 = idx_bytes(IMAGES)
    assert raw3[:4] == b"\x00\x00\x08\x03"
    assert struct.unpack(">3I", raw3[4:16]) == (3, 4, 5)


@pytest.mark.parametrize("gz", [False, True])
def test_good_files_round_trip(tmp_path: Path, gz: bool) -> None:
    images = _write(tmp_path / "images", idx_bytes(IMAGES), gz)
    labels = _write(tmp_path / "labels", idx_bytes(LABELS), gz)
    x, y = read_pair(images, labels)
    np.testing.assert_array_equal(x, IMAGES)
    np.testing.assert_array_equal(y, LABELS)
    assert x.dtype == np.uint8 and y.dtype == np.uint8


@pytest.mark.parametrize("compress", [False, True])
def test_write_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    path = tmp_path / "images.idx"
    write_idx(path, IMAGES, compress=compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    np.testing.assert_array_equal(read_images(path), IMAGES)
    assert [p.name for p in tmp_path.iterdir()] == ["images.idx"]  # no temporary left


def test_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    disguised = _write(tmp_path / "labels.idx", idx_bytes(LABELS), gz=True)
    plain_named_gz = _write(tmp_path / "labels.gz", idx_bytes(LABELS), gz=False)
    np.testing.assert_array_equal(read_labels(disguised), LABELS)
    np.testing.assert_array_equal(read_labels(plain_named_gz), LABELS)


def test_md5_of() -> None:
    assert md5_of(b"digitnet") == hashlib.md5(b"digitnet").hexdigest()


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope-idx1-ubyte"
    with _raises_naming(path, "not found"):
        read_labels(path)


@pytest.mark.parametrize("gz", [False, True])
def test_wrong_magic(tmp_path: Path, gz: bool) -> None:
    payload = b"\x12\x34" + idx_bytes(LABELS)[2:]
    path = _write(tmp_path / "labels", payload, gz)
    with _raises_naming(path, "magic"):
        read_labels(path)


def test_wrong_dtype_byte(tmp_path: Path) -> None:
    payload = _header(1, (3,), type_byte=0x0D) + LABELS.tobytes()  # 0x0D = float32
    path = _write(tmp_path / "labels", payload)
    with _raises_naming(path, "magic.*0x00000d01"):
        read_labels(path)


def test_wrong_number_of_dimensions(tmp_path: Path) -> None:
    path = _write(tmp_path / "labels-as-images", idx_bytes(LABELS))
    with _raises_naming(path, "3 dimension"):
        read_images(path)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_data(tmp_path: Path, gz: bool) -> None:
    path = _write(tmp_path / "images", idx_bytes(IMAGES)[:-7], gz)
    with _raises_naming(path, "truncated.*3x4x5 = 60 values, file holds 53"):
        read_images(path)


def test_extra_bytes(tmp_path: Path) -> None:
    path = _write(tmp_path / "labels", idx_bytes(LABELS) + b"\x00\x01")
    with _raises_naming(path, "extra bytes"):
        read_labels(path)


@pytest.mark.parametrize("payload", [b"", b"\x00\x00", b"\x00\x00\x08\x03\x00\x00\x00\x03"])
def test_too_short_or_truncated_header(tmp_path: Path, payload: bytes) -> None:
    path = _write(tmp_path / "images", payload)
    with _raises_naming(path):
        read_images(path)


def test_truncated_gzip(tmp_path: Path) -> None:
    compressed = gzip.compress(idx_bytes(IMAGES))
    path = tmp_path / "images.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with _raises_naming(path, "gzip"):
        read_images(path)


def test_corrupt_gzip(tmp_path: Path) -> None:
    compressed = bytearray(gzip.compress(idx_bytes(IMAGES) * 3))
    compressed[15:25] = b"\xff" * 10
    path = tmp_path / "images.gz"
    path.write_bytes(bytes(compressed))
    with _raises_naming(path):
        read_images(path)


def test_labels_outside_range(tmp_path: Path) -> None:
    path = _write(tmp_path / "labels", idx_bytes(np.array([1, 10, 3], dtype=np.uint8)))
    with _raises_naming(path, "label 10 outside 0-9"):
        read_labels(path)
    np.testing.assert_array_equal(read_labels(path, n_classes=11), [1, 10, 3])


def test_image_and_label_counts_differ(tmp_path: Path) -> None:
    images = _write(tmp_path / "images", idx_bytes(IMAGES))
    labels = _write(tmp_path / "labels", idx_bytes(LABELS[:2]))
    with pytest.raises(DataError, match=rf"{re.escape(str(images))}: 3 images but "
                       rf"{re.escape(str(labels))} has 2 labels"):
        read_pair(images, labels)


def test_unreadable_path_is_a_data_error(tmp_path: Path) -> None:
    with _raises_naming(tmp_path, "cannot read"):
        read_bytes(tmp_path)  # a folder, not a file


def test_parse_idx_uses_the_given_name() -> None:
    with pytest.raises(DataError, match=r"^https://example\.org/x\.gz: "):
        parse_idx(b"\x00", "https://example.org/x.gz", 1)
