"""The ASGI app: KServe V2 REST routes, Prometheus metrics and a JSON status page.

The only module that imports the web framework. Every error becomes the protocol's
`{"error": "..."}` body with the error's HTTP status (and `Retry-After` when shedding load).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gearshift import __version__
from gearshift.errors import (
    BadRequest,
    GearshiftError,
    ModelNotFound,
    Overloaded,
    PayloadTooLarge,
    ShuttingDown,
)
from gearshift.protocol import (
    HEADER_LENGTH,
    datatype_of,
    decode_request,
    decompress,
    encode_response,
)
from gearshift.serving.dataplane import DataPlane

EXTENSIONS = ["binary_tensor_data", "gearshift_model_switching"]


def create_app(
    plane: DataPlane,
    is_ready: Callable[[], bool],
    status: Callable[[], dict[str, Any]],
    max_body_bytes: int = 64 << 20,
    lifespan: Any = None,
    set_controller: Callable[[str], Awaitable[dict[str, Any]]] | None = None,
) -> Starlette:
    spec = plane.spec

    async def live(_: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(_: Request) -> Response:
        ok = is_ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def server_meta(_: Request) -> Response:
        return JSONResponse({"name": "gearshift", "version": __version__,
                             "extensions": EXTENSIONS})

    async def model_meta(request: Request) -> Response:
        name = request.path_params["name"]
        plane.resolve(name)
        tensor = {"name": spec.input.name, "datatype": datatype_of(spec.input.dtype),
                  "shape": [-1, *spec.input.shape]}
        variants = spec.variant_names() if name == spec.application else [name]
        return JSONResponse({"name": name, "versions": ["1"], "platform": "onnxruntime_onnx",
                             "inputs": [tensor], "outputs": [], "parameters": {
                                 "application": spec.application, "variants": variants,
                                 "deadline_ms": spec.deadline_ms}})

    async def model_ready(request: Request) -> Response:
        plane.resolve(request.path_params["name"])
        ok = is_ready()
        return JSONResponse({"name": request.path_params["name"], "ready": ok},
                            status_code=200 if ok else 503)

    async def infer(request: Request) -> Response:
        if not is_ready():
            raise ShuttingDown("the server is not ready: replicas are loading or stopping")
        body = await _read_body(request, max_body_bytes)
        body = decompress(body, request.headers.get("content-encoding"), max_body_bytes)
        req = decode_request(body, request.headers.get(HEADER_LENGTH))
        name = request.path_params["name"]
        answer = await plane.infer(name, req)
        content, header_len = encode_response(name, req.id, answer.outputs,
                                              req.binary_outputs, answer.parameters)
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
        try:
            name = (await request.json())["controller"]
        except (ValueError, KeyError, TypeError):
            raise BadRequest('body must be {"controller": "table|queue-aware|static:V"}') from None
        return JSONResponse(await set_controller(str(name)))

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
                Exception: _internal_error}
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} B exceeds the limit of {limit} B")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} B")
        chunks.append(chunk)
    return b"".join(chunks)


async def _gearshift_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, GearshiftError)
    headers = {}
    if isinstance(exc, Overloaded):
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


async def _internal_error(_: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"},
                        status_code=500)

