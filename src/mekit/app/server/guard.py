"""What every response of `mekit serve` passes through: the Host and Origin checks (DNS
rebinding, cross-site writes), the Allow header, and the security headers."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import Match

PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)

# A Host header: a name or IPv4 address, or a bracketed IPv6 address, and an optional port.
# Anything else (user info "a@b", paths, spaces, several ports) is refused.
_HOST_HEADER = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?")


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def add_guard(app: FastAPI, bind_host: str) -> None:
    """Pass every request of `app` (served on `bind_host`) through the checks, answer OPTIONS
    and name the allowed methods on a 405, and give every response the security headers
    (a response's own Content-Security-Policy is kept)."""

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable) -> Response:
        refusal = _refuse(request, bind_host)
        allowed = _allowed_methods(app, request) if refusal is None else None
        if refusal is not None:
            response = refusal
        elif request.method == "OPTIONS" and allowed:
            response = Response(status_code=204, headers={"Allow": allowed})
        else:
            response = await call_next(request)
            if response.status_code == 405 and allowed:
                response.headers["Allow"] = allowed
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response


def _split_host(netloc: str) -> str | None:
    """The host of a Host header or URL netloc, without the port (IPv6 brackets kept off);
    None unless it is exactly a host and an optional port (see `_HOST_HEADER`)."""
    if not _HOST_HEADER.fullmatch(netloc):
        return None
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")]
    return netloc.split(":", 1)[0]


def _allowed_methods(app: FastAPI, request: Request) -> str | None:
    """The Allow header for the request's path: every method of every route it matches
    (a path can have a route per method), with OPTIONS; None for paths no route serves."""
    methods: set[str] = set()
    for route in app.router.routes:
        route_methods = getattr(route, "methods", None)
        if route_methods and route.matches(request.scope)[0] != Match.NONE:
            methods |= set(route_methods)
    return ", ".join(sorted(methods | {"OPTIONS"})) if methods else None


def _refuse(request: Request, bind_host: str) -> Response | None:
    """Refuse malformed Host headers, requests for another host name (DNS rebinding) and
    cross-site writes."""
    host = request.headers.get("host", "")
    name = _split_host(host)
    if name is None:
        return JSONResponse({"detail": "malformed Host header"}, status_code=400)
    if is_loopback(bind_host) and not is_loopback(name):
        return JSONResponse({"detail": f"host '{host}' is not served here"}, status_code=400)
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != host:
            return JSONResponse({"detail": "cross-origin request refused"}, status_code=403)
    return None
