"""The Starlette application behind ``digitnet serve``.

Routes:

* ``GET /``: the drawing page (``static/index.html``; its script and style sheet are
  served from ``/static``, nothing from other sites, so the page works offline);
* ``GET /api/health``: ``{"status": "ok"}``;
* ``GET /api/model``: architecture, data set, test accuracy, class names, input shape;
* ``POST /api/predict``: see :mod:`digitnet.web.service`;
* the inside view (:mod:`digitnet.inside`), each on a copy of the network with the request's
  ``"edits"``: ``POST /api/inspect`` (prediction, every unit's output, saliency, softmax
  steps, one unit's arithmetic), ``POST /api/scores`` (test accuracy), ``POST /api/points``
  and ``GET /api/points/images`` (the points map), ``POST /api/edited-model`` (the edited
  network as a model file to download).

Every error is JSON ``{"error": "..."}`` with a 4xx status (413 for a body over
``max_body_bytes``, 400 for a ``Host`` that is not accepted, for JSON nested too deep or
with integers too long); an unexpected exception gives a 500 JSON answer and is logged, and
the server keeps running. At most ``max_concurrent`` predictions run at a time (the others
wait their turn), so the memory of decoding is bounded whatever the number of clients.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digitnet.data.datasets import Dataset
from digitnet.model_io import TrainedModel
from digitnet.web.service import ApiError, PredictionService

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY_BYTES = 1_000_000  # a 280x280 canvas PNG is 5-30 kB
MAX_CONCURRENT_PREDICTIONS = 4

# The page may load only its own files: no CDN, no inline script.
SECURITY_HEADERS = {
    b"content-security-policy": b"default-src 'self'; img-src 'self' data:; "
    b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
}

logger = logging.getLogger(__name__)


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *SECURITY_HEADERS.items()]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HostCheck:
    """ASGI middleware answering 400 (JSON) to a request whose ``Host`` header is not one
    of ``allowed`` (with or without a port): a server on 127.0.0.1 is then out of reach of
    DNS-rebinding pages."""

    def __init__(self, app: ASGIApp, allowed: Sequence[str]) -> None:
        self.app, self.allowed = app, {h.lower() for h in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host", "").lower()
            if _host_name(host) not in self.allowed:
                response = error_response(400, f"Host {host!r} not accepted: this server "
                                               "answers to its local address only")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _host_name(host: str) -> str:
    """``127.0.0.1:8000`` -> ``127.0.0.1``, ``[::1]:8000`` -> ``[::1]``, ``localhost`` as is."""
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    return host.split(":", 1)[0] if host.count(":") == 1 else host


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) one larger than ``limit`` bytes, whether it declares
    its length or streams it."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(400, "invalid Content-Length header")
        if int(declared) > limit:
            raise HTTPException(413, f"request body over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    model: TrainedModel,
    max_body_bytes: int = MAX_BODY_BYTES,
    allowed_hosts: Sequence[str] | None = None,
    max_concurrent: int = MAX_CONCURRENT_PREDICTIONS,
    test_set: Dataset | None = None,
    test_set_note: str | None = None,
) -> Starlette:
    """The web application for ``model``.

    Parameters
    ----------
    model : TrainedModel
        The network that answers.
    max_body_bytes : int
        Largest accepted request body; larger ones get 413.
    allowed_hosts : sequence of str, optional
        Accepted ``Host`` headers (guards a server on 127.0.0.1 against DNS rebinding);
        ``None`` accepts any.
    max_concurrent : int
        Predictions that may run at once; further requests wait for a free slot.
    test_set : Dataset, optional
        The model's data set: its test images let the inside view measure an edited
        network's accuracy and draw the points map (``test_set_note`` says why it is
        missing, when it is).
    """
    service = PredictionService(model, test_set, test_set_note)
    slots = anyio.CapacityLimiter(max_concurrent)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-cache"})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def model_info(request: Request) -> Response:
        return JSONResponse(service.model_info())

    async def json_payload(request: Request) -> Any:
        """The request's JSON body, or a JSON error response to send instead."""
        try:
            body = await read_body(request, max_body_bytes)
        except ClientDisconnect:  # gone (or cut off for sending too slowly): nobody to answer
            return error_response(400, "the client went away before sending its request")
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return error_response(400, "the request body is not valid JSON")
        except (ValueError, RecursionError):  # an integer of thousands of digits; deep nesting
            return error_response(400, "the request body is JSON digitnet does not read "
                                       "(nested too deep, or a number too long)")

    def json_route(work: Callable[[Any], Any]) -> Callable[[Request], Awaitable[Response]]:
        """An endpoint that reads a JSON body and answers ``work(payload)`` (run in a worker
        thread, at most ``max_concurrent`` at a time): JSON, or a model file's bytes."""
        async def endpoint(request: Request) -> Response:
            payload = await json_payload(request)
            if isinstance(payload, Response):
                return payload
            try:
                result = await anyio.to_thread.run_sync(work, payload, limiter=slots)
            except ApiError as exc:
                return error_response(exc.status, exc.message)
            if isinstance(result, bytes):
                return Response(result, media_type="application/octet-stream", headers={
                    "content-disposition": 'attachment; filename="model-edited.npz"'})
            return JSONResponse(result)
        return endpoint

    async def points_images(request: Request) -> Response:
        try:
            return JSONResponse(await anyio.to_thread.run_sync(service.points_images,
                                                               limiter=slots))
        except ApiError as exc:
            return error_response(exc.status, exc.message)

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/api/health", health, methods=["GET"]),
        Route("/api/model", model_info, methods=["GET"]),
        Route("/api/predict", json_route(service.predict_payload), methods=["POST"]),
        Route("/api/inspect", json_route(service.inspect_payload), methods=["POST"]),
        Route("/api/scores", json_route(service.scores_payload), methods=["POST"]),
        Route("/api/points", json_route(service.points_payload), methods=["POST"]),
        Route("/api/points/images", points_images, methods=["GET"]),
        Route("/api/edited-model", json_route(service.edited_model), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders)]
    if allowed_hosts is not None:
        middleware.append(Middleware(HostCheck, allowed=list(allowed_hosts)))
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
    )


def error_response(status: int, message: str, headers: Any = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def http_error(request: Request, exc: Exception) -> Response:
    """A Starlette HTTP error (404, 405, 413...) as JSON."""
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), exc.headers)


async def server_error(request: Request, exc: Exception) -> Response:
    """Any other exception: logged, and a JSON 500; the server keeps running."""
    logger.error("error while answering %s %s", request.method, request.url.path,
                 exc_info=exc)
    return error_response(500, "internal server error")


# Every error answer of digitnet's web applications (the drawing page's and the lab's) is JSON.
EXCEPTION_HANDLERS: dict[Any, Any] = {HTTPException: http_error, Exception: server_error}
