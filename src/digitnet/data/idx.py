"""Reader for the IDX file format of MNIST and Fashion-MNIST (gzipped or not).

An IDX file is a big-endian header followed by raw values::

    magic: 2 zero bytes, 1 type byte (0x08 = unsigned byte), 1 byte = number of dimensions
    dims:  one uint32 per dimension
    data:  prod(dims) values, row-major

Labels are ``idx1`` (``n``), images ``idx3`` (``n x 28 x 28``). Every way a file can be
wrong (bad magic, wrong type, a size that disagrees with the header, labels outside the
class range, image and label counts that differ) raises :class:`DataError` naming the file.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from digitnet.errors import DataError
from digitnet.fileio import atomic_write_bytes

GZIP_MAGIC = b"\x1f\x8b"
UBYTE = 0x08
MAX_BYTES = 1 << 31  # 2 GiB: far above any IDX data set this reads


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The file's content, decompressed when it is gzip (detected by content, not name)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decompress(raw, str(path))


# The largest IDX file digitnet reads is MNIST's training images, 47 MB uncompressed: a
# gzip stream that inflates beyond this (a "gzip bomb") is refused while inflating.
MAX_IDX_BYTES = 64 * 1024 * 1024


def decompress(raw: bytes, name: str, limit: int = MAX_IDX_BYTES) -> bytes:
    """``raw`` gunzipped when it is gzip (detected by its magic bytes), else as it is.

    Inflated in a stream that stops at ``limit`` bytes, so a small file that claims
    gigabytes never takes more memory than the limit."""
    if raw[:2] != GZIP_MAGIC:
        return raw
    out = bytearray()
    size, data = 0, raw
    try:
        while data:  # one gzip member after another, as gzip.decompress does
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            while not inflater.eof:
                before = len(data)
                chunk = inflater.decompress(data, min(1 << 20, limit + 1 - size))
                data = inflater.unconsumed_tail
                if not chunk and (not data or len(data) == before):
                    raise EOFError("compressed data ended before the end-of-stream marker")
                size += len(chunk)
                out += chunk
                if size > limit:
                    raise DataError(f"{name}: gzip data inflates to more than {limit:,} bytes "
                                    "(refused: no IDX file digitnet reads is that large)")
            data = inflater.unused_data
            if data[:2] != GZIP_MAGIC:  # trailing padding, as gzip allows
                break
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{name}: corrupt or truncated gzip data ({exc})") from None
    return bytes(out)


def parse_idx(data: bytes, name: str, ndim: int) -> NDArray[np.uint8]:
    """Parse IDX bytes into an array of ``ndim`` dimensions; ``name`` is used in errors."""
    if len(data) < 4:
        raise DataError(f"{name}: too short to be an IDX file ({len(data)} bytes)")
    zero, dtype_code, got_ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != UBYTE or got_ndim != ndim:
        raise DataError(
            f"{name}: bad IDX magic number 0x{data[:4].hex()} "
            f"(expected 0x0000080{ndim}: unsigned bytes, {ndim} dimension(s))"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    actual = len(data) - header
    if actual != expected or expected > MAX_BYTES:
        what = "truncated" if actual < expected else "has extra bytes"
        raise DataError(
            f"{name}: {what}: header says {'x'.join(map(str, dims))} = {expected} values, "
            f"file holds {actual}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_images(path: str | os.PathLike[str]) -> NDArray[np.uint8]:
    """Images ``(n, rows, cols)`` as uint8 from an ``idx3-ubyte`` file."""
    return parse_idx(read_bytes(path), str(path), ndim=3)


def read_labels(path: str | os.PathLike[str], n_classes: int = 10) -> NDArray[np.uint8]:
    """Labels ``(n,)`` as uint8 from an ``idx1-ubyte`` file; each must lie in ``0..n_classes-1``."""
    labels = parse_idx(read_bytes(path), str(path), ndim=1)
    if labels.size and labels.max() >= n_classes:
        bad = int(labels[labels >= n_classes][0])
        raise DataError(f"{path}: label {bad} outside 0-{n_classes - 1}")
    return labels


def read_pair(
    images_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    n_classes: int = 10,
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """Images and labels that belong together; their counts must agree."""
    images = read_images(images_path)
    labels = read_labels(labels_path, n_classes)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_path}: {images.shape[0]} images but {labels_path} has "
            f"{labels.shape[0]} labels"
        )
    return images, labels


def idx_bytes(array: NDArray[np.uint8]) -> bytes:
    """The uncompressed IDX encoding (header + values) of a uint8 array."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, UBYTE, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(
    path: str | os.PathLike[str], array: NDArray[np.uint8], compress: bool = True
) -> None:
    """Write a uint8 array as an IDX file (gzip if ``compress``), atomically (temp + rename)."""
    write_idx_bytes(path, idx_bytes(array), compress)


def write_idx_bytes(path: str | os.PathLike[str], payload: bytes, compress: bool = True) -> None:
    """Write an IDX encoding (from :func:`idx_bytes`), gzipped if ``compress``, atomically."""
    if compress:
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    atomic_write_bytes(Path(path), payload)


def md5_of(data: bytes) -> str:
    """Hex MD5 of ``data`` (as published for the uncompressed MNIST files)."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
