"""Faults injected into a serving `gearshift serve` under load: a replica killed with SIGKILL while
the server runs steadily, while it changes R x T, and while it switches variant.

The server (the soak pool of `benchmarks/soak.py`, static controller at 2 replicas x 1 thread)
gets a Poisson load at 0.6x its capacity; a third of the way in, one replica that is serving is
killed (for the R x T change and the switch, right after `PUT /gearshift/controller` asks for
`static:soak-s@1x2` or `static:soak-l@2x1`, while the change is under way). It reports what
every request got, how many were lost (an error other than the killed replica's one request in
flight), and how long until the pool had every replica of its allocation ready again.

    .venv/bin/python -m benchmarks.faults            # all three
    .venv/bin/python -m benchmarks.faults --when rxt

`tests/test_faults.py` runs the same function.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import httpx
import numpy as np

from benchmarks.soak import (
    _capacity,
    _children,
    _count,
    _load,
    _poisson,
    _serve,
    exit_problems,
)

When = Literal["steady", "rxt", "switch"]
TARGET = {"steady": None, "rxt": "static:soak-s@1x2", "switch": "static:soak-l@2x1"}


@dataclass
class FaultResult:
    when: str
    requests: int
    statuses: dict[int, int]
    worker_errors: int  # 500s that say a replica died serving them (at most the one in flight)
    other_errors: list[str]  # anything else that failed (must be empty)
    replaced_s: float  # from the kill until every replica of the allocation was ready
    worker_restarts: int
    final: dict[str, object]  # variant, replicas x threads once the load was over
    controller_put: int  # the PUT's HTTP status (0: none sent)
    exit_code: int
    children_left: int
    shm_left: int

    def problems(self) -> list[str]:
        out = []
        if self.worker_errors > 1:
            out.append(f"{self.worker_errors} requests failed with the replica (at most 1)")
        if self.other_errors:
            out.append(f"other failures: {self.other_errors[:5]}")
        if not self.replaced_s <= 2.0:
            out.append(f"replica not replaced within 2 s ({self.replaced_s:.2f} s)")
        if self.when != "steady" and self.controller_put != 200:
            out.append(f"the controller change answered {self.controller_put}")
        return out + exit_problems(self.exit_code, self.children_left, self.shm_left)


def _status(url: str) -> dict[str, object]:
    out: dict[str, object] = httpx.get(f"http://{url}/gearshift/status", timeout=5.0).json()
    return out


def _ready_replicas(url: str) -> int:
    st = _status(url)
    value = st.get("workers_ready", 0)
    return int(value) if isinstance(value, (int, float)) else 0


def run_fault(work: Path, when: When = "steady", seconds: float = 6.0, seed: int = 2
              ) -> FaultResult:
    served = _serve(work, 1024)
    url = served.url
    try:
        rng = np.random.default_rng(seed)
        capacity = _capacity(served, rng)
        arrivals = _poisson(0.6 * capacity, seconds, rng)
        out: dict[str, float] = {}

        def inject(t0: float) -> None:
            time.sleep(max(0.0, t0 + seconds / 3 - time.monotonic()))
            victims = sorted(_children(served.proc.pid))
            target = TARGET[when]
            restarts = int(_status(url).get("worker_restarts", 0) or 0)  # type: ignore[arg-type]
            # Stopped first, so that it holds a request (the pool keeps dispatching to it), then
            # killed while the change is under way.
            os.kill(victims[0], signal.SIGSTOP)
            time.sleep(0.3)
            if target is not None:
                put = threading.Thread(target=lambda: out.update(put_status=httpx.put(
                    f"http://{url}/gearshift/controller", json={"controller": target},
                    timeout=60.0).status_code))
                put.start()
                time.sleep(0.03)
            os.kill(victims[0], signal.SIGKILL)
            killed = time.monotonic()
            if target is not None:
                put.join(60)
            end = killed + 10.0
            while time.monotonic() < end:
                st = _status(url)
                gone = victims[0] not in _children(served.proc.pid)
                restarted = int(st.get("worker_restarts", 0) or 0) > restarts  # type: ignore[arg-type]
                full = _ready_replicas(url) >= int(st.get("replicas", 0) or 0)  # type: ignore[arg-type]
                if gone and full and (restarted or target == TARGET["rxt"]):
                    out["replaced_s"] = time.monotonic() - killed
                    return
                time.sleep(0.02)

        t0 = time.monotonic()
        injector = threading.Thread(target=inject, args=(t0,), daemon=True)
        injector.start()
        records = _load(url, arrivals, served.spec)
        injector.join(30)
        final = _status(url)
    finally:
        code = served.terminate()
    children, shm = served.left_behind()
    worker = [r for r in records if r.status == 500 and "died while serving" in r.error]
    other = [f"{r.status}: {r.error[:120]}" for r in records
             if r.status not in (200, 504) and r not in worker]
    return FaultResult(
        when, len(records), _count(records), len(worker), other,
        round(out.get("replaced_s", float("inf")), 3),
        int(final.get("worker_restarts", 0) or 0),  # type: ignore[arg-type]
        {k: final.get(k) for k in ("variant", "replicas", "threads")},
        int(out.get("put_status", 0)), code, children, shm)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--when", choices=["steady", "rxt", "switch", "all"], default="all")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--work", type=Path, default=Path("out/faults"))
    a = ap.parse_args()
    results = []
    for when in (["steady", "rxt", "switch"] if a.when == "all" else [a.when]):
        d = a.work / when
        d.mkdir(parents=True, exist_ok=True)
        res = run_fault(d, when, a.seconds)  # type: ignore[arg-type]
        results.append(asdict(res) | {"problems": res.problems()})
    print(json.dumps(results, indent=1))
    sys.exit(1 if any(r["problems"] for r in results) else 0)


if __name__ == "__main__":
    main()
