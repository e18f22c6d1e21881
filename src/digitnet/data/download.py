"""Downloading data sets: checksum-verified, atomic, with progress, bounded in time.

Two routes, tried in order by :func:`digitnet.data.datasets.load_dataset`:

1. OpenML through :func:`sklearn.datasets.fetch_openml` (``mnist_784`` / ``Fashion-MNIST``),
   converted to IDX files in the cache;
2. the four gzipped IDX files from public mirrors.

Either way the cached files are checked against the MD5 of their *uncompressed* content
(the checksums published for MNIST), so a re-compressed mirror is fine but a corrupted or
different file is not. Nothing half-downloaded ever lands in the cache: bytes go to a
temporary file that is renamed into place only after the checksum matches.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from digitnet.data.idx import decompress, idx_bytes, md5_of, parse_idx, write_idx_bytes
from digitnet.errors import DataError, DownloadError
from digitnet.fileio import atomic_path

if TYPE_CHECKING:
    from digitnet.data.datasets import IdxDatasetSpec

CHUNK = 1 << 16
DEFAULT_BUDGET_SECONDS = 15.0
# MNIST's largest file (training images) is 9.9 MB gzipped, Fashion-MNIST's 26 MB: a mirror
# that sends (or announces) more is refused before it can fill the memory.
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024


class Deadline:
    """A time budget shared by all download attempts, so that no network means a quick failure."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(self.end - time.monotonic(), 0.0)

    def timeout(self, cap: float = 10.0) -> float:
        """Socket timeout for the next attempt: what is left of the budget, at most ``cap``."""
        left = self.remaining()
        if left <= 0.05:
            raise DownloadError("download time budget exhausted")
        return min(left, cap)


def _set_read_timeout(response: object, seconds: float) -> None:
    """Make the next read of ``response`` give up after ``seconds`` (what is left of the
    deadline): urllib's timeout is per read, so a byte every few seconds would never end."""
    fp = getattr(response, "fp", None)
    raw = getattr(fp, "raw", None)
    sock = getattr(raw, "_sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"network unreachable ({exc.reason})"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(exc, http.client.IncompleteRead):
        return f"truncated response ({len(exc.partial)} bytes received)"
    return str(exc) or type(exc).__name__


def _progress(total: int | None, desc: str, enabled: bool):  # type: ignore[no-untyped-def]
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
        disable=not enabled, leave=False,
    )


def verify_idx_bytes(raw: bytes, expected_md5: str | None, name: str, ndim: int) -> None:
    """Check a downloaded file: valid (optionally gzipped) IDX whose uncompressed MD5 matches."""
    try:
        data = decompress(raw, name)
    except DataError as exc:
        raise DownloadError(str(exc)) from None
    if expected_md5 is not None and md5_of(data) != expected_md5:
        raise DownloadError(
            f"{name}: checksum mismatch (MD5 {md5_of(data)}, expected {expected_md5})"
        )
    try:
        parse_idx(data, name, ndim)
    except DataError as exc:
        raise DownloadError(str(exc)) from None


def download_file(
    url: str,
    dest: Path,
    expected_md5: str | None,
    ndim: int,
    timeout: float = 10.0,
    progress: bool = True,
    deadline: Deadline | None = None,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
) -> Path:
    """Download ``url`` to ``dest`` after verifying it as IDX with the given uncompressed MD5.

    Raises :class:`DownloadError` (naming the URL) on network errors, HTTP errors,
    truncated responses, checksum mismatches, a response over ``max_bytes`` (announced or
    sent) or inflating past :data:`digitnet.data.idx.MAX_IDX_BYTES`, and when ``deadline``
    runs out during the transfer (a mirror that trickles bytes cannot outlive it);
    ``dest`` is then left untouched.
    """
    deadline = deadline or Deadline(max(timeout, 1.0) * 6)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "digitnet"})
        with urllib.request.urlopen(request, timeout=min(timeout, deadline.timeout())
                                    ) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > max_bytes:
                raise DownloadError(f"{url}: announces {total:,} bytes, over the limit of "
                                    f"{max_bytes:,}")
            chunks, size = [], 0
            with _progress(total, dest.name, progress) as bar:
                while True:
                    _set_read_timeout(response, deadline.timeout(timeout))
                    chunk = response.read1(CHUNK)  # what has arrived: never waits for more
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > max_bytes:
                        raise DownloadError(f"{url}: sent more than the limit of "
                                            f"{max_bytes:,} bytes")
                    chunks.append(chunk)
                    bar.update(len(chunk))
    except DownloadError as exc:
        if str(exc).startswith(url):
            raise
        raise DownloadError(f"{url}: {exc} (the transfer took too long)") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise DownloadError(f"{url}: {_describe(exc)}") from None
    raw = b"".join(chunks)
    if total is not None and len(raw) != total:
        raise DownloadError(f"{url}: truncated response ({len(raw)} of {total} bytes)")
    verify_idx_bytes(raw, expected_md5, url, ndim)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(raw)
    return dest


