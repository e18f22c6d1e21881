"""Downloads against a local HTTP server on 127.0.0.1: checksums, truncation, errors, timeouts,
mirror fallback, and the whole download -> cache -> load path."""

from __future__ import annotations

import dataclasses
import gzip
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    Reply,
    closed_port_url,
    http_server,
    mirror_routes,
    synthetic_idx,
)

from digitnet.data.datasets import IDX_FILES, MNIST, cache_root, load_idx_dataset
from digitnet.data.download import Deadline, download_file, download_from_mirrors
from digitnet.data.idx import idx_bytes, md5_of
from digitnet.errors import DownloadError

LABELS = np.array([3, 1, 4, 1, 5, 9, 2, 6], dtype=np.uint8)
RAW = idx_bytes(LABELS)
GZ = gzip.compress(RAW, mtime=0)
GOOD_MD5 = md5_of(RAW)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_file_lands_in_destination(tmp_path: Path) -> None:
    with http_server({"/labels.gz": Reply(GZ), "/labels": Reply(RAW)}) as server:
        dest = download_file(server.url + "labels.gz", tmp_path / "a.gz", GOOD_MD5, 1,
                             timeout=5, progress=False)
        plain = download_file(server.url + "labels", tmp_path / "b", GOOD_MD5, 1,
                              timeout=5, progress=False)
    assert dest.read_bytes() == GZ  # stored as served; the MD5 is of the uncompressed content
    assert plain.read_bytes() == RAW
    assert _leftovers(tmp_path) == ["a.gz", "b"]


def test_progress_bar_does_not_break_the_download(tmp_path: Path) -> None:
    with http_server({"/labels.gz": Reply(GZ)}) as server:
        download_file(server.url + "labels.gz", tmp_path / "a.gz", GOOD_MD5, 1, timeout=5,
                      progress=True)
    assert (tmp_path / "a.gz").read_bytes() == GZ


def _assert_fails_cleanly(tmp_path: Path, url: str, match: str, md5: str = GOOD_MD5,
                          timeout: float = 5.0) -> None:
    """The download fails with a DownloadError naming the URL; an old file survives intact."""
    dest = tmp_path / "labels.gz"
    dest.write_bytes(b"old content")
    with pytest.raises(DownloadError, match=f"^{url}: .*{match}"):
        download_file(url, dest, md5, 1, timeout=timeout, progress=False)
    assert dest.read_bytes() == b"old content"
    assert _leftovers(tmp_path) == ["labels.gz"]


def test_checksum_mismatch(tmp_path: Path) -> None:
    other = gzip.compress(idx_bytes(LABELS[::-1].copy()))
    with http_server({"/labels.gz": Reply(other)}) as server:
        _assert_fails_cleanly(tmp_path, server.url + "labels.gz",
                              f"checksum mismatch.*expected {GOOD_MD5}")


def test_truncated_response(tmp_path: Path) -> None:
    routes = {"/labels.gz": Reply(GZ[:20], declared_length=len(GZ))}
    with http_server(routes) as server:
        _assert_fails_cleanly(tmp_path, server.url + "labels.gz",
                              f"truncated response.*20 of {len(GZ)} bytes")


def test_truncated_gzip_with_honest_length(tmp_path: Path) -> None:
    with http_server({"/labels.gz": Reply(GZ[:-6])}) as server:
        _assert_fails_cleanly(tmp_path, server.url + "labels.gz", "truncated gzip|corrupt")


def test_not_idx_content(tmp_path: Path) -> None:
    page = b"<html>mirror moved</html>"
    with http_server({"/labels.gz": Reply(page)}) as server:
        _assert_fails_cleanly(tmp_path, server.url + "labels.gz", "magic|short", md5=md5_of(page))


def test_http_404(tmp_path: Path) -> None:
    with http_server({}) as server:
        _assert_fails_cleanly(tmp_path, server.url + "labels.gz", "HTTP 404")


def test_http_500(tmp_path: Path) -> None:
    with http_server({"/labels.gz": Reply(b"oops", status=500)}) as server:
        _assert_fails_cleanly(tmp_path, server.url + "labels.gz", "HTTP 500")


def test_server_that_never_answers_hits_the_timeout(tmp_path: Path) -> None:
    with http_server({"/labels.gz": Reply(hang=True)}) as server:
        # If the timeout were ignored, the server would close after 30 s with no response
        # and the error would not say "timed out".
        _assert_fails_cleanly(tmp_path, server.url + "labels.gz", "timed out", timeout=0.5)


