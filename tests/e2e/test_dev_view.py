"""The developer view through the real stack: one trace id per run in both services' logs, both
histories and the gateway's records; "where did run X stop, with what payload" answered from the
services' side alone agrees with the gateway's reconstruction for every run; the payload's
``sequence`` is right for breaks at A, at B and at max hops; with trace headers the gateway's
offline reconstruction (proxy_addons.runs.reconstruct) is exact at 100 concurrent runs."""

from __future__ import annotations

import asyncio
import json
import random

import httpx
import pytest

from proxy_addons.diagnosis import diagnose
from proxy_addons.runs import reconstruct
from services.payload import Payload
from tests.conftest import SEED_KICK, flow_records, read_jsonl

pytestmark = pytest.mark.e2e
HEADERS = {"content-type": "application/json"}


def header(pairs, name: str) -> str | None:
    return next((v for k, v in pairs or () if k.lower() == name), None)


def trace_of(rec: dict) -> str | None:
    """A flow's trace id: its request's traceparent, else (a kick that came without one) the
    traceresponse its answer carried."""
    tp = header(rec["request"]["headers"], "traceparent")
    if tp is None and rec.get("response"):
        tp = header(rec["response"]["headers"], "traceresponse")
    return tp.split("-")[1] if tp else None


async def kick_all(url: str, bodies: list[str], concurrency: int, traced: set[int] = frozenset()) -> list[httpx.Response]:
    """POST each body to the gateway's /a/, ``concurrency`` at a time; the kicks whose index is in
    ``traced`` carry a traceparent of their own (as a W3C-aware client would)."""
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=120, trust_env=False,
                                 limits=httpx.Limits(max_connections=concurrency)) as c:
        async def one(i: int, body: str) -> httpx.Response:
            h = dict(HEADERS)
            if i in traced:
                h["traceparent"] = f"00-{random.getrandbits(128):032x}-{random.getrandbits(64):016x}-01"
            async with sem:
                return await c.post(url + "/a/", content=body, headers=h)
        return await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))


def service_events(proc) -> list[dict]:
    return [e for e in read_jsonl(proc.log_path) if e.get("event") not in (None, "server")]


def history(proc, trace: str) -> list[dict]:
    return httpx.get(proc.meta["url"] + "/history", params={"trace": trace, "limit": 1000}).json()["entries"]


def stop_from_history(rows: list[dict]) -> dict:
    """The rule of docs/dev-guide.md: the run's deepest hop (both services' rows of its trace)
    is where it stopped; its result says how, its payload_in is the payload it stopped with."""
    last = max(rows, key=lambda r: r["hop"])
    return {"service": last["service"], "hop": last["hop"], "iteration": last["iteration"],
            "result": last["result"], "payload": last["payload_in"]}


def stop_from_logs(events: list[dict]) -> dict:
    """The same from the log lines alone: the deepest ``received`` and what followed it."""
    last = max((e for e in events if e["event"] == "received"), key=lambda e: e["hop"])
    ends = [e for e in events if e["span_id"] == last["span_id"] and e["event"] == "answered"]
    return {"service": last["service"], "hop": last["hop"], "iteration": last["iteration"],
            "result": ends[0]["result"] if ends else None, "payload": last["payload"]}


def as_service_saw(payload: dict) -> dict:
    """A recorded request body as the service holds it: the schema's defaults filled in (the
    seed's kick has no ``digits``)."""
    return Payload.model_validate(payload).dump()


def expected_sequence(stopped_by: str, iteration: int) -> dict:
    """What the payload's sequence must read when ``stopped_by`` received it in ``iteration``:
    every earlier iteration finished by B, and A's mark on this one if B is the receiver."""
    seq = {str(i): "b" for i in range(1, iteration)}
    return {**seq, str(iteration): "a"} if stopped_by == "b" else seq


