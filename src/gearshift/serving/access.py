"""Who may call what: a Host-header check, bearer-token auth and the management switch.

One pure ASGI middleware in front of every route (404s included), so nothing reaches the app
unchecked:

1. Host: when `allowed_hosts` is set, the request's `Host` must name one of them (port
   ignored; 421 otherwise). A server bound to loopback allows only loopback names by default,
   which stops DNS rebinding: a web page whose name resolves to 127.0.0.1 sends its own name
   as `Host`. With the same list, a request whose `Origin` (a browser sends it with a
   cross-site POST, which needs no preflight) names another host is refused (403): a page on
   another site cannot make a loopback server compute.
2. Token: with a token configured, every endpoint but liveness (`/v2/health/live`) needs
   `Authorization: Bearer <token>`, compared in constant time; otherwise 401 with
   `WWW-Authenticate: Bearer`.
3. Management (`/gearshift/controller`, which makes the server read its policy files): `open`
   (as any other endpoint), `token` (only with a token configured: the same as `open` then,
   but refuses to start without one) or `closed` (403). `auto` resolves to `closed` when the
   server listens beyond loopback and to `open` on loopback.

Errors are the protocol's `{"error": "..."}` JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gearshift.errors import SpecError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

Management = Literal["open", "token", "closed"]
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
LIVENESS = "/v2/health/live"
MANAGEMENT_PREFIX = "/gearshift/controller"
MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    return host.strip("[]").lower() in LOOPBACK_HOSTS or host.startswith("127.")


@dataclass(frozen=True)
class AccessSettings:
    token: str | None = field(default=None, repr=False)
    management: Management = "open"
    allowed_hosts: tuple[str, ...] = ()  # empty: any Host

    def __post_init__(self) -> None:
        if self.management == "token" and not self.token:
            raise SpecError("management 'token' needs a token: pass --auth-token-file")


def resolve_access(bind_host: str, token: str | None,
                   management: Literal["auto", "open", "token", "closed"] = "auto",
                   allowed_hosts: tuple[str, ...] | None = None) -> AccessSettings:
    """The defaults for a server bound to `bind_host`: on loopback, management open and only
    loopback Host names; beyond it, management closed and any Host unless told."""
    loopback = is_loopback(bind_host)
    mode: Management = ("open" if loopback else "closed") if management == "auto" else management
    if allowed_hosts is None:
        allowed_hosts = LOOPBACK_HOSTS if loopback else ()
    hosts = tuple(h.lower() for h in allowed_hosts if h != "*")
    return AccessSettings(token, mode, () if "*" in allowed_hosts else hosts)


def read_token_file(path: Path) -> str:
    """The token in `path` (surrounding whitespace stripped): at least 16 printable characters."""
    try:
        info = path.stat()
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"auth token file {path} cannot be read: {exc}") from None
    if len(text) < MIN_TOKEN_CHARS or not text.isprintable() or " " in text:
        raise SpecError(f"auth token file {path} must hold one token of at least "
                        f"{MIN_TOKEN_CHARS} printable characters without spaces")
    if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SpecError(f"auth token file {path} is readable by other users; chmod 600 it")
    return text


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()  # equal lengths: compare_digest leaks nothing


class AccessMiddleware:
    def __init__(self, app: ASGIApp, settings: AccessSettings) -> None:
        self.app = app
        self.settings = settings
        self._token = _digest(settings.token.encode()) if settings.token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, message, headers = refusal
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()), *headers]})
        await send({"type": "http.response.body", "body": body})

    def refusal(self, scope: Scope) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        """(status, message, extra headers) when the request may not go on, else None."""
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        if self.settings.allowed_hosts:
            hosts = [v for k, v in headers if k == b"host"]
            name = _host_name(hosts[0]) if len(hosts) == 1 else None
            if name not in self.settings.allowed_hosts:
                shown = hosts[0][:64].decode("latin-1") if len(hosts) == 1 else "(missing)"
                return 421, (f"Host {shown!r} is not a name this server answers to; allowed: "
                             f"{', '.join(self.settings.allowed_hosts)}"), []
            origins = [v for k, v in headers if k == b"origin"]
            if origins and any(_origin_host(o) not in self.settings.allowed_hosts
                               for o in origins):
                shown = origins[0][:64].decode("latin-1")
                return 403, (f"cross-origin request from {shown!r} refused: a web page on "
                             "another site may not call this server"), []
        path: str = scope.get("path", "")
        if path == LIVENESS:
            return None
        management = path == MANAGEMENT_PREFIX or path.startswith(MANAGEMENT_PREFIX + "/")
        if management and self.settings.management == "closed":
            return 403, ("management endpoints are closed on this server (it listens beyond "
                         "loopback); restart with --management token and --auth-token-file "
                         "to open them"), []
        if self._token is None:
            return None
        given = [v for k, v in headers if k == b"authorization"]
        challenge = b'Bearer realm="gearshift"'
        if len(given) != 1 or given[0][:7].lower() != b"bearer ":
            return 401, "this server needs Authorization: Bearer <token>", [
                (b"www-authenticate", challenge)]
        if not hmac.compare_digest(_digest(given[0][7:].strip()), self._token):
            return 401, "the bearer token is not valid", [
                (b"www-authenticate", challenge + b', error="invalid_token"')]
        return None


def _origin_host(value: bytes) -> str | None:
    """The host of an `Origin` header (`scheme://host[:port]`; None for `null` or junk)."""
    _, sep, rest = value.partition(b"://")
    return _host_name(rest) if sep else None


def _host_name(value: bytes) -> str | None:
    """The host part of a Host header, lower case, without port or trailing dot."""
    try:
        text = value.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        return None
    if text.startswith("["):
        end = text.find("]")
        return text[1:end] if end > 0 else None
    name = text.rsplit(":", 1)[0] if text.count(":") == 1 else text
    return name.rstrip(".") or None