def test_connection_refused(tmp_path: Path) -> None:
    _assert_fails_cleanly(tmp_path, closed_port_url() + "labels.gz", "unreachable|refused")


# ----------------------------------------------------------------------- mirrors

ARRAYS = synthetic_idx(n_train=12, n_test=8, shape=(4, 4), seed=0)
SPEC = dataclasses.replace(
    MNIST, name="tiny-mnist", title="tiny synthetic MNIST", md5=ARRAYS.md5(), mirrors=(),
    openml_name=None, n_train=12, n_test=8, image_shape=(4, 4),
)


def test_download_from_mirrors_falls_back_to_a_good_mirror(tmp_path: Path) -> None:
    good_routes = mirror_routes(ARRAYS, prefix="/good/")
    # The bad mirror serves one file corrupted and lacks the others.
    bad_name = next(iter(ARRAYS.gz_payloads()))
    bad_routes = {"/bad/" + bad_name: Reply(b"\x1f\x8b garbage")}
    with http_server({**good_routes, **bad_routes}) as server:
        mirrors = [closed_port_url(), server.url + "bad/", server.url + "good"]
        download_from_mirrors(SPEC, tmp_path, mirrors, Deadline(30), progress=False)
        assert "/bad/" + bad_name in server.requests
    for name, payload in ARRAYS.gz_payloads().items():
        assert (tmp_path / name).read_bytes() == payload
    assert _leftovers(tmp_path) == sorted(ARRAYS.gz_payloads())


def test_download_from_mirrors_skips_files_already_there(tmp_path: Path) -> None:
    payloads = ARRAYS.gz_payloads()
    first = next(iter(payloads))
    (tmp_path / first).write_bytes(payloads[first])
    with http_server(mirror_routes(ARRAYS)) as server:
        download_from_mirrors(SPEC, tmp_path, [server.url], Deadline(30), progress=False)
    assert "/" + first not in server.requests
    assert len(server.requests) == 3


def test_download_from_mirrors_reports_every_mirror(tmp_path: Path) -> None:
    with http_server({}) as server:
        refused = closed_port_url()
        with pytest.raises(DownloadError) as info:
            download_from_mirrors(SPEC, tmp_path, [refused, server.url], Deadline(30), False)
    message = str(info.value)
    assert refused in message and "HTTP 404" in message
    assert _leftovers(tmp_path) == []


def test_deadline_stops_trying_further_mirrors(tmp_path: Path) -> None:
    routes = {f"/m{i}/{name}": Reply(hang=True)
              for i in range(3) for name in ARRAYS.gz_payloads()}
    with http_server(routes) as server:
        mirrors = [f"{server.url}m{i}/" for i in range(3)]
        with pytest.raises(DownloadError, match="timed out"):
            download_from_mirrors(SPEC, tmp_path, mirrors, Deadline(0.6), progress=False)
        # The first attempt used up the budget: the other mirrors were never contacted.
        assert len(server.requests) == 1


def test_deadline_timeout_is_capped_and_runs_out() -> None:
    assert Deadline(100).timeout(cap=10) == 10
    assert Deadline(2).timeout(cap=10) <= 2
    with pytest.raises(DownloadError, match="budget exhausted"):
        Deadline(0).timeout()


def test_load_idx_dataset_downloads_caches_and_reloads_offline(tmp_path: Path) -> None:
    with http_server(mirror_routes(ARRAYS, prefix="/mnist/")) as server:
        data = load_idx_dataset(SPEC, mirrors=[server.url + "mnist/"], progress=False)
        assert len(server.requests) == 4
    cache = cache_root() / SPEC.name
    assert data.source == f"downloaded to {cache}"
    np.testing.assert_array_equal(data.x_train, ARRAYS.train_images.reshape(12, 16))
    np.testing.assert_array_equal(data.y_train, ARRAYS.train_labels)
    np.testing.assert_array_equal(data.x_test, ARRAYS.test_images.reshape(8, 16))
    np.testing.assert_array_equal(data.y_test, ARRAYS.test_labels)
    assert data.image_shape == (4, 4) and data.n_classes == 10
    assert _leftovers(cache) == sorted(f"{name}.gz" for name in IDX_FILES.values())

    # The server is gone: the second load comes from the cache.
    again = load_idx_dataset(SPEC, mirrors=[closed_port_url()], progress=False)
    assert again.source == str(cache)
    np.testing.assert_array_equal(again.x_train, data.x_train)
    np.testing.assert_array_equal(again.y_test, data.y_test)