def download_from_mirrors(
    spec: IdxDatasetSpec,
    folder: Path,
    mirrors: Sequence[str],
    deadline: Deadline,
    progress: bool = True,
) -> None:
    """Fetch the four IDX files of ``spec`` into ``folder``, trying each mirror in turn."""
    errors: list[str] = []
    for mirror in mirrors:
        try:
            for key, filename in spec.files.items():
                dest = folder / f"{filename}.gz"
                if dest.exists():
                    continue
                url = mirror.rstrip("/") + f"/{filename}.gz"
                download_file(
                    url, dest, spec.md5.get(key), spec.ndim(key), deadline.timeout(), progress,
                    deadline,
                )
            return
        except DownloadError as exc:
            errors.append(str(exc))
            if deadline.remaining() <= 0.05:
                break
    raise DownloadError("; ".join(errors) or "no mirrors configured")


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Give urllib calls made deep inside scikit-learn a timeout (they pass none)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def download_from_openml(
    spec: IdxDatasetSpec, folder: Path, deadline: Deadline, progress: bool = True
) -> None:
    """Fetch ``spec`` from OpenML via scikit-learn and store it as verified IDX files.

    OpenML's ``mnist_784`` lists the 60,000 training images first and the 10,000 test
    images last, in the original order, so the IDX files written here are byte-for-byte
    the published ones; their MD5 is checked like a mirror download.
    """
    if spec.openml_name is None:
        raise DownloadError(f"{spec.name} is not on OpenML")
    from sklearn.datasets import fetch_openml

    if progress:
        from tqdm.auto import tqdm

        tqdm.write(f"Downloading {spec.openml_name} from OpenML ...")
    try:
        # scikit-learn requires n_retries >= 1 (0 is rejected before any request is made);
        # its retry and cache warnings would break the one-line error, so they are muted.
        with _socket_timeout(deadline.timeout()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x, y = fetch_openml(
                spec.openml_name,
                version=spec.openml_version,
                data_home=str(folder / "openml"),
                return_X_y=True,
                as_frame=False,
                parser="liac-arff",
                n_retries=1,
                delay=0.1,
            )
    except Exception as exc:  # scikit-learn wraps network errors in many ways
        raise DownloadError(f"OpenML {spec.openml_name}: {_describe(exc)}") from None
    n_total = spec.n_train + spec.n_test
    x = np.asarray(x)
    if x.shape != (n_total, int(np.prod(spec.image_shape))):
        raise DownloadError(
            f"OpenML {spec.openml_name}: expected {n_total} x {np.prod(spec.image_shape)} "
            f"values, got {x.shape}"
        )
    images = x.astype(np.uint8).reshape(n_total, *spec.image_shape)
    labels = np.asarray(y).astype(np.int64).astype(np.uint8)
    parts = {
        "train_images": images[: spec.n_train],
        "train_labels": labels[: spec.n_train],
        "test_images": images[spec.n_train :],
        "test_labels": labels[spec.n_train :],
    }
    payloads = {key: idx_bytes(array) for key, array in parts.items()}
    for key, payload in payloads.items():  # check all before writing any
        expected = spec.md5.get(key)
        if expected is not None and md5_of(payload) != expected:
            raise DownloadError(
                f"OpenML {spec.openml_name}: {key} differ from the published files (MD5 mismatch)"
            )
    for key, payload in payloads.items():
        write_idx_bytes(folder / f"{spec.files[key]}.gz", payload)