def test_where_each_run_stopped_agrees_across_logs_history_and_gateway(start_stack):
    st = start_stack(fail_rate=0.3, max_hops=6, seed=1)
    kick = json.loads(SEED_KICK)
    bodies = [json.dumps({**kick, "name": f"run-{i}"}) for i in range(40)]  # seeded: fixed runs
    answers = asyncio.run(kick_all(st.url, bodies, concurrency=8))
    assert {r.status_code for r in answers} <= {200, 400}  # 400: A refused the kick itself
    traces = [r.headers["traceresponse"].split("-")[1] for r in answers]
    assert len(set(traces)) == 40  # a kick without a trace starts one

    records = flow_records(st.session / "flows.jsonl")
    assert all(header(r["request"]["headers"], "traceparent") for r in records if r["run"]["hop"] > 1)
    runs = reconstruct(records)
    assert len(runs) == 40
    events = service_events(st.a) + service_events(st.b)
    assert all(e["trace_id"] for e in events)  # every event line of a request names its trace
    kinds = set()
    for run in runs:
        by_flow = {r["flow_id"]: r for r in records}
        (trace,) = {trace_of(by_flow[h.flow_id]) for h in run.hops}  # one trace across its hops
        assert trace in traces
        rows = history(st.a, trace) + history(st.b, trace)
        mine = [e for e in events if e["trace_id"] == trace]
        assert sorted(r["hop"] for r in rows) == [h.hop for h in run.hops]
        assert sorted(e["hop"] for e in mine if e["event"] == "received") == [h.hop for h in run.hops]
        for h in run.hops:  # the payload each service logged/kept is the one the gateway saw
            (row,) = [r for r in rows if r["hop"] == h.hop]
            assert row["service"] == h.to and row["payload_in"] == as_service_saw(h.exchange.request)

        d = diagnose(run)
        stop = stop_from_history(rows)
        assert stop == stop_from_logs(mine)
        if d.outcome == "broken":
            b = d.brk
            assert (stop["result"], stop["service"], stop["hop"], stop["iteration"]) == \
                ("rejected", b["service"], b["hop"], b["iteration"])
            assert stop["payload"] == as_service_saw(b["state"])
            assert stop["payload"].get("sequence", {}) == expected_sequence(b["service"], b["iteration"])
            kinds.add(f"broken by {b['service']}")
        else:
            assert d.outcome == "completed" and stop["result"] == "max_hops" and stop["hop"] == 6
            final = run.kick.exchange.response["payload"]
            assert final["sequence"] == {"1": "b", "2": "b", "3": "b"}
            kinds.add("max_hops")
    assert kinds == {"broken by a", "broken by b", "max_hops"}


def test_100_concurrent_runs_rebuilt_exactly_with_header_evidence(start_stack):
    st = start_stack(max_hops=10)
    traced = set(range(0, 100, 2))  # half the kicks bring a trace, half let A start one
    answers = asyncio.run(kick_all(st.url, [SEED_KICK] * 100, concurrency=100, traced=traced))
    assert {r.status_code for r in answers} <= {200, 400}
    records = flow_records(st.session / "flows.jsonl")
    truth: dict[str, set[str]] = {}
    for rec in records:
        truth.setdefault(trace_of(rec), set()).add(rec["flow_id"])
    assert None not in truth and len(truth) == 100

    runs = reconstruct(records)
    assert sorted(map(len, ({h.flow_id for h in r.hops} for r in runs))) == sorted(map(len, truth.values()))
    for run in runs:
        flows = {h.flow_id for h in run.hops}
        trace = trace_of(next(r for r in records if r["flow_id"] == run.kick.flow_id))
        assert flows == truth[trace]
        kick_traced = header(next(r for r in records if r["flow_id"] == run.kick.flow_id)["request"]["headers"], "traceparent")
        for h in run.hops[1:]:
            # hop 2 of a kick without a trace cannot be tied by header (the kick had none)
            if h.hop >= 3 or kick_traced:
                assert h.evidence == "header", (run.run_id, h.hop, h.evidence)
