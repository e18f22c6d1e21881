"""The Starlette application behind ``digitnet lab``: the live training lab's page and API.

Routes (the security headers and the ``Host`` check are :mod:`digitnet.web.app`'s):

* ``GET /``: the lab page (``static/lab.html``, its script and style sheet from ``/static``;
  nothing from other sites, so it works offline);
* ``GET /api/health``: ``{"status": "ok"}``;
* ``GET /api/lab/options``: the data sets, each one's default configuration, the choices of
  every option, the live settings and the guided experiments;
* ``GET /api/lab/state``: the run's snapshot (:meth:`digitnet.lab.LabSession.snapshot`), or
  ``{"state": "none"}`` before the first run;
* ``GET /api/lab/events``: the same as server-sent events (``event: state``), sent whenever
  it has changed, at most every :data:`EVENT_INTERVAL` seconds (with the pictures at most
  every :data:`PICTURES_INTERVAL`, and whenever the run is not running); each stream ends after
  :data:`STREAM_SECONDS` (the browser's ``EventSource`` reconnects by itself), and at once
  when the server stops. ``?limit=N`` ends it after ``N`` events;
* ``POST /api/lab/start`` ``{"config": {...}}`` (:meth:`digitnet.lab.LabConfig.from_dict`;
  ``"paused": true`` prepares the run without starting it, ``"delay": seconds`` starts it in
  slow motion): a new run, the old one stopped;
* ``POST /api/lab/control`` ``{"action": "pause" | "resume" | "epoch" | "step" | "stop"}``
  or ``{"action": "slow", "delay": seconds}``;
* ``POST /api/lab/settings`` ``{"setting": name, "value": v}``: from the next step (or epoch);
* ``POST /api/lab/gradient-check`` ``{}``: backpropagation against finite differences;
* ``POST /api/lab/save`` ``{}``: the run folder, as ``digitnet train`` writes it.

Errors are JSON ``{"error": "..."}``: 400 for a malformed request or a setting out of
range, 409 for a request out of turn (no run, the run is over, a data set not on this
computer).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from digitnet.data.datasets import Dataset
from digitnet.errors import DigitnetError
from digitnet.web.app import (
    EXCEPTION_HANDLERS,
    STATIC_DIR,
    HostCheck,
    SecurityHeaders,
    error_response,
    read_body,
)

MAX_BODY_BYTES = 64_000
EVENT_INTERVAL = 0.25  # seconds between two snapshots sent while the run changes
PICTURES_INTERVAL = 1.0  # seconds between two with the pictures (histograms, tiles, previews)
STREAM_SECONDS = 30.0  # an event stream ends after this (EventSource reconnects)
HEARTBEAT_SECONDS = 10.0
MAX_WORKERS = 4  # requests computed at once (snapshots, gradient checks, saving)

logger = logging.getLogger(__name__)


class LabApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Lab:
    """The lab on the server: the data sets at hand (loaded when first asked for, never
    downloaded), the current run, and the folder runs are saved in."""

    def __init__(self, data_dir: str | None = None, runs_dir: str | Path = "runs",
                 datasets: dict[str, Dataset] | None = None) -> None:
        self.data_dir, self.runs_dir = data_dir, Path(runs_dir)
        self._datasets: dict[str, Dataset] = dict(datasets or {})
        self._notes: dict[str, str] = {}
        self._lock = threading.Lock()  # one start, one save at a time
        self._save_lock = threading.Lock()
        self.session: Any = None  # digitnet.lab.LabSession
        self._cached: tuple[tuple[int, int | None, bool], str] | None = None
        self.closing = threading.Event()

    # ------------------------------------------------------------------- data sets
    def dataset(self, name: str) -> Dataset:
        from digitnet.data import load_dataset

        if name in self._datasets:
            return self._datasets[name]
        try:
            dataset = load_dataset(name, self.data_dir, download_ok=False, progress=False)
        except DigitnetError as exc:
            note = str(exc).splitlines()[0]
            self._notes[name] = note
            raise LabApiError(409, f"{name} is not on this computer: {note}") from None
        self._datasets[name] = dataset
        return dataset

    def options(self) -> dict[str, Any]:
        from digitnet.config import (
            ACTIVATION_NAMES,
            AUGMENTATIONS,
            DTYPE_NAMES,
            OPTIMIZERS,
            SCHEDULES,
        )
        from digitnet.lab import EXPERIMENTS, LAB_DATASETS, LAB_ENGINES, LIVE_SETTINGS, LabConfig

        return {
            "datasets": [{"name": name, "loaded": name in self._datasets or name == "digits",
                          "note": self._notes.get(name)} for name in LAB_DATASETS],
            "defaults": {name: LabConfig.from_dict({"dataset": name}).to_dict()
                         for name in LAB_DATASETS},
            "choices": {"activation": list(ACTIVATION_NAMES), "optimizer": list(OPTIMIZERS),
                        "schedule": list(SCHEDULES), "augment": list(AUGMENTATIONS),
                        "dtype": list(DTYPE_NAMES), "engine": list(LAB_ENGINES)},
            "live_settings": LIVE_SETTINGS,
            "experiments": [e.to_dict() for e in EXPERIMENTS],
            "runs_dir": str(self.runs_dir),
        }

    # ------------------------------------------------------------------------ runs
    def start(self, payload: Any) -> dict[str, Any]:
        from digitnet.lab import LabConfig, LabError, LabSession

        payload = _object(payload)
        config_values = payload.get("config", {})
        if not isinstance(config_values, dict):
            raise LabApiError(400, "'config' must be an object of settings")
        try:
            config = LabConfig.from_dict(config_values)
        except LabError as exc:
            raise LabApiError(400, str(exc)) from None
        with self._lock:
            dataset = self.dataset(config.dataset)
            if config.subset > len(dataset.x_train):
                raise LabApiError(400, f"subset: {config.dataset} has only "
                                       f"{len(dataset.x_train)} training images")
            try:
                session = LabSession(config, dataset)
                if payload.get("delay"):
                    session.set_delay(payload["delay"])
            except (LabError, ValueError) as exc:
                raise LabApiError(400, str(exc)) from None
            old, self.session = self.session, session
            if old is not None:
                old.stop()
            if not payload.get("paused"):
                session.start()
        if old is not None:
            old.join(5)
        return self.snapshot()

    def _session(self) -> Any:
        if self.session is None:
            raise LabApiError(409, "no run yet: start one")
        return self.session

    def control(self, payload: Any) -> dict[str, Any]:
        from digitnet.lab import LabError

        payload = _object(payload)
        session = self._session()
        action = payload.get("action")
        actions: dict[str, Callable[[], None]] = {
            "pause": session.pause, "resume": session.resume, "epoch": session.run_epoch,
            "step": session.run_step, "stop": session.stop}
        try:
            if action == "slow":
                session.set_delay(payload.get("delay"))
            elif action in actions:
                actions[action]()
            else:
                raise LabApiError(400, f"'action' must be one of {', '.join(actions)} or slow")
        except LabError as exc:  # the run is over (409), or a bad delay (400)
            raise LabApiError(409 if session.finished else 400, str(exc)) from None
        if action in ("pause", "step", "stop"):
            session.wait_idle(2.0)  # answer with the state it has come to, if quickly
        return self.snapshot(full=False)

    def change(self, payload: Any) -> dict[str, Any]:
        from digitnet.lab import LabError

        payload = _object(payload)
        session = self._session()
        setting = payload.get("setting")
        if not isinstance(setting, str) or "value" not in payload:
            raise LabApiError(400, "expected {\"setting\": name, \"value\": value}")
        try:
            value = session.change(setting, payload["value"])
        except LabError as exc:
            status = 409 if session.finished else 400
            raise LabApiError(status, str(exc)) from None
        from digitnet.lab import LIVE_SETTINGS

        return {"setting": setting, "value": value, "takes_effect": (
            "at the next epoch" if LIVE_SETTINGS[setting] == "epoch" else "at the next step"),
            "pending": session.pending}

    def gradient_check(self, payload: Any) -> dict[str, Any]:
        _object(payload)
        return self._session().gradient_check()

    def save(self, payload: Any) -> dict[str, Any]:
        from digitnet.lab import LabError
        from digitnet.runs import RunDirError, default_run_dir

        _object(payload)
        session = self._session()
        if session.steps == 0:
            raise LabApiError(409, "nothing trained yet: start the run first")
        with self._save_lock:
            folder = default_run_dir(f"{session.dataset.name}-lab", self.runs_dir)
            try:
                path = session.save(folder)
            except (LabError, RunDirError) as exc:
                raise LabApiError(409, str(exc)) from None
        metrics = json.loads((path / "metrics.json").read_text())
        return {"folder": str(path), "test_accuracy": metrics["test_accuracy"],
                "steps": metrics["lab"]["steps"],
                "serve": f"digitnet serve --model {path}",
                "replay": f"digitnet lab --replay {path}"}

    def snapshot(self, full: bool = True) -> dict[str, Any]:
        session = self.session
        if session is None:
            return {"state": "none"}
        return session.snapshot(full=full)

    def snapshot_json(self, full: bool = True) -> str:
        """The snapshot as JSON, computed once per change of the run however many pages
        watch it (``full``: with the pictures)."""
        session = self.session
        key = (id(session), None if session is None else session.version, full)
        cached = self._cached
        if cached is not None and cached[0] == key:
            return cached[1]
        text = to_json(self.snapshot(full))
        self._cached = (key, text)
        return text

    def close(self) -> None:
        """Stop the run and end the event streams (the server is stopping)."""
        self.closing.set()
        if self.session is not None:
            self.session.stop()


def _object(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise LabApiError(400, "the request body must be a JSON object")
    return payload


def to_json(value: Any) -> str:
    """JSON without NaN or infinity (``null`` in their place), which browsers do not read."""
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False, separators=(",", ":"))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def create_lab_app(lab: Lab, allowed_hosts: list[str] | None = None,
                   max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    """The lab's web application around ``lab`` (see the module docstring)."""
    slots = anyio.CapacityLimiter(MAX_WORKERS)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "lab.html", headers={"cache-control": "no-cache"})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    def answer(result: Any) -> Response:
        return Response(to_json(result), media_type="application/json")

    def get_route(work: Callable[[], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return answer(await anyio.to_thread.run_sync(work, limiter=slots))
            except LabApiError as exc:
                return error_response(exc.status, exc.message)
        return endpoint

    def post_route(work: Callable[[Any], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                body = await read_body(request, max_body_bytes)
            except ClientDisconnect:
                return error_response(400, "the client went away before sending its request")
            try:
                payload = json.loads(body) if body.strip() else {}
            except (UnicodeDecodeError, json.JSONDecodeError):
                return error_response(400, "the request body is not valid JSON")
            except (ValueError, RecursionError):
                return error_response(400, "the request body is JSON digitnet does not read "
                                           "(nested too deep, or a number too long)")
            try:
                return answer(await anyio.to_thread.run_sync(work, payload, limiter=slots))
            except LabApiError as exc:
                return error_response(exc.status, exc.message)
        return endpoint

    async def events(request: Request) -> Response:
        limit_text = request.query_params.get("limit", "")
        limit = int(limit_text) if limit_text.isdigit() else None

        async def stream() -> AsyncIterator[str]:
            yield "retry: 1000\n\n"
            started = last_sent = time.monotonic()
            last_full = -math.inf
            last_key: tuple[int, int] | None = None
            sent = 0
            while not lab.closing.is_set() and time.monotonic() - started < STREAM_SECONDS:
                session = lab.session
                key = (id(session), -1 if session is None else session.version)
                if key != last_key:
                    # the pictures once a second (and at once for a new run or a pause),
                    # the curves and numbers every time
                    full = (time.monotonic() - last_full >= PICTURES_INTERVAL
                            or last_key is None or key[0] != last_key[0]
                            or session is None or session.state != "running")
                    last_key = key
                    if full:
                        last_full = time.monotonic()
                    text = await anyio.to_thread.run_sync(lab.snapshot_json, full,
                                                          limiter=slots)
                    yield f"event: state\ndata: {text}\n\n"
                    sent += 1
                    last_sent = time.monotonic()
                    if limit is not None and sent >= limit:
                        return
                elif time.monotonic() - last_sent > HEARTBEAT_SECONDS:
                    yield ": still here\n\n"
                    last_sent = time.monotonic()
                await anyio.sleep(EVENT_INTERVAL)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache"})

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/api/health", health, methods=["GET"]),
        Route("/api/lab/options", get_route(lab.options), methods=["GET"]),
        Route("/api/lab/state", get_route(lab.snapshot), methods=["GET"]),
        Route("/api/lab/events", events, methods=["GET"]),
        Route("/api/lab/start", post_route(lab.start), methods=["POST"]),
        Route("/api/lab/control", post_route(lab.control), methods=["POST"]),
        Route("/api/lab/settings", post_route(lab.change), methods=["POST"]),
        Route("/api/lab/gradient-check", post_route(lab.gradient_check), methods=["POST"]),
        Route("/api/lab/save", post_route(lab.save), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders)]
    if allowed_hosts is not None:
        middleware.append(Middleware(HostCheck, allowed=list(allowed_hosts)))
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers=EXCEPTION_HANDLERS)
