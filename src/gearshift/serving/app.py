"""The ASGI app: KServe V2 REST routes, Prometheus metrics and a JSON status page.

The only module that imports the web framework. Every error becomes the protocol's
`{"error": "..."}` body with the error's HTTP status (and `Retry-After` when shedding load); an
unexpected exception is logged and answered with a generic 500 that echoes nothing. Every
request gets exactly one answer:

- the body is read within `max_body_bytes` and `body_timeout_s` (413, 408), decompressed within
  the same limit, decoded and checked against the pool's declared input before it is queued;
- the inference bodies held at once (as received and decompressed, until answered) share a
  budget of `max_inflight_body_bytes`: a body that would pass it is refused (503, Retry-After)
  before more of it is read, unread if its Content-Length says so;
- bodies and answers above `OFFLOAD_BYTES` are decoded and encoded in a worker thread, so
  health checks and other replies are not held up behind them;
- a client that disconnects while its request waits has it cancelled (the pool skips it);
- a request still open when the graceful-shutdown timeout cancels it is answered 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gearshift import __version__
from gearshift.control.factory import POLICY_NAMES
from gearshift.errors import (
    BadRequest,
    ClientClosed,
    GearshiftError,
    ModelNotFound,
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
    ShuttingDown,
)
from gearshift.protocol import (
    HEADER_LENGTH,
    DecodedRequest,
    Limits,
    datatype_of,
    decode_request,
    decompress,
    encode_response,
    parse_json,
)
from gearshift.serving.access import ASGIApp, Message, Receive, Scope, Send
from gearshift.serving.dataplane import Answer, DataPlane
from gearshift.types import StatusDoc

EXTENSIONS = ["binary_tensor_data", "gearshift_model_switching"]
OFFLOAD_BYTES = 256 << 10  # bodies and answers above this are coded in a worker thread
CONTROLLER_BODY_BYTES = 4096
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_CONTROLLER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@\-]{0,127}")
VERSIONS = ("1",)

log = logging.getLogger("gearshift.app")


@dataclass(frozen=True)
class AppLimits:
    max_body_bytes: int = 64 << 20
    body_timeout_s: float = 30.0  # to receive a whole request body
    max_elements: int = 1 << 24  # per input tensor
    max_inflight_body_bytes: int = 512 << 20  # inference bodies held at once, all requests


class BodyBudget:
    """Bytes of request bodies held at once, across requests; `take` beyond the limit is a 503
    (Overloaded) and takes nothing."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> None:
        if self.used + n > self.limit:
            raise Overloaded(f"too many request bytes in flight ({self.used} B held, limit "
                             f"{self.limit} B); retry later", retry_after_s=1.0)
        self.used += n

    def give(self, n: int) -> None:
        self.used -= n


@dataclass
class _Held:
    """What one request has taken from a `BodyBudget`."""

    budget: BodyBudget
    bytes: int = 0

    def take(self, n: int) -> None:
        self.budget.take(n)
        self.bytes += n


