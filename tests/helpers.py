"""Test helpers: finite differences, synthetic data sets, IDX folders, a local HTTP server,
the ``digitnet`` command in a child process."""

from __future__ import annotations

import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from digitnet import gradcheck
from digitnet.data.datasets import IDX_FILES, Dataset
from digitnet.data.idx import idx_bytes, md5_of, write_idx

# --------------------------------------------------------------------------- gradients


# numerical_gradient and relative_error are the library's (digitnet.gradcheck), used by the
# lab's gradient check too; the tests import them from here.
numerical_gradient = gradcheck.numerical_gradient
relative_error = gradcheck.relative_error


# -------------------------------------------------------------------------- data sets


def blobs(
    n_per_class: int, n_classes: int = 3, n_features: int = 8, seed: int = 0, spread: float = 18.0
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Separable uint8 clusters: one random centre per class in [40, 215], Gaussian noise."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(40, 215, size=(n_classes, n_features))
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = centres[y] + rng.normal(0, spread, size=(len(y), n_features))
    order = rng.permutation(len(y))
    return np.clip(x[order], 0, 255).astype(np.uint8), y[order].astype(np.int64)


def blob_dataset(
    n_train_per_class: int = 30, n_test_per_class: int = 10, n_classes: int = 10, seed: int = 0
) -> Dataset:
    """A small :class:`Dataset` of 4x4 'images' (16 features) in ``n_classes`` clusters."""
    x, y = blobs(n_train_per_class + n_test_per_class, n_classes, 16, seed)
    n_train = n_train_per_class * n_classes
    return Dataset(
        name="blobs",
        x_train=x[:n_train],
        y_train=y[:n_train],
        x_test=x[n_train:],
        y_test=y[n_train:],
        class_names=tuple(str(k) for k in range(n_classes)),
        image_shape=(4, 4),
        source="synthetic",
    )


@dataclass
class IdxArrays:
    """The four arrays of an IDX data set."""

    train_images: NDArray[np.uint8]
    train_labels: NDArray[np.uint8]
    test_images: NDArray[np.uint8]
    test_labels: NDArray[np.uint8]

    def items(self) -> Iterator[tuple[str, NDArray[np.uint8]]]:
        for key in IDX_FILES:
            yield key, getattr(self, key)

    def md5(self) -> dict[str, str]:
        """MD5 of each file's uncompressed IDX encoding (what a spec's ``md5`` holds)."""
        return {key: md5_of(idx_bytes(array)) for key, array in self.items()}

    def gz_payloads(self) -> dict[str, bytes]:
        """``{"train-images-idx3-ubyte.gz": gzip bytes, ...}`` as a mirror would serve them."""
        import gzip

        return {
            f"{IDX_FILES[key]}.gz": gzip.compress(idx_bytes(array), mtime=0)
            for key, array in self.items()
        }


def synthetic_idx(
    n_train: int = 12, n_test: int = 8, shape: tuple[int, int] = (4, 4), seed: int = 0
) -> IdxArrays:
    """Random images and labels 0-9 (every digit present when there are >= 10 samples)."""
    rng = np.random.default_rng(seed)

    def labels(n: int) -> NDArray[np.uint8]:
        return rng.permutation(np.arange(n) % 10).astype(np.uint8)

    return IdxArrays(
        train_images=rng.integers(0, 256, size=(n_train, *shape), dtype=np.uint8),
        train_labels=labels(n_train),
        test_images=rng.integers(0, 256, size=(n_test, *shape), dtype=np.uint8),
        test_labels=labels(n_test),
    )


def write_idx_folder(folder: Path, arrays: IdxArrays, compress: bool = True) -> Path:
    """Write the four IDX files (``.gz`` when ``compress``) into ``folder``; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        name = IDX_FILES[key] + (".gz" if compress else "")
        write_idx(folder / name, array, compress=compress)
    return folder


# ------------------------------------------------------------------------ HTTP server


@dataclass
class Reply:
    """What the fake server answers for one path.

    ``declared_length`` larger than ``len(body)`` sends a truncated response; ``hang``
    accepts the request and never answers; ``trickle`` sends the body a byte at a time, that
    many seconds apart.
    """

    body: bytes = b""
    status: int = 200
    declared_length: int | None = None
    hang: bool = False
    trickle: float = 0.0


@dataclass
class FakeServer:
    """A local HTTP server on 127.0.0.1; ``url`` ends with ``/``."""

    url: str
    routes: dict[str, Reply]
    requests: list[str] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.fake.requests.append(self.path)
        reply = self.server.fake.routes.get(self.path)
        if reply is None:
            self.send_error(404, "Not Found")
            return
        if reply.hang:
            self.server.stopping.wait(30)
            return
        self.send_response(reply.status)
        length = len(reply.body) if reply.declared_length is None else reply.declared_length
        if length >= 0:  # -1: no Content-Length, the body ends when the connection closes
            self.send_header("Content-Length", str(length))
        self.end_headers()
        if reply.trickle:
            for i in range(len(reply.body)):
                if self.server.stopping.wait(reply.trickle):
                    return
                try:
                    self.wfile.write(reply.body[i : i + 1])
                    self.wfile.flush()
                except OSError:  # the client gave up
                    return
            return
        self.wfile.write(reply.body)
        self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeServer
    stopping: threading.Event


@contextmanager
def http_server(routes: dict[str, Reply]) -> Iterator[FakeServer]:
    """Serve ``routes`` (URL path -> :class:`Reply`) on a free port of 127.0.0.1."""
    server = _Server(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    server.fake = FakeServer(f"http://127.0.0.1:{port}/", routes)
    server.stopping = threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server.fake
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connections are refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def mirror_routes(arrays: IdxArrays, prefix: str = "/") -> dict[str, Reply]:
    """Routes that serve the four gzipped IDX files under ``prefix``."""
    return {prefix + name: Reply(body) for name, body in arrays.gz_payloads().items()}


# ----------------------------------------------------------- the command in a child process
def digitnet_command(*args: str, **popen: Any) -> subprocess.Popen[str]:
    """``digitnet ARGS`` in a child process: stdout and stderr piped (text, unbuffered)."""
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from digitnet.cli import main; sys.exit(main())",
         *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, **popen,
    )


@contextmanager
def served(*args: str, **popen: Any) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A serving ``digitnet ARGS`` (``serve``, ``lab``; give ``--port 0``) and the address it
    announced on its first line, ``http://127.0.0.1:PORT/``; killed after the block if it
    still runs (:func:`stop_with_ctrl_c` stops it the user's way)."""
    process = digitnet_command(*args, **popen)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line or (process.stderr.read() if process.stderr else "")
        yield process, match.group(0)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def stop_with_ctrl_c(process: subprocess.Popen[str]) -> str:
    """Ctrl-C (SIGINT) to ``process``; what it then wrote to stderr (it has 20 s to end)."""
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=20)
    return err


def port_of(url: str) -> int:
    """The port of ``http://host:PORT/``."""
    return int(url.rstrip("/").rpartition(":")[2])


THREAD_WAIT = 30.0  # seconds a thread may take to get somewhere on a busy machine


def held(section: AbstractContextManager[Any]) -> threading.Event:
    """``section`` entered in a thread of its own and held there until the event returned is
    set (the call returns once it is in)."""
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with section:
            inside.set()
            release.wait(THREAD_WAIT)

    threading.Thread(target=hold, daemon=True).start()
    assert inside.wait(THREAD_WAIT), "the section was not entered"
    return release


def finishes(work: Callable[[], Any]) -> threading.Event:
    """``work()`` in a thread of its own; the event is set once it has returned."""
    done = threading.Event()

    def run() -> None:
        work()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done
