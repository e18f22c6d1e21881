"""Serving the application with uvicorn, with the limits a server facing clients needs.

uvicorn's HTTP/1.1 protocol closes a kept-alive connection that stays idle after a
response, but a fresh connection that sends nothing, or headers or a body a byte every few
seconds, would hold its socket (and a file descriptor) forever. :class:`GuardedH11Protocol`
gives every request a deadline: from the connection's start (or the end of the previous
response) a client has ``request_timeout`` seconds to send a complete request, headers and
body, or the connection is closed. A request that has arrived whole is never cut off while
the application answers it. Beyond ``max_connections`` requests in progress, new ones get a
JSON 503 (:class:`RequestLimit`); beyond :func:`connection_cap` (a few more, and never
more than the process's file descriptors allow) new connections are closed as soon as they
are accepted. Running out of descriptors must not happen: asyncio's accept loop (CPython
3.11) then retries in a storm that starves every timer, the deadlines above included, and
the server never recovers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from digitnet.web.app import error_response

logger = logging.getLogger("digitnet.serve")

REQUEST_TIMEOUT = 10.0
KEEP_ALIVE_TIMEOUT = 5
MAX_CONNECTIONS = 100
MAX_HEADER_BYTES = 16 * 1024


FD_RESERVE = 48  # descriptors kept for the server's own files and logs
ACCEPT_BATCH = 16  # connections asyncio accepts in one go (and the listen backlog)


def connection_cap(max_connections: int) -> int:
    """How many connections may be open at once: ``max_connections`` and a few more (those
    get 503), never more than the file-descriptor limit leaves."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + 16
    if soft == resource.RLIM_INFINITY:
        return wanted
    # A batch is accepted before any of its connections can be closed: leave room for it.
    return max(1, min(wanted, soft - FD_RESERVE - ACCEPT_BATCH))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request to arrive complete, and a cap
    on open connections."""

    request_timeout = REQUEST_TIMEOUT
    cap = MAX_CONNECTIONS + 16

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        if len(self.connections) > self.cap:
            transport.close()  # frees its descriptor at once
            return
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request on this connection gets its own deadline

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """A request that is not HTTP (a bad request line, headers too large): 400, in JSON
        like every other refusal, then close."""
        body = json.dumps({"error": f"not a valid HTTP request ({msg})"}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close"),
                   (b"content-length", str(len(body)).encode())]
        try:
            for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                          h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:  # too early or too late in the exchange to answer
            pass
        self.transport.close()

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.request_timeout, self._expired)

    def _expired(self) -> None:
        self._deadline = None
        # IDLE: no complete headers yet (nothing sent, or sent slowly); SEND_BODY: the body
        # is still coming. DONE: the request is in, the application is answering: let it.
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            self.transport.close()


class RequestLimit:
    """ASGI middleware: at most ``limit`` HTTP requests in progress; beyond, a JSON 503
    (uvicorn's own ``limit_concurrency`` would answer in plain text)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit, self.active = app, limit, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            response = error_response(503, "the server is busy: try again in a moment",
                                      {"retry-after": "1"})
            await response(scope, receive, send)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


class GuardedServer(uvicorn.Server):
    """uvicorn's server, reporting a full descriptor table in one log line (asyncio would
    log a traceback for every accept it had to put off)."""

    async def serve(self, sockets: Any = None) -> None:
        loop = asyncio.get_running_loop()
        default = loop.get_exception_handler()

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if context.get("message") == "socket.accept() out of system resource":
                logger.warning("out of file descriptors: new connections wait")
                return
            if default is not None:
                default(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handler)
        await super().serve(sockets)


def make_server(app: Any, log_level: str = "warning", access_log: bool = False,
                request_timeout: float = REQUEST_TIMEOUT,
                max_connections: int = MAX_CONNECTIONS) -> uvicorn.Server:
    """A uvicorn server for ``app`` with the limits above."""
    protocol = type("Protocol", (GuardedH11Protocol,), {
        "request_timeout": request_timeout, "cap": connection_cap(max_connections)})
    config = uvicorn.Config(
        RequestLimit(app, max_connections), log_level=log_level, lifespan="off",
        access_log=access_log, http=protocol,
        timeout_keep_alive=max(1, round(min(KEEP_ALIVE_TIMEOUT, request_timeout))),
        backlog=ACCEPT_BATCH,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )
    return GuardedServer(config)
