"""The open-loop load client against a real gearshift server (tiny pool) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import csv
import gc
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from gearshift.cli_loadgen import loadgen
from gearshift.loadgen.client import LoadResult, Target, run_open_loop
from gearshift.loadgen.payloads import (
    labelled_payloads,
    model_info,
    parse_answer,
    random_payloads,
)
from gearshift.loadgen.workload import parse_workload
from gearshift.protocol import decode_request
from gearshift.zoo.spec import InputSpec, PoolSpec
from tests.reference import mlp_reference
from tests.servers import free_port, running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def url(tiny_spec: PoolSpec) -> Iterator[str]:
    with running_server(tiny_spec) as (address, _):
        yield address


def _run(url: str, arrivals: np.ndarray, payloads: list, deadline_ms: float = 1000.0,
         model: str = "tiny", **kw: float) -> LoadResult:
    kw.setdefault("timeout_s", 10.0)
    return asyncio.run(run_open_loop(url, model, arrivals, payloads, deadline_ms, **kw))


def _one_record_each(result: LoadResult, arrivals: np.ndarray) -> None:
    ids = [r.request_id for r in result.records]
    assert ids == list(range(len(arrivals))), "one record per request, none twice"
    np.testing.assert_array_equal([r.scheduled_s for r in result.records], arrivals)


def test_payloads_decode_as_the_server_reads_them(tiny_spec):
    p = random_payloads(tiny_spec, 3, seed=1, deadline_ms=25.0)
    assert len({x.body for x in p}) == 3 and all(x.label is None for x in p)
    req = decode_request(p[0].body, str(p[0].header_length))
    assert req.inputs["input"].shape == (1, 1, 8, 8) and req.inputs["input"].dtype == np.float32
    assert req.parameters == {"deadline_ms": 25.0, "binary_data_output": True}
    assert req.binary_outputs is True
    assert random_payloads(tiny_spec, 3, seed=1, deadline_ms=25.0) == p  # seeded


def test_labelled_payloads_check_their_input(tiny_spec):
    images = np.zeros((4, 1, 8, 8), np.float64)
    p = labelled_payloads(tiny_spec, images, np.arange(4), 50.0)
    assert [x.label for x in p] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="expected"):
        labelled_payloads(tiny_spec, np.zeros((4, 8, 8), np.float32), np.arange(4), 50.0)
    with pytest.raises(ValueError, match="preprocess"):
        labelled_payloads(tiny_spec, np.zeros((4, 1, 8, 8), np.uint8), np.arange(4), 50.0)
    with pytest.raises(ValueError, match="labels"):
        labelled_payloads(tiny_spec, images, np.arange(3), 50.0)


def test_answers_and_metadata_are_read_without_raising():
    assert parse_answer(503, b'{"error":"queue full"}', None, None).error == "queue full"
    bad = parse_answer(200, b"<html>", None, 3)
    assert bad.error.startswith("unreadable answer (HTTP 200)") and bad.correct is None
    doc = b'{"outputs":[{"name":"y","datatype":"FP32","shape":[1,3],"data":[0,5,1]}]}'
    assert parse_answer(200, doc, None, 1).correct is True
    meta = {"inputs": [{"name": "x", "datatype": "UINT8", "shape": [-1, 3, 4]}]}
    info = model_info(meta)
    assert (info.input.shape, info.input.dtype, info.deadline_ms) == ([3, 4], "uint8", None)
    with pytest.raises(ValueError, match="one input"):
        model_info({"inputs": []})
    assert Target.parse("127.0.0.1:81") == Target.parse("http://127.0.0.1:81/")


def test_poisson_run_records_every_arrival_once(url, tiny_spec):
    arrivals = parse_workload("poisson:100").arrivals(2.0, seed=3)
    payloads = random_payloads(tiny_spec, 16, seed=0, deadline_ms=1000.0)
    result = _run(url, arrivals, payloads)
    _one_record_each(result, arrivals)
    assert all(r.status == 200 and not r.error for r in result.records)
    assert {r.variant for r in result.records} <= set(tiny_spec.variant_names())
    for r in result.records:
        assert r.scheduled_s <= r.sent_s <= r.completed_s
        assert r.on_time == (r.latency_ms <= r.deadline_ms) and r.correct is None
    assert result.send_lag.count == len(arrivals) and result.send_lag.p50_ms >= 0
    assert result.elapsed_s < arrivals[-1] + 5.0


def test_a_run_keeps_the_heap_out_of_the_collectors_way_and_hands_it_back(url, tiny_spec):
    # a full collection in the client would hold its sends and its clock (gearshift.heap)
    arrivals = parse_workload("poisson:50").arrivals(0.6, seed=5)
    payloads = random_payloads(tiny_spec, 4, seed=0, deadline_ms=1000.0)
    frozen: list[int] = []
    result = _run(url, arrivals, payloads,
                  progress=lambda *_: frozen.append(gc.get_freeze_count()))
    _one_record_each(result, arrivals)
    assert frozen and min(frozen) > 1000, "frozen while it runs"
    assert gc.get_freeze_count() == 0, "handed back after"


def test_tight_deadline_on_time_matches_latency(url, tiny_spec):
    arrivals = parse_workload("poisson:200").arrivals(1.0, seed=4)
    payloads = random_payloads(tiny_spec, 4, seed=0, deadline_ms=2.0)
    result = _run(url, arrivals, payloads, deadline_ms=2.0)
    _one_record_each(result, arrivals)
    for r in result.records:  # some late or dropped (504) on a busy 2-core machine; all consistent
        assert r.status in (200, 504), r.error
        assert r.on_time == (r.status == 200 and r.latency_ms <= 2.0)


def test_labelled_answers_are_scored_by_the_answering_variant(url, tiny_spec):
    rng = np.random.default_rng(5)
    images = rng.standard_normal((12, 1, 8, 8)).astype(np.float32)
    ref = {v: mlp_reference(tiny_spec.model_path(v), images).argmax(axis=1)
           for v in tiny_spec.variant_names()}
    first = tiny_spec.variant_names()[0]  # the test server serves this one
    labels = np.where(np.arange(12) % 2 == 0, ref[first], (ref[first] + 1) % 10)
    payloads = labelled_payloads(tiny_spec, images, labels, 1000.0)
    arrivals = np.arange(24) * 0.01
    result = _run(url, arrivals, payloads)
    _one_record_each(result, arrivals)
    for r in result.records:
        k = r.request_id % 12
        assert r.status == 200
        assert r.correct == (ref[r.variant][k] == labels[k])
    assert {r.correct for r in result.records} == {True, False}


def test_one_connection_queues_requests_in_order(url, tiny_spec):
    arrivals = np.zeros(20)
    result = _run(url, arrivals, random_payloads(tiny_spec, 2, 0, 1000.0), max_connections=1)
    _one_record_each(result, arrivals)
    assert all(r.status == 200 for r in result.records)
    sent = [r.sent_s for r in result.records]
    assert sent == sorted(sent) and result.send_lag.max_ms > 0


def test_server_errors_are_recorded_with_their_message(url, tiny_spec):
    arrivals = np.arange(5) * 0.01
    result = _run(url, arrivals, random_payloads(tiny_spec, 1, 0, 1000.0), model="nope")
    _one_record_each(result, arrivals)
    assert all(r.status == 404 and "unknown model 'nope'" in r.error for r in result.records)
    assert not any(r.on_time for r in result.records)


def test_no_server_every_request_fails_with_status_0(tiny_spec):
    port = free_port()  # nothing listens here
    arrivals = np.linspace(0.0, 0.5, 40)
    t0 = time.monotonic()
    result = _run(f"127.0.0.1:{port}", arrivals, random_payloads(tiny_spec, 2, 0, 50.0),
                  timeout_s=2.0)
    assert time.monotonic() - t0 < 0.5 + 2.0 + 1.0
    _one_record_each(result, arrivals)
    for r in result.records:
        assert r.status == 0 and not r.on_time and r.variant == ""
        assert f"connection to 127.0.0.1:{port} failed" in r.error


def test_unanswered_requests_fail_at_the_timeout():
    with socket.socket() as listener:  # accepts connections (kernel backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        arrivals = np.linspace(0.0, 0.3, 10)
        payloads = random_payloads(InputSpec(name="x", shape=[2]), 1, 0, 50.0)
        t0 = time.monotonic()
        result = _run(f"127.0.0.1:{port}", arrivals, payloads, timeout_s=1.0)
        assert time.monotonic() - t0 < 0.3 + 1.0 + 1.0
    _one_record_each(result, arrivals)
    for r in result.records:
        assert r.status == 0 and not r.on_time
        assert "no answer" in r.error and r.sent_s >= r.scheduled_s


def test_cli_writes_records_and_summary(url, tiny_pool_path: Path, tmp_path: Path):
    app = typer.Typer()
    app.command("loadgen")(loadgen)
    app.command("other")(lambda: None)  # two commands: `loadgen` is a subcommand, as in the CLI
    runner = CliRunner()
    out = tmp_path / "records.csv"
    res = runner.invoke(app, ["loadgen", url, "--workload", "poisson:50", "--duration", "1",
                              "--out", str(out), "--pool", str(tiny_pool_path)])
    assert res.exit_code == 0, res.output
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert rows and all(row["status"] == "200" for row in rows)
    assert f"requests {len(rows)}, answered {len(rows)}" in res.output
    assert "send lag p50" in res.output
    # no pool: the input comes from the server's model metadata
    res = runner.invoke(app, ["loadgen", f"http://{url}", "--workload", "poisson:20",
                              "--duration", "0.5", "--out", str(out), "--model", "tiny-m"])
    assert res.exit_code == 0, res.output
    with out.open() as f:
        assert {row["variant"] for row in csv.DictReader(f)} == {"tiny-m"}
    res = runner.invoke(app, ["loadgen", url, "--workload", "poisson:x", "--duration", "1",
                              "--out", str(out), "--pool", str(tiny_pool_path)])
    assert res.exit_code == 2 and "bad workload" in res.output


def test_an_all_json_body_is_sent_as_json(url, tiny_spec):
    """A V2 body without binary tensors goes out as `application/json` with no binary-header
    length (servers that know only JSON, MLServer among them, refuse anything else), and the
    server answers it."""
    from gearshift.loadgen.client import _content_headers
    from gearshift.loadgen.payloads import Payload

    x = np.zeros((1, *tiny_spec.input.shape), dtype=np.float32)
    body = json.dumps({"inputs": [{"name": tiny_spec.input.name, "shape": list(x.shape),
                                   "datatype": "FP32", "data": x.ravel().tolist()}]}).encode()
    plain = Payload(body, len(body))
    assert _content_headers(plain) == "Content-Type: application/json\r\n"
    binary = random_payloads(tiny_spec, 1, seed=0, deadline_ms=1000.0)[0]
    assert f"Inference-Header-Content-Length: {binary.header_length}" in _content_headers(binary)
    arrivals = np.linspace(0.0, 0.5, 10)
    result = _run(url, arrivals, [plain])
    assert [r.status for r in result.records] == [200] * 10
