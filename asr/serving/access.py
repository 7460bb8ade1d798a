"""Who may use a server: the ``Host`` a request names and the ``Origin`` of the page that sent it.

A server on 127.0.0.1 is still reachable from any web page the user opens: the page can POST a form to it and open
a WebSocket to it (browsers send both cross-origin without asking), and with DNS rebinding (a name of the
attacker's that first resolves to their server, then to 127.0.0.1) it can even read the answers, since the browser
then takes the server for the attacker's own origin. Two checks close this, as Jupyter's do:

* ``Host``: on a loopback address the server answers only to its own names (``localhost``, ``127.0.0.1``,
  ``[::1]``, the address it listens on) and those of ``--allow-host``: a rebound name is refused. Listening
  elsewhere, clients reach it under names it cannot know, so any Host passes unless ``--allow-host`` names them.
* ``Origin`` (sent by browsers, not by curl or scripts; a request without one passes): a POST, any other
  non-GET request, or a WebSocket passes when it comes from a page of this server itself (its origin is the Host
  the request names, or, on loopback, a loopback name at this server's port), or from an origin listed with
  ``--allow-origin`` (``*``: every origin, for a server behind a proxy that checks for itself). GETs are not
  checked: a browser does not let another site read what a GET returns (that is the Host check's job).

Refusals are 403 with a JSON ``detail`` saying what was refused and which option admits it; a WebSocket is
refused before its handshake completes (a 403 response, where the server supports the ASGI denial extension).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _split_host(value: str) -> tuple[str, int | None]:
    """``name[:port]`` or ``[v6][:port]`` as (lower-case name without brackets, port or None)."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, _, port = value.partition(":")
    else:  # a bare name, or a bare IPv6 address
        name, port = value, ""
    return name, int(port) if port.isdigit() else None


@dataclass
class Access:
    """The address a server listens on and what else it lets in (``--allow-origin``, ``--allow-host``)."""

    host: str = "127.0.0.1"  # the address the server listens on
    port: int | None = 8000  # its port (None: unknown, the Host header's is taken)
    allow_origins: tuple[str, ...] = ()  # origins whose pages may use the server, e.g. https://app.example; "*": any
    allow_hosts: tuple[str, ...] = ()  # further names the server answers to (a proxy's, a /etc/hosts alias)
    _origins: frozenset[str] = field(init=False, repr=False)
    _hosts: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.allow_origins, self.allow_hosts = tuple(self.allow_origins), tuple(self.allow_hosts)
        self._origins = frozenset(o.strip().rstrip("/").lower() for o in self.allow_origins)
        names = {_split_host(h)[0] for h in self.allow_hosts}
        if is_loopback(self.host):
            names |= LOOPBACK_NAMES | {self.host.strip("[]").lower()}
        elif self.allow_hosts:
            names.add(self.host.strip("[]").lower())
        self._hosts = frozenset(names)

    @property
    def checks_host(self) -> bool:
        return bool(self._hosts)

    def host_problem(self, host_header: str | None) -> str | None:
        """Why a request naming ``host_header`` is refused, or None. No Host (HTTP/1.0) is no rebinding."""
        if host_header is None or not self.checks_host:
            return None
        name, _ = _split_host(host_header)
        if name in self._hosts:
            return None
        return (
            f"Host {host_header[:100]!r} is not a name of this server (listening on {self.host}): refused against "
            f"DNS rebinding; start it with --allow-host {name[:100]} to answer to that name"
        )

    def origin_problem(self, origin: str | None, host_header: str | None) -> str | None:
        """Why a request from a page of ``origin`` is refused, or None (no Origin: not a browser's request)."""
        if origin is None or "*" in self._origins:
            return None
        normal = origin.strip().rstrip("/").lower()
        if normal in self._origins:
            return None
        parts = urlsplit(normal)
        if parts.scheme in ("http", "https") and parts.hostname:
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError:
                port = None
            if host_header is not None:
                name, host_port = _split_host(host_header)
                if parts.hostname == name and port == (host_port or (443 if parts.scheme == "https" else 80)):
                    return None  # the page came from this server, under the name the request uses
            own_port = self.port or (_split_host(host_header)[1] if host_header else None)
            if is_loopback(self.host) and parts.hostname in LOOPBACK_NAMES and port == own_port:
                return None  # another loopback name of this server
        return (
            f"cross-origin request from {origin[:100]!r} refused: this server serves pages of its own origin only; "
            f"start it with --allow-origin {origin[:100]} to let that site use it"
        )


class AccessMiddleware:
    """ASGI middleware refusing (403) requests whose Host or Origin :class:`Access` does not admit."""

    def __init__(self, app: ASGIApp, access: Access):
        self.app, self.access = app, access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {}
        for key, value in scope.get("headers", []):
            headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
        host = headers.get("host")
        problem = self.access.host_problem(host)
        if problem is None and (scope["type"] == "websocket" or scope.get("method", "GET") not in SAFE_METHODS):
            problem = self.access.origin_problem(headers.get("origin"), host)
        if problem is None:
            return await self.app(scope, receive, send)
        await refuse(scope, receive, send, 403, problem)


async def refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
    """Answer ``status`` with ``{"detail": message}``: an HTTP response, or a WebSocket handshake refused with one
    (where the server supports the denial extension; elsewhere the handshake is closed, which clients see as 403)."""
    response = JSONResponse({"detail": message}, status_code=status)
    if scope["type"] == "http" or "websocket.http.response" in scope.get("extensions", {}):
        return await response(scope, receive, send)
    await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