def test_load_idx_dataset_refuses_a_bad_download_and_caches_nothing(tmp_path: Path) -> None:
    spec = dataclasses.replace(SPEC, md5={**SPEC.md5, "test_labels": "0" * 32})
    with http_server(mirror_routes(ARRAYS)) as server, pytest.raises(DownloadError) as info:
        load_idx_dataset(spec, mirrors=[server.url], progress=False)
    assert "checksum mismatch" in str(info.value)
    cache = cache_root() / spec.name
    assert "t10k-labels-idx1-ubyte.gz" not in _leftovers(cache)
    assert not [name for name in _leftovers(cache) if name.endswith(".tmp")]


def _no_openml(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every OpenML request fail as it does without network; return the URLs asked for."""
    asked: list[str] = []

    def urlopen(request, *args, **kwargs):  # type: ignore[no-untyped-def]
        asked.append(getattr(request, "full_url", str(request)))
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("sklearn.datasets._openml.urlopen", urlopen)
    return asked


def test_no_network_fails_fast_with_an_offline_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _no_openml(monkeypatch)
    spec = dataclasses.replace(MNIST, mirrors=(closed_port_url(), closed_port_url()))
    started = time.monotonic()
    with pytest.raises(DownloadError) as info:
        load_idx_dataset(spec, progress=False)
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert asked, "the OpenML route was not tried"
    assert "\n" not in message
    for hint in ("--data-dir", "DIGITNET_DATA_DIR", "--dataset digits", "mnist"):
        assert hint in message
    # The download budget (15 s) is the behaviour under test, not the speed of this machine.
    assert elapsed < 15
    assert _leftovers(cache_root() / "mnist") in ([], ["openml"])


# ------------------------------------------------------------------- bounded in size and time
def test_a_trickling_mirror_cannot_outlive_the_deadline(tmp_path: Path) -> None:
    """A byte every 0.3 s never trips a per-read timeout; the deadline covers the whole."""
    with http_server({"/labels.gz": Reply(GZ, trickle=0.3)}) as server:
        started = time.monotonic()
        with pytest.raises(DownloadError, match=r"timed out|time budget exhausted"):
            download_file(server.url + "labels.gz", tmp_path / "a.gz", GOOD_MD5, 1,
                          timeout=5, progress=False, deadline=Deadline(1.5))
        assert time.monotonic() - started < 4
    assert _leftovers(tmp_path) == []


def test_a_response_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    with http_server({"/announced": Reply(GZ, declared_length=10**9),
                      "/sent": Reply(GZ, declared_length=-1)}) as server:
        with pytest.raises(DownloadError, match="announces 1,000,000,000 bytes"):
            download_file(server.url + "announced", tmp_path / "a", GOOD_MD5, 1, timeout=5,
                          progress=False)
        with pytest.raises(DownloadError, match="sent more than the limit of 10 bytes"):
            download_file(server.url + "sent", tmp_path / "a", GOOD_MD5, 1, timeout=5,
                          progress=False, max_bytes=10)
    assert _leftovers(tmp_path) == []


def test_a_gzip_bomb_is_refused_while_inflating(tmp_path: Path) -> None:
    """2 MB of gzip that would inflate to 2 GB: refused at the limit, never allocated."""
    import tracemalloc
    import zlib

    from digitnet.data import idx

    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    bomb = b"".join(compressor.compress(zeros) for _ in range(2048)) + compressor.flush()
    assert len(bomb) < 3 * 2**20
    tracemalloc.start()
    try:
        with pytest.raises(Exception, match="inflates to more than 67,108,864 bytes"):
            idx.decompress(bomb, "bomb.gz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * idx.MAX_IDX_BYTES
    with (http_server({"/bomb.gz": Reply(bomb)}) as server,
          pytest.raises(DownloadError, match="inflates to more than")):
        download_file(server.url + "bomb.gz", tmp_path / "a.gz", None, 1, timeout=10,
                      progress=False)
    assert _leftovers(tmp_path) == []


def test_multi_member_gzip_still_reads() -> None:
    from digitnet.data import idx

    half = len(RAW) // 2
    two = gzip.compress(RAW[:half]) + gzip.compress(RAW[half:])
    assert idx.decompress(two, "two.gz") == RAW
    with pytest.raises(Exception, match="truncated"):
        idx.decompress(GZ[:-12], "cut.gz")
