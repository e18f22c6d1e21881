"""``digitnet serve``: a web page to draw digits on, and a JSON API, served with uvicorn."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from digitnet.cli import common

if TYPE_CHECKING:
    import socket

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def port_number(text: str) -> int:
    value = common.non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {value}")
    return value


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="serve a page to draw digits on, and a JSON API",
        description="Serve a web page where you draw a digit with the mouse or a finger and "
        "watch the network's prediction and probabilities update as you draw; plus a JSON "
        "API: POST /api/predict, GET /api/model, GET /api/health. Stop with Ctrl-C.",
    )
    p.add_argument("--model", required=True, metavar="PATH", help="model.npz (or its run folder)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder with the model's data set (IDX files), for the test accuracy "
                   "and the points map of the inside view; default: $DIGITNET_DATA_DIR, then "
                   "the cache (never a download; without it the page says so)")
    add_server_arguments(p, port=8000)
    p.set_defaults(run=run)


def add_server_arguments(p: argparse.ArgumentParser, port: int) -> None:
    """``--host``, ``--port``, ``--log-level``, ``--request-timeout``, ``--max-connections``:
    the web server's options, shared by ``digitnet serve`` and ``digitnet lab``."""
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this computer only; "
                   "0.0.0.0 lets other computers on your network in)")
    p.add_argument("--port", type=port_number, default=port,
                   help=f"port (default: {port}; 0 picks a free one)")
    p.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"),
                   default="warning", help="server log level (info logs every request)")
    p.add_argument("--request-timeout", type=common.positive_float, default=10.0,
                   metavar="SECONDS", help="time a client has to send a whole request, "
                   "and an idle connection stays open (default: 10)")
    p.add_argument("--max-connections", type=common.positive_int, default=100,
                   help="open connections served at once; beyond, 503 (default: 100)")


def open_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, or a one-line error saying why not."""
    import socket

    from digitnet.errors import DigitnetError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise DigitnetError(f"--host {host}: unknown address ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise DigitnetError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def allowed_hosts(host: str) -> list[str] | None:
    """The Host headers a server on ``host`` answers: only loopback names when it listens on
    loopback (a web page elsewhere cannot reach it through DNS rebinding), else any."""
    return ["127.0.0.1", "localhost", "[::1]", "::1"] if host in LOOPBACK_HOSTS else None


def run_server(server: Any, sock: socket.socket, command: str, host: str) -> None:
    """Say where the page is (and when other computers can reach it), serve until Ctrl-C,
    then close ``sock``."""
    shown_host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    url_host = f"[{shown_host}]" if ":" in shown_host else shown_host
    if host not in LOOPBACK_HOSTS:
        print(f"digitnet {command}: listening on {host}: other computers can reach this "
              "server", file=sys.stderr)
    print(f"open http://{url_host}:{sock.getsockname()[1]}/ in a browser (Ctrl-C stops)",
          flush=True)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn shuts down gracefully, then re-raises the Ctrl-C
    finally:
        sock.close()
    print(f"digitnet {command}: stopped", file=sys.stderr)


def load_test_set(model: Any, data_dir: str | None) -> tuple[Any, str | None]:
    """The model's data set when it is at hand (no download), else ``None`` and why."""
    from digitnet.data import load_dataset
    from digitnet.errors import DigitnetError

    if model.dataset not in common.DATASETS:
        return None, f"the model was trained on {model.dataset!r}, not a known data set"
    try:
        dataset = load_dataset(model.dataset, data_dir, download_ok=False, progress=False)
    except DigitnetError as exc:
        note = f"{model.dataset} is not on this computer ({str(exc).splitlines()[0]})"
        print(f"digitnet serve: no test set for the inside view: {note}", file=sys.stderr)
        return None, note
    if dataset.n_features != model.network.n_inputs or \
            list(dataset.class_names) != list(model.class_names):
        return None, f"data set {model.dataset!r} does not match the model"
    return dataset, None


def run(args: argparse.Namespace) -> int:
    from digitnet.predict import load_predictor
    from digitnet.web import create_app
    from digitnet.web.server import make_server

    model = load_predictor(args.model)
    sock = open_socket(args.host, args.port)
    test_set, note = load_test_set(model, args.data_dir)
    app = create_app(model, allowed_hosts=allowed_hosts(args.host), test_set=test_set,
                     test_set_note=note)
    server = make_server(app, args.log_level, access_log=args.log_level in ("info", "debug"),
                         request_timeout=args.request_timeout,
                         max_connections=args.max_connections)
    accuracy = model.info.get("test_accuracy")
    about = model.network.describe() + (
        f", test accuracy {accuracy:.2%}" if isinstance(accuracy, (int, float)) else ""
    )
    print(f"digitnet serve: {about}", file=sys.stderr)
    run_server(server, sock, "serve", args.host)
    return 0