def create_app(
    plane: DataPlane,
    is_ready: Callable[[], bool],
    status: Callable[[], StatusDoc],
    max_body_bytes: int = 64 << 20,
    lifespan: Any = None,
    set_controller: Callable[[str], Awaitable[StatusDoc]] | None = None,
    limits: AppLimits | None = None,
) -> Starlette:
    spec = plane.spec
    lim = limits or AppLimits(max_body_bytes=max_body_bytes)
    codec_limits = Limits(max_dims=len(spec.input.shape) + 1, max_elements=lim.max_elements)
    budget = BodyBudget(lim.max_inflight_body_bytes)

    def check_name(request: Request) -> str:
        name: str = request.path_params["name"]
        if not _NAME.fullmatch(name):
            raise BadRequest("model names are letters, digits, '_', '.' and '-' (at most 128)")
        plane.resolve(name)
        version = request.path_params.get("version")
        if version is not None and version not in VERSIONS:
            raise ModelNotFound(f"model {name!r} has no version {version[:16]!r}; it has "
                                f"{', '.join(VERSIONS)}")
        return name

    async def live(_: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(_: Request) -> Response:
        ok = is_ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def server_meta(_: Request) -> Response:
        return JSONResponse({"name": "gearshift", "version": __version__,
                             "extensions": EXTENSIONS})

    async def model_meta(request: Request) -> Response:
        name = check_name(request)
        tensor = {"name": spec.input.name, "datatype": datatype_of(spec.input.dtype),
                  "shape": [-1, *spec.input.shape]}
        variants = spec.variant_names() if name == spec.application else [name]
        return JSONResponse({"name": name, "versions": list(VERSIONS),
                             "platform": "onnxruntime_onnx",
                             "inputs": [tensor], "outputs": [
                                 {"name": o.name, "datatype": datatype_of(o.dtype),
                                  "shape": list(o.shape)} for o in plane.outputs_of(name)],
                             "parameters": {
                                 "application": spec.application, "variants": variants,
                                 "deadline_ms": spec.deadline_ms}})

    async def model_ready(request: Request) -> Response:
        name = check_name(request)
        ok = is_ready()
        return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)

    async def decode(request: Request, held: _Held) -> DecodedRequest:
        body = await read_body(request, lim.max_body_bytes, lim.body_timeout_s, held)
        encoding = request.headers.get("content-encoding")
        if encoding is not None and len(body) > OFFLOAD_BYTES // 8:
            body = await asyncio.to_thread(decompress, body, encoding, lim.max_body_bytes)
        else:
            body = decompress(body, encoding, lim.max_body_bytes)
        if encoding is not None:
            held.take(len(body))  # the inflated copy too
        given = request.headers.getlist(HEADER_LENGTH)
        if len(given) > 1:
            raise BadRequest(f"{HEADER_LENGTH} given {len(given)} times: send it once")
        header = given[0] if given else None
        if len(body) > OFFLOAD_BYTES:
            return await asyncio.to_thread(decode_request, body, header, plane.signature,
                                           codec_limits)
        return decode_request(body, header, plane.signature, codec_limits)

    async def infer(request: Request) -> Response:
        name = check_name(request)
        if not is_ready():
            raise ShuttingDown("the server is not ready: its replicas are loading, stopping or "
                               "gone (/gearshift/status says which)")
        held = _Held(budget)
        try:
            req = await decode(request, held)
            answer = await _unless_disconnected(plane.infer(name, req), request.receive)
        finally:
            budget.give(held.bytes)
        args = (name, req.id, answer.outputs, req.binary_outputs, answer.parameters)
        if _size(answer) > OFFLOAD_BYTES:
            content, header_len = await asyncio.to_thread(encode_response, *args)
        else:
            content, header_len = encode_response(*args)
        if header_len is None:
            return Response(content, media_type="application/json")
        return Response(content, media_type="application/octet-stream",
                        headers={"Inference-Header-Content-Length": str(header_len)})

    async def metrics(_: Request) -> Response:
        return Response(plane.metrics.render(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    async def status_page(_: Request) -> Response:
        return JSONResponse(status())

    async def controller(request: Request) -> Response:
        if set_controller is None:
            raise ModelNotFound("this server was started without a policy table to switch to")
        body = await read_body(request, CONTROLLER_BODY_BYTES, lim.body_timeout_s)
        doc = parse_json(body, "controller request")
        name = doc.get("controller") if isinstance(doc, dict) else None
        if not isinstance(name, str) or not _CONTROLLER.fullmatch(name):
            raise BadRequest(f'body must be {{"controller": NAME}}, NAME one of {POLICY_NAMES}')
        if len(doc) > 1:
            extra = sorted(str(k)[:32] for k in doc if k != "controller")[:5]
            raise BadRequest(f'body must be {{"controller": NAME}} and nothing else; '
                             f"unknown keys {extra}")
        return JSONResponse(await set_controller(name))

    routes = [
        Route("/v2/health/live", live), Route("/v2/health/ready", ready),
        Route("/v2", server_meta),
        Route("/v2/models/{name}", model_meta),
        Route("/v2/models/{name}/versions/{version}", model_meta),
        Route("/v2/models/{name}/ready", model_ready),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
        Route("/metrics", metrics), Route("/gearshift/status", status_page),
        Route("/gearshift/controller", controller, methods=["PUT"]),
    ]
    handlers = {GearshiftError: _gearshift_error, HTTPException: _http_error,
                ClientDisconnect: _client_gone, Exception: _internal_error}
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)


def _size(answer: Answer) -> int:
    return sum(int(a.nbytes) for a in answer.outputs.values())


async def read_body(request: Request, limit: int, timeout_s: float,
                    held: _Held | None = None) -> bytes:
    """The whole body, refusing more than `limit` bytes or taking longer than `timeout_s`;
    with `held`, each part is taken from its budget first (the declared length at once)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared[:20]} B exceeds the limit of {limit} B")
    if held is not None and declared is not None and declared.isdigit():
        held.take(int(declared))
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body exceeds the limit of {limit} B")
                if held is not None and size > held.bytes:
                    held.take(size - held.bytes)
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"request body not received within {timeout_s:g} s") from None
    return b"".join(chunks)


async def _unless_disconnected(work: Awaitable[Answer], receive: Receive) -> Answer:
    """`work`'s answer; cancelled (ClientClosed) if the client disconnects meanwhile."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnect(receive))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, GearshiftError):
                await task
            if not watch.cancelled() and watch.done():
                raise ClientClosed("the client disconnected before its answer was ready")
    return task.result()


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def answer_on_cancel(app: ASGIApp) -> ASGIApp:
    """Answer 503 (ShuttingDown) a request cancelled before it answered: uvicorn cancels what
    is still open at the graceful-shutdown timeout and would send a plain-text 500."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            if started:
                raise
            body = json.dumps({"error": "the server shut down before answering this request; "
                                        "retry on another server"}).encode()
            await send({"type": "http.response.start", "status": ShuttingDown.status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()),
                                    (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})

    return guarded


async def _gearshift_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, GearshiftError)
    headers = {}
    if isinstance(exc, Overloaded):
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code,
                        headers=exc.headers)


async def _client_gone(_: Request, exc: Exception) -> Response:
    """The client left mid-body: nobody will read this; 400 for the record."""
    return JSONResponse({"error": "the client disconnected before sending the whole body"},
                        status_code=400)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("internal error answering %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": "internal error; the server's log has the details"},
                        status_code=500)
