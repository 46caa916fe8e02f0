"""gearshift as a Ray Serve application: one gearshift pool per node, one controller for the
application, the KServe V2 app on Ray Serve's HTTP proxy.

    serve run gearshift.ray:app pool=pool.yaml policy=policy.json nodes=2
    serve deploy examples/ray_serve.yaml   # the same arguments under `args`

Three deployments: `GearshiftNode` (one replica per node, `max_replicas_per_node=1`, reserving
the node's cores: a `ReplicaPool` with every variant pre-loaded, so a switch is a routing
change), `GearshiftControl` (one replica: the policy, stepped every period on the nodes'
reports) and `GearshiftIngress` (`gearshift serve`'s V2 routes, errors and metric names). Ray
restarts a node whose pool has no replica left (`check_health`); its held requests are
answered 503, the rest go to the other nodes. The files named must be readable at the same path
on every node.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle

from gearshift.cluster import ClusterControl, ClusterSummary, NodeReport
from gearshift.control.factory import make_policy, parse_options
from gearshift.engine.pool_types import InferResult
from gearshift.errors import SpecError
from gearshift.planning.table import PolicyTable, load_policy
from gearshift.policy import TABLE, Controller
from gearshift.profiling.profile import Profile, load_profile
from gearshift.ray.ingress import ClusterIngress
from gearshift.ray.node import NodeError, PoolNode
from gearshift.serving.access import ASGIApp, read_token_file
from gearshift.serving.control_loop import run_periods
from gearshift.serving.server import pool_settings, prewarm_allocations
from gearshift.types import Decision
from gearshift.zoo.spec import PoolSpec, load_pool_spec


@dataclass(frozen=True)
class ClusterConfig:
    """The application's arguments (`serve run gearshift.ray:app key=value ...`)."""

    pool: str
    policy: str
    profile: str = ""  # default: profile.json beside the policy
    controller: str = TABLE
    controller_options: str = ""  # "name=value,name=value"
    nodes: int = 2
    period_s: float = 0.5
    max_queue: int = 1024
    prewarm: str = "table"
    auth_token_file: str = ""
    drain_timeout_s: float = 30.0

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> ClusterConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(args) - set(known))
        if unknown:
            raise SpecError(f"unknown argument(s) {unknown}; gearshift.ray:app takes "
                            f"{', '.join(known)}")
        if "pool" not in args or "policy" not in args:
            raise SpecError("gearshift.ray:app needs pool=POOL.yaml and policy=POLICY.json")
        values: dict[str, Any] = {}
        for name, value in args.items():
            kind = known[name].type
            try:
                values[name] = (int(value) if kind == "int" else
                                float(value) if kind == "float" else str(value))
            except ValueError:
                what = "an integer" if kind == "int" else "a number"
                raise SpecError(f"argument {name}={value!r} is not {what}") from None
        config = cls(**values)
        if config.nodes < 1 or config.period_s <= 0 or config.max_queue < 1:
            raise SpecError("nodes and max_queue must be at least 1, period_s positive")
        return config

    def profile_path(self) -> Path:
        return Path(self.profile) if self.profile else Path(self.policy).parent / "profile.json"


@dataclass(frozen=True)
class Loaded:
    """What the application's files hold, checked against the pool's digest."""

    spec: PoolSpec
    table: PolicyTable
    profile: Profile | None


def _load(config: ClusterConfig) -> tuple[Loaded, Controller[Any], Decision]:
    spec = load_pool_spec(config.pool)
    digest = spec.digest()
    table = load_policy(Path(config.policy), digest)
    path = config.profile_path()
    prof = load_profile(path, digest) if path.is_file() else None
    options = parse_options([o for o in config.controller_options.split(",") if o])
    policy, initial = make_policy(config.controller, table, prof, spec.variant_names(),
                                  options)
    return Loaded(spec, table, prof), Controller(policy, keep_log=False), initial


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
class GearshiftControl:
    def __init__(self, config: ClusterConfig) -> None:
        _, controller, initial = _load(config)
        self.control = ClusterControl(controller, initial, config.period_s)
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        def step() -> None:
            self.control.tick()
            self.control.last_error = ""

        def failed(message: str) -> None:
            self.control.last_error = message

        await run_periods(self.control.loop, self.control.clock, asyncio.sleep, step, failed)

    def _ensure_running(self) -> None:
        """The control loop runs on the replica's event loop, started by the first call."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def report(self, report: NodeReport) -> Decision:
        self._ensure_running()
        return self.control.report(report)

    async def summary(self) -> ClusterSummary:
        self._ensure_running()
        return self.control.summary()


@serve.deployment(max_ongoing_requests=4096, max_replicas_per_node=1,
                  health_check_period_s=2.0, health_check_timeout_s=10.0)
class GearshiftNode:
    async def __init__(  # type: ignore[misc]  # Serve awaits an async constructor
            self, config: ClusterConfig, control: DeploymentHandle[Any]) -> None:
        import ray

        loaded, _, initial = _load(config)
        self.config = config
        self.node = PoolNode(
            ray.get_runtime_context().get_node_id(), loaded.spec,
            pool_settings(loaded.profile, config.max_queue), initial,
            prewarm_allocations(loaded.table, config.controller, config.prewarm),
            config.period_s,
            lambda r: control.report.remote(r))
        await self.node.start()

    async def infer(self, inputs: dict[str, np.ndarray], pinned: str | None, budget_s: float
                    ) -> InferResult | NodeError:
        return await self.node.infer(inputs, pinned, budget_s)

    async def check_health(self) -> None:
        if not self.node.healthy():
            raise RuntimeError(f"the node's pool has no replica serving "
                               f"({self.node.pool.counters.last_error})")

    async def __del__(self) -> None:
        await self.node.close(self.config.drain_timeout_s)


@serve.deployment(num_replicas=1, max_ongoing_requests=4096, ray_actor_options={"num_cpus": 0})
@serve.ingress()
class GearshiftIngress:
    def __init__(self, config: ClusterConfig, node: DeploymentHandle[Any],
                 control: DeploymentHandle[Any]) -> None:
        spec = load_pool_spec(config.pool)
        token = read_token_file(Path(config.auth_token_file)) if config.auth_token_file else None

        async def call(inputs: dict[str, np.ndarray], pinned: str | None, budget_s: float
                       ) -> InferResult | NodeError:
            answer: InferResult | NodeError = await node.infer.remote(inputs, pinned, budget_s)
            return answer

        async def summary() -> ClusterSummary:
            got: ClusterSummary = await control.summary.remote()
            return got

        self.ingress = ClusterIngress(spec, call, summary, config.period_s, auth_token=token)

    def __serve_build_asgi_app__(self) -> ASGIApp:
        return self.ingress.asgi()


def build(config: ClusterConfig) -> Any:
    """The application: ingress -> nodes -> controller."""
    loaded, _, _ = _load(config)  # a bad file fails here, on the driver, with its message
    cores = loaded.table.cores
    control = GearshiftControl.bind(config)  # type: ignore[attr-defined]
    node = GearshiftNode.options(  # type: ignore[attr-defined]
        num_replicas=config.nodes, ray_actor_options={"num_cpus": cores}).bind(config, control)
    return GearshiftIngress.bind(config, node, control)  # type: ignore[attr-defined]


def app(args: dict[str, Any]) -> Any:
    """`serve run gearshift.ray:app pool=... policy=... [nodes=2 controller=table ...]`."""
    return build(ClusterConfig.from_args(args))
