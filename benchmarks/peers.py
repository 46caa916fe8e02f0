"""gearshift beside what users would run instead: the front end's rate and latency, one run.

Systems (each a server on 127.0.0.1 serving the same trivially small ONNX model through ONNX
Runtime over KServe V2 REST with JSON tensors; `benchmarks/peers/` holds the peers' servers):
gearshift (`gearshift serve`, a static policy, 2 replicas x 1 thread), a bare Starlette +
uvicorn endpoint calling ONNX Runtime in the handler (the floor), Ray Serve (2 replicas,
`max_ongoing_requests` 1000, one CPU each), MLServer (a runtime calling ONNX Runtime) and
Triton through PyTriton (if its bundled server starts here; the table says if not).

Each peer is installed into its own virtual environment under `--out` (never a dependency of
gearshift; pinned versions, reused when present). Every server and the load run inside a
loopback-only network namespace (Ray binds beyond loopback even when told not to), created for
the run and deleted after it, with Ray's files removed. Load: gearshift's open-loop client,
Poisson arrivals at each offered rate for `--seconds`, the systems taking turns at every rate
(A/B interleaved) for `--repeats` rounds; per system and rate the median over rounds of the
achieved rate, p50 and p99 latency of answered requests. "Sustained": the highest offered rate
at which >= 99 % of requests were answered with p99 under `--p99-ms`. Writes `peers.json` and
`frontend.png` (offered rate against p99, one line per system) to `--out`.

Run by hand, as root (network namespaces), nothing else running (~10 min after installs):
    .venv/bin/python benchmarks/peers.py --out out/bench/peers
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from gearshift.experiment.live import free_port

HERE = Path(__file__).resolve().parent
APPS = HERE / "peers"
NETNS_ENV = "GEARSHIFT_PEERS_NETNS"
PEERS: dict[str, tuple[str, ...]] = {  # venv name -> pinned packages
    "ray": ("ray[serve]==2.60.0",),
    # uvloop 0.22+ raises in MLServer 1.7.1's parallel workers (get_event_loop outside a loop)
    "mlserver": ("mlserver==1.7.1", "uvloop<0.22"),
    "pytriton": ("nvidia-pytriton==0.7.0",),
}
COMMON = ("onnxruntime==1.32.0",)  # the ONNX Runtime gearshift serves with


@dataclass
class Point:
    """One system at one offered rate, over the rounds: medians."""

    offered_rps: float
    achieved_rps: list[float] = field(default_factory=list)
    answered: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        return {"offered_rps": self.offered_rps,
                **{k: float(np.median(getattr(self, k))) for k in
                   ("achieved_rps", "answered", "p50_ms", "p99_ms")}}


@dataclass
class System:
    name: str
    url: str
    model: str
    proc: subprocess.Popen[bytes]
    points: dict[float, Point] = field(default_factory=dict)
    failing_from: float = float("inf")  # stop offering rates above one it clearly failed


# --- installs (outside the namespace: they need the package index) ------------------------


def ensure_venv(root: Path, name: str, packages: tuple[str, ...]) -> tuple[Path, float]:
    """The venv's python, and the seconds the install took (0 if reused)."""
    venv = root / "venvs" / name
    stamp = venv / ".gearshift-peers"
    want = "\n".join((*packages, *COMMON))
    if stamp.is_file() and stamp.read_text() == want:
        return venv / "bin" / "python", 0.0
    t0 = time.perf_counter()
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
           "--disable-pip-version-check"]
    subprocess.run([*pip, *packages, *COMMON], check=True)
    stamp.write_text(want)
    return venv / "bin" / "python", time.perf_counter() - t0


# --- the namespace ------------------------------------------------------------------------


def in_namespace(argv: list[str]) -> int:
    """Run this script again inside a fresh loopback-only network namespace; delete it after."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise SystemExit("peers.py needs root and iproute2 (ip netns): Ray must run inside a "
                         "loopback-only network namespace")
    ns = f"gearshift-peers-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        env = {**os.environ, NETNS_ENV: ns}
        return subprocess.run(["ip", "netns", "exec", ns, sys.executable, *argv],
                              check=False, env=env).returncode
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)
        for leftover in (Path.home() / ".ray", Path("/tmp/ray")):
            shutil.rmtree(leftover, ignore_errors=True)


# --- servers ------------------------------------------------------------------------------


def tiny_model(tmp: Path) -> tuple[Path, Path, Path]:
    """gearshift's pool and static policy for the 1-unit MLP every system serves (the cost is
    the serving path's), and its ONNX file: (pool.yaml, policy.json, model.onnx)."""
    from bench_frontend import nop_server_files

    from gearshift.zoo.spec import load_pool_spec

    pool, policy = nop_server_files(tmp)
    return pool, policy, load_pool_spec(pool).model_path("nop")


