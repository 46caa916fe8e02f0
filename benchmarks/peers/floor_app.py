"""The floor: a bare Starlette + uvicorn endpoint calling ONNX Runtime in the handler.

    python floor_app.py MODEL.onnx PORT [THREADS]
"""

import sys

import uvicorn
from _v2 import infer, session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SESSION = session(sys.argv[1], int(sys.argv[3]) if len(sys.argv) > 3 else 1)


async def handle(request: Request) -> Response:
    status, body = infer(SESSION, request.path_params["name"], await request.body(),
                         request.headers.get("inference-header-content-length"))
    return Response(body, status, media_type="application/json")


async def ready(request: Request) -> Response:
    return Response(b"", 200)


app = Starlette(routes=[Route("/v2/models/{name}/infer", handle, methods=["POST"]),
                        Route("/v2/health/ready", ready)])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
                access_log=False)
