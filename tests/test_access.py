"""Access: Host check, bearer token, management switch, and the limits on one client."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as tc
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from gearshift.errors import SpecError
from gearshift.serving.access import (
    AccessMiddleware,
    AccessSettings,
    read_token_file,
    resolve_access,
)
from gearshift.serving.server import ServerSettings
from gearshift.types import Allocation, Decision
from tests.live import serving
from tests.servers import free_port

TOKEN = "s3cret-token-0123456789"


class _Client:
    """Requests straight into an ASGI app, no network."""

    def __init__(self, app: object) -> None:
        self.transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]

    def request(self, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=self.transport, base_url="http://x") as c:
                return await c.request(method, path, headers=headers)

        return asyncio.run(go())

    def get(self, path: str, headers: dict[str, str]) -> httpx.Response:
        return self.request("GET", path, headers)

    def put(self, path: str, headers: dict[str, str]) -> httpx.Response:
        return self.request("PUT", path, headers)


def _client(settings: AccessSettings) -> _Client:
    async def ok(_: object) -> JSONResponse:
        return JSONResponse({"ok": True})

    routes = [Route("/v2/health/live", ok), Route("/v2/health/ready", ok),
              Route("/gearshift/controller", ok, methods=["PUT"])]
    return _Client(AccessMiddleware(Starlette(routes=routes), settings))


def test_host_header_must_name_this_server_on_loopback() -> None:
    c = _client(resolve_access("127.0.0.1", None))
    for host in ("127.0.0.1:8000", "localhost", "LOCALHOST:1", "[::1]:8000", "localhost."):
        assert c.get("/v2/health/ready", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "[::2]", ""):
        r = c.get("/v2/health/ready", headers={"Host": host})
        assert r.status_code == 421 and "not a name this server answers" in r.json()["error"]
    any_host = _client(resolve_access("127.0.0.1", None, allowed_hosts=("*",)))
    assert any_host.get("/v2/health/ready", headers={"Host": "x.example"}).status_code == 200


def test_a_cross_site_origin_is_refused_on_loopback() -> None:
    """A page on another site can POST to 127.0.0.1 without a preflight (text/plain), with a
    loopback Host; its browser names the page in `Origin`, and that is refused."""
    c = _client(resolve_access("127.0.0.1", None))
    h = {"Host": "127.0.0.1:8000"}
    for origin in ("http://evil.example", "https://127.0.0.1.evil.example:8000", "null"):
        r = c.get("/v2/health/ready", headers={**h, "Origin": origin})
        assert r.status_code == 403 and "cross-origin" in r.json()["error"], origin
    for origin in ("http://127.0.0.1:8000", "http://localhost:3000", "http://[::1]"):
        assert c.get("/v2/health/ready", headers={**h, "Origin": origin}).status_code == 200
    assert c.get("/v2/health/ready", headers=h).status_code == 200  # no Origin: not a browser
    any_host = _client(resolve_access("127.0.0.1", None, allowed_hosts=("*",)))
    assert any_host.get("/v2/health/ready",
                        headers={**h, "Origin": "http://x.example"}).status_code == 200


def test_bearer_token_on_every_endpoint_but_liveness() -> None:
    c = _client(resolve_access("127.0.0.1", TOKEN))
    h = {"Host": "127.0.0.1"}
    assert c.get("/v2/health/live", headers=h).status_code == 200
    for auth in (None, "Bearer", "Bearer wrong-token-0123456789", f"Basic {TOKEN}", TOKEN,
                 f"Bearer {TOKEN}x"):
        headers = {**h, **({"Authorization": auth} if auth else {})}
        for r in (c.get("/v2/health/ready", headers=headers),
                  c.get("/v2/nothing-here", headers=headers),
                  c.put("/gearshift/controller", headers=headers)):
            assert r.status_code == 401, (auth, r.text)
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert r.json()["error"]
    for auth in (f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Bearer  {TOKEN} "):
        assert c.get("/v2/health/ready", headers={**h, "Authorization": auth}).status_code == 200


def test_management_is_closed_beyond_loopback_by_default() -> None:
    wide = resolve_access("0.0.0.0", None)
    assert wide.management == "closed" and wide.allowed_hosts == ()
    c = _client(wide)
    r = c.put("/gearshift/controller", headers={"Host": "10.0.0.5:8000"})
    assert r.status_code == 403 and "closed" in r.json()["error"]
    assert c.get("/v2/health/ready", headers={"Host": "10.0.0.5"}).status_code == 200
    token = _client(resolve_access("0.0.0.0", TOKEN, "token"))
    auth = {"Host": "10.0.0.5", "Authorization": f"Bearer {TOKEN}"}
    assert token.put("/gearshift/controller", headers=auth).status_code == 200
    assert resolve_access("127.0.0.1", None).management == "open"
    assert resolve_access("::1", None).allowed_hosts == ("127.0.0.1", "localhost", "::1")
    with pytest.raises(SpecError, match="needs a token"):
        resolve_access("127.0.0.1", None, "token")


def test_token_file_rules(tmp_path: Path) -> None:
    p = tmp_path / "token"
    p.write_text(TOKEN + "\n")
    p.chmod(0o600)
    assert read_token_file(p) == TOKEN
    p.chmod(0o644)
    with pytest.raises(SpecError, match="readable by other users"):
        read_token_file(p)
    p.write_text("short")
    p.chmod(0o600)
    with pytest.raises(SpecError, match="at least 16"):
        read_token_file(p)
    with pytest.raises(SpecError, match="cannot be read"):
        read_token_file(tmp_path / "missing")
    assert TOKEN not in repr(ServerSettings(auth_token=TOKEN))


def test_no_yaml_or_torch_load_is_unsafe() -> None:
    src = Path(__file__).resolve().parents[1] / "src"
    for path in src.rglob("*.py"):
        text = path.read_text()
        assert "yaml.load(" not in text and "yaml.unsafe_load" not in text, path
        assert "yaml.full_load" not in text, path
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, (path, line)


# ----- a real server -------------------------------------------------------------------------

FIRST = Decision("tiny-s", Allocation(1, 1))


def _raw(url: str, data: bytes, wait_s: float = 20.0) -> bytes:
    """Send `data` on one connection; everything the server answers until it closes."""
    host, port = url.split(":")
    with socket.create_connection((host, int(port)), timeout=wait_s) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.slow
def test_a_token_server_answers_tritonclient_with_the_token_only(tiny_spec) -> None:
    settings = ServerSettings(port=free_port(), auth_token=TOKEN)
    with serving(tiny_spec, FIRST, settings) as (url, _):
        client = tc.InferenceServerClient(url)
        x = np.zeros((1, 1, 8, 8), np.float32)
        inp = tc.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        with pytest.raises(tc.InferenceServerException, match="Bearer"):
            client.infer("tiny", [inp])
        r = client.infer("tiny", [inp], headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.as_numpy("logits").shape == (1, 10)
        assert httpx.get(f"http://{url}/v2/health/live", timeout=5).status_code == 200
        r = httpx.get(f"http://{url}/metrics", timeout=5)
        assert r.status_code == 401 and "WWW-Authenticate" in r.headers


@pytest.mark.slow
def test_request_head_and_body_limits(tiny_spec) -> None:
    settings = ServerSettings(port=free_port(), max_header_bytes=4096, max_headers=20,
                              body_timeout_s=0.5, header_timeout_s=0.5)
    with serving(tiny_spec, FIRST, settings) as (url, _):
        big = _raw(url, b"GET /v2/health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: "
                   + b"a" * 8000 + b"\r\n\r\n")
        assert big.startswith(b"HTTP/1.1 431") and b"exceed 4096 B" in big
        many = b"".join(b"X-%d: 1\r\n" % i for i in range(30))
        r = _raw(url, b"GET /v2/health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\n" + many + b"\r\n")
        assert r.startswith(b"HTTP/1.1 431") and b"more than 20 headers" in r
        long_url = _raw(url, b"GET /v2/" + b"x" * 8000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert long_url.startswith(b"HTTP/1.1 431")
        slow_head = _raw(url, b"GET /v2/health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert slow_head.startswith(b"HTTP/1.1 408")
        assert _raw(url, b"") == b""  # an idle connection is closed, not kept forever
        slow_body = _raw(url, b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Length: 1000\r\n\r\n{\"inputs\"")
        assert slow_body.startswith(b"HTTP/1.1 408") and b"not received within" in slow_body
        r = httpx.get(f"http://{url}/v2/health/ready", timeout=5)
        assert r.status_code == 200  # and the server goes on


@pytest.mark.slow
def test_dns_rebinding_host_is_refused_by_a_loopback_server(tiny_spec) -> None:
    with serving(tiny_spec, FIRST, ServerSettings(port=free_port())) as (url, _):
        r = httpx.get(f"http://{url}/gearshift/status", headers={"Host": "attacker.example"},
                      timeout=5)
        assert r.status_code == 421
        assert httpx.get(f"http://{url}/gearshift/status", timeout=5).status_code == 200


