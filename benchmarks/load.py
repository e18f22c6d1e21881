"""Load test of ``digitnet serve`` on 127.0.0.1: throughput, latency, errors, peak memory.

Run from the repository root::

    python -m benchmarks.load [--model RUN_DIR] [--requests 5000] [--concurrency 16]

It starts ``digitnet serve`` (on a model of ``--model``, else a ``digits`` model it trains
first, in a second), then sends ``--requests`` ``POST /api/predict`` requests, each a
280x280 PNG drawing as the page sends it, from ``--concurrency`` keep-alive clients at once;
meanwhile ``--slow-clients`` connections trickle their headers a byte a second (they must
be cut off without disturbing anyone) and, every 100th request, a client posts a 7000x7000
PNG (small to send, 49 megapixels to decode: it must be refused, cheaply). It prints (and
with ``--json`` writes) the requests per second, the p50/p99 latency, the number of answers
that were not 200 for the ordinary requests, and the server's peak resident memory. Every
loop is bounded in count and time; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw


def drawing_png() -> bytes:
    """A 280x280 canvas with a 7 drawn on it, as the drawing page posts it."""
    image = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    ImageDraw.Draw(image).line([(60, 60), (220, 60), (120, 230)], fill=(0, 0, 0, 255),
                               width=18)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def huge_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (7000, 7000), 0).save(buffer, format="PNG")
    return buffer.getvalue()


def body(png: bytes) -> bytes:
    return json.dumps({"image": "data:image/png;base64," + base64.b64encode(png).decode()}
                      ).encode()


def start_server(model: str, *extra: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "digitnet", "serve", "--model", model, "--port", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", process.stdout.readline())
    if not match:
        process.kill()
        raise RuntimeError(f"digitnet serve did not start: {process.communicate()[1][-500:]}")
    return process, int(match.group(1))


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def slow_clients(port: int, count: int, stop: threading.Event) -> dict[str, int]:
    """``count`` connections sending a request's headers a byte a second, until the server
    cuts them off (or ``stop``); how many were cut off."""
    socks = []
    for _ in range(count):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=1))
        except OSError:
            break
    header = b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    cut = 0
    for i in range(len(header)):
        if stop.wait(1.0) or not socks:
            break
        alive = []
        for sock in socks:
            try:
                sock.sendall(header[i : i + 1])
                sock.settimeout(0.001)
                try:
                    if sock.recv(1) == b"":
                        raise ConnectionError
                except TimeoutError:
                    pass
                alive.append(sock)
            except OSError:
                cut += 1
                sock.close()
        socks = alive
    for sock in socks:
        sock.close()
    return {"slow_clients": count, "cut_off": cut}


def run_load(port: int, requests: int, concurrency: int, payload: bytes, huge: bytes,
             time_limit: float = 300.0) -> dict[str, Any]:
    """``requests`` ordinary predictions from ``concurrency`` keep-alive clients (every
    100th client request is the huge image instead); latencies and statuses."""
    lock = threading.Lock()
    next_index = [0]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    huge_statuses: dict[int, int] = {}
    deadline = time.monotonic() + time_limit
    headers = {"Content-Type": "application/json", "Host": "127.0.0.1"}

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < deadline:
            with lock:
                i = next_index[0]
                if i >= requests:
                    break
                next_index[0] += 1
            big = i % 100 == 99
            start = time.perf_counter()
            try:
                conn.request("POST", "/api/predict", body=huge if big else payload,
                             headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = -1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            seconds = time.perf_counter() - start
            with lock:
                if big:
                    huge_statuses[status] = huge_statuses.get(status, 0) + 1
                else:
                    latencies.append(seconds)
                    statuses[status] = statuses.get(status, 0) + 1
        conn.close()

    started = time.perf_counter()
    workers = [threading.Thread(target=client) for _ in range(concurrency)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    ordinary = len(latencies)
    return {
        "requests": ordinary + sum(huge_statuses.values()), "ordinary": ordinary,
        "concurrency": concurrency, "seconds": elapsed,
        "requests_per_second": (ordinary + sum(huge_statuses.values())) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        if latencies else None,
        "statuses": statuses, "errors": ordinary - statuses.get(200, 0),
        "huge_image_statuses": huge_statuses,
    }


def load_test(model: str, requests: int = 5000, concurrency: int = 16, slow: int = 20,
              request_timeout: float = 2.0) -> dict[str, Any]:
    process, port = start_server(model, "--request-timeout", str(request_timeout))
    stop = threading.Event()
    slow_result: dict[str, int] = {}
    slow_thread = threading.Thread(
        target=lambda: slow_result.update(slow_clients(port, slow, stop)))
    try:
        slow_thread.start()
        result = run_load(port, requests, concurrency, body(drawing_png()), body(huge_png()))
        result["server_peak_rss_mb"] = peak_rss_mb(process.pid)
    finally:
        stop.set()
        slow_thread.join(10)
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
    result.update(slow_result)
    return result


def digits_model(folder: str) -> str:
    out = Path(folder) / "run"
    subprocess.run([sys.executable, "-m", "digitnet", "train", "--dataset", "digits",
                    "--no-plots", "--no-progress", "--out", str(out)], check=True,
                   capture_output=True)
    return str(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model.npz or run folder (default: train digits)")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--slow-clients", type=int, default=20)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or digits_model(folder)
        result = load_test(model, args.requests, args.concurrency, args.slow_clients)
    print(f"{result['requests']} requests at concurrency {result['concurrency']} in "
          f"{result['seconds']:.1f} s: {result['requests_per_second']:.0f} requests/s, "
          f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms")
    print(f"ordinary requests not answered 200: {result['errors']} of {result['ordinary']} "
          f"({result['statuses']}); 7000x7000 images: {result['huge_image_statuses']}")
    print(f"slow clients cut off: {result.get('cut_off')} of {result.get('slow_clients')}; "
          f"server peak RSS {result['server_peak_rss_mb']:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