LOGS: dict[int, Path] = {}  # server pid -> its output, to say why one did not start


def start(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
          ) -> subprocess.Popen[bytes]:
    log = Path(tempfile.mkstemp(prefix="gearshift-peer-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    LOGS[proc.pid] = log
    return proc


def why_not(proc: subprocess.Popen[bytes]) -> str:
    """The last error line a server that did not start wrote."""
    log = LOGS.get(proc.pid)
    lines = log.read_text(errors="replace").splitlines() if log and log.is_file() else []
    errors = [ln for ln in lines if "Error" in ln or "error" in ln]
    return (errors or lines or ["no output"])[-1].strip()[:300]


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 180.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left."""
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue


def start_gearshift(pool: Path, policy: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    from gearshift.zoo.spec import load_pool_spec

    port = free_port()
    proc = start([sys.executable, "-m", "gearshift.cli", "serve", str(pool), "--policy",
                  str(policy), "--port", str(port)])
    return proc, f"http://127.0.0.1:{port}", load_pool_spec(pool).application


def start_mlserver(python: Path, model: Path, tmp: Path, workers: int = 2, threads: int = 1
                   ) -> tuple[subprocess.Popen[bytes], str]:
    """MLServer with `workers` parallel workers, each running `model` on `threads` threads."""
    port = free_port()
    folder = tmp / f"mlserver-{workers}x{threads}"
    (folder / "model").mkdir(parents=True)
    (folder / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(),
        "metrics_port": free_port(), "parallel_workers": workers, "debug": False}))
    (folder / "model" / "model-settings.json").write_text(json.dumps({
        "name": "model", "implementation": "mlserver_runtime.OnnxRuntime",
        "parameters": {"uri": str(model), "extra": {"threads": threads}}}))
    mlserver = python.parent / "mlserver"
    proc = start([str(mlserver), "start", str(folder)], cwd=folder,
                 env={"PYTHONPATH": str(APPS)})
    return proc, f"http://127.0.0.1:{port}"


def start_systems(model: Path, pool: Path, policy: Path, pythons: dict[str, Path], tmp: Path
                  ) -> tuple[list[System], dict[str, str]]:
    """Every system up and ready, or the reason it is not."""
    systems, missing = [], {}
    proc, url, app = start_gearshift(pool, policy)
    launches: list[tuple[str, subprocess.Popen[bytes], str, str]] = [("gearshift", proc, url, app)]
    port = free_port()
    launches.append(("starlette (floor)", start([sys.executable, "floor_app.py", str(model),
                                                 str(port)], cwd=APPS),
                     f"http://127.0.0.1:{port}", "model"))
    if "ray" in pythons:
        port = free_port()
        launches.append(("ray serve", start([str(pythons["ray"]), "ray_app.py", str(model),
                                             str(port), "2", "1"], cwd=APPS),
                         f"http://127.0.0.1:{port}", "model"))
    if "mlserver" in pythons:
        proc, url = start_mlserver(pythons["mlserver"], model, tmp)
        launches.append(("mlserver", proc, url, "model"))
    if "pytriton" in pythons:
        port = free_port()
        launches.append(("triton (pytriton)", start([str(pythons["pytriton"]),
                                                     "pytriton_app.py", str(model), str(port)],
                                                    cwd=APPS),
                         f"http://127.0.0.1:{port}", "model"))
    for name, proc, url, model_name in launches:
        if wait_ready(url, proc):
            systems.append(System(name, url, model_name, proc))
        else:
            state = "exited" if proc.poll() is not None else "not ready in 180 s"
            stop(proc)
            missing[name] = f"{state}: {why_not(proc)}"
    return systems, missing


# --- load ---------------------------------------------------------------------------------


def json_payload(model: Path) -> object:
    """One KServe V2 JSON request for `model`'s input (batch 1, seeded values)."""
    import onnx

    from gearshift.loadgen.payloads import Payload

    graph = onnx.load(str(model)).graph
    inp = graph.input[0]
    shape = [1, *(d.dim_value for d in inp.type.tensor_type.shape.dim[1:])]
    data = np.random.default_rng(0).standard_normal(int(np.prod(shape))).round(4).tolist()
    body = json.dumps({"inputs": [{"name": inp.name, "shape": shape, "datatype": "FP32",
                                   "data": data}]}, separators=(",", ":")).encode()
    return Payload(body, len(body))


def measure(system: System, rate: float, seconds: float, payload: object, seed: int) -> None:
    from gearshift.loadgen.arrivals import poisson_arrivals
    from gearshift.loadgen.client import run_open_loop

    arrivals = poisson_arrivals(rate, seconds, seed)
    result = asyncio.run(run_open_loop(system.url, system.model, arrivals,
                                       [payload],  # type: ignore[list-item]
                                       deadline_ms=1000.0, timeout_s=10.0))
    ok = [r for r in result.records if r.status == 200]
    latency = np.array([(r.completed_s - r.sent_s) * 1000.0 for r in ok])
    point = system.points.setdefault(rate, Point(rate))
    point.answered.append(len(ok) / max(1, len(result.records)))
    point.achieved_rps.append(len(ok) / max(result.elapsed_s, 1e-9))
    point.p50_ms.append(float(np.percentile(latency, 50)) if len(ok) else float("nan"))
    point.p99_ms.append(float(np.percentile(latency, 99)) if len(ok) else float("nan"))
    if point.answered[-1] < 0.9:
        system.failing_from = min(system.failing_from, rate)


def sustained(points: list[dict[str, float]], p99_ms: float) -> float:
    ok = [p["offered_rps"] for p in points if p["answered"] >= 0.99 and p["p99_ms"] <= p99_ms]
    return max(ok, default=0.0)


def figure(results: dict[str, list[dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, points in results.items():
        xs = [p["offered_rps"] for p in points if p["answered"] >= 0.9]
        ys = [p["p99_ms"] for p in points if p["answered"] >= 0.9]
        ax.plot(xs, ys, marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="offered load (req/s, open loop, Poisson)",
           ylabel="p99 latency of answered requests (ms)",
           title="Front end: a trivially small ONNX model, KServe V2 JSON, 2 cores")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def run_inside(a: argparse.Namespace, pythons: dict[str, Path]) -> None:
    rates = [float(r) for r in a.rates.split(",")]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pool, policy, model = tiny_model(tmp)
        payload = json_payload(model)
        systems, missing = start_systems(model, pool, policy, pythons, tmp)
        try:
            for name, why in missing.items():
                print(f"{name}: not measured ({why})")
            for system in systems:  # warm every path once
                measure(system, rates[0], 1.0, payload, seed=0)
                system.points.clear()
            for round_ in range(a.repeats):
                for rate in rates:
                    for system in systems:
                        if rate <= system.failing_from:
                            measure(system, rate, a.seconds, payload, seed=round_)
                    print(f"round {round_ + 1}/{a.repeats}: {rate:g} req/s done", flush=True)
        finally:
            for system in systems:
                stop(system.proc)
            for log in LOGS.values():
                log.unlink(missing_ok=True)
    results = {s.name: [p.summary() for p in s.points.values()] for s in systems}
    floor = sustained(results.get("starlette (floor)", []), a.p99_ms)
    print(f"| system | sustained req/s (>= 99 % answered, p99 <= {a.p99_ms:g} ms) | "
          "vs floor | p50 / p99 ms at the lowest rate |")
    print("|---|---|---|---|")
    for name, points in results.items():
        s = sustained(points, a.p99_ms)
        low = points[0] if points else {"p50_ms": float("nan"), "p99_ms": float("nan")}
        print(f"| {name} | {s:g} | {s / floor if floor else float('nan'):.2f} | "
              f"{low['p50_ms']:.1f} / {low['p99_ms']:.1f} |")
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "peers.json").write_text(json.dumps(
        {"results": results, "not_measured": missing, "rates": rates, "seconds": a.seconds,
         "repeats": a.repeats, "p99_ms": a.p99_ms}, indent=2))
    figure(results, a.out / "frontend.png")
    print(f"wrote {a.out / 'peers.json'} and {a.out / 'frontend.png'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out/bench/peers"))
    ap.add_argument("--rates", default="50,100,200,400,800,1200,1600,2400")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--p99-ms", type=float, default=50.0)
    ap.add_argument("--skip", default="", help="peers not to install or run, commas")
    a = ap.parse_args()
    a.out = a.out.resolve()
    skip = {s for s in a.skip.split(",") if s}
    if os.environ.get(NETNS_ENV) is None:
        for name, packages in PEERS.items():
            if name not in skip:
                _, took = ensure_venv(a.out, name, packages)
                print(f"{name}: " + (f"installed in {took:.0f} s" if took else "venv reused"))
        raise SystemExit(in_namespace([str(Path(__file__).resolve()), *sys.argv[1:]]))
    pythons = {n: a.out / "venvs" / n / "bin" / "python" for n in PEERS if n not in skip}
    run_inside(a, pythons)


if __name__ == "__main__":
    main()
