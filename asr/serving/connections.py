"""Connections that cannot be held open for nothing: a deadline for each request's headers, and room made for new
connections by closing the longest-idle one.

uvicorn (0.29 to at least 0.55) arms its keep-alive timer only after a response: a connection that sends nothing,
or sends its headers a byte at a time, is never timed out, and its ``limit_concurrency`` answers 503 to every
request, ``/healthz`` included, once enough of them are open (140 idle sockets did it). So the HTTP/1.1 protocol
here is uvicorn's h11 one with two additions:

* a **header deadline**: a connection must complete a request's headers within ``header_timeout`` seconds of
  opening, or of its previous response; it is closed otherwise. (Headers are bounded in size by h11, 16 KiB.)
  Once the headers are in, the application's own limits take over (the upload's idle timeout, ``--timeout``).
* a **connection cap that sheds the idle, not the new**: past ``max_connections`` open connections, the one idle
  longest (no request in progress: waiting for headers or kept alive) is closed to make room. A new client, a
  health check included, is always served; a flood of idle sockets costs only itself.

WebSockets leave this protocol at the upgrade; their idleness is the stream's own business (``_stream_session``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and an idle-first connection cap (set by :func:`guarded`)."""

    header_timeout: float = 10.0
    max_connections: int = 256
    registry: dict["GuardedH11Protocol", None] = {}  # open connections, oldest first (one per subclass)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._armed_cycle: Any = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.registry[self] = None
        self._arm()
        if len(self.registry) > self.max_connections:
            self._shed_one()

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._deadline is not None and self.cycle is not self._armed_cycle:
            self._disarm()  # a request's headers arrived

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.idle:  # (a pipelined request may already have begun)
            self._arm()

    def handle_websocket_upgrade(self, event: Any) -> None:
        self._forget()
        super().handle_websocket_upgrade(event)

    @property
    def idle(self) -> bool:
        """No request in progress: waiting for headers, or kept alive after a response."""
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._armed_cycle = self.cycle
        self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _forget(self) -> None:
        self._disarm()
        self.registry.pop(self, None)

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.debug("closing a connection that sent no complete request in %g s", self.header_timeout)
            self.transport.close()

    def _shed_one(self) -> None:
        for other in self.registry:
            if other is not self and other.idle and not other.transport.is_closing():
                other._forget()
                other.transport.close()
                return


def guarded(header_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` for one server (uvicorn's ``http=``), with its own connection registry."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout": header_timeout, "max_connections": max_connections, "registry": {}},
    )
