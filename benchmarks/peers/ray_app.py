"""Ray Serve: one deployment holding an ONNX Runtime session, KServe V2 JSON on Ray's proxy.

    python ray_app.py MODEL.onnx PORT [REPLICAS] [THREADS] [MAX_QUEUED] [MAX_ONGOING]

Fairly configured: `max_ongoing_requests` raised (the default 5 collapses under open-loop
load), one CPU per replica reserved explicitly, dashboard off, Ray bound to 127.0.0.1 (run it
only inside a loopback-only network namespace all the same: some of its ports ignore that).
"""

import sys
import time

import ray
from _v2 import infer, session
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

MODEL, PORT = sys.argv[1], int(sys.argv[2])
REPLICAS = int(sys.argv[3]) if len(sys.argv) > 3 else 1
THREADS = int(sys.argv[4]) if len(sys.argv) > 4 else 1
MAX_QUEUED = int(sys.argv[5]) if len(sys.argv) > 5 else -1  # Ray's default: unbounded
MAX_ONGOING = int(sys.argv[6]) if len(sys.argv) > 6 else 1000


@serve.deployment(num_replicas=REPLICAS, max_ongoing_requests=MAX_ONGOING,
                  max_queued_requests=MAX_QUEUED, ray_actor_options={"num_cpus": THREADS})
class V2Model:
    def __init__(self, path: str, threads: int) -> None:
        self.sess = session(path, threads)

    async def __call__(self, request: Request) -> Response:
        if request.url.path.endswith("/ready"):
            return Response(b"", 200)
        name = request.url.path.split("/v2/models/", 1)[-1].split("/", 1)[0]
        status, body = infer(self.sess, name, await request.body(),
                             request.headers.get("inference-header-content-length"))
        return Response(body, status, media_type="application/json")


if __name__ == "__main__":
    ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=2,
             log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    serve.run(V2Model.bind(MODEL, THREADS), route_prefix="/v2", name="v2")
    while True:
        time.sleep(3600)
