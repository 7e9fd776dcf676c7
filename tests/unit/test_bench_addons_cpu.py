"""The in-process harness of ``bench.addons_cpu`` drives runs the gateway reads as the real ones:
one run per kick, the hops placed by the services' trace header, payloads as the services send
them (the figures it prints are only worth what its flows are)."""

from __future__ import annotations

import asyncio
import logging

from bench.addons_cpu import drive, mitmdump_master, payloads
from tests.conftest import read_jsonl


def test_the_harness_runs_are_read_as_real_runs(tmp_path):
    got = asyncio.run(drive("proxy_addons.gateway", 3, 10, str(tmp_path)))
    assert got["total"] > 0
    (session,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    flows = [r for r in read_jsonl(session / "flows.jsonl") if r.get("type", "flow") == "flow"]
    runs = read_jsonl(session / "runs.jsonl")
    assert len(flows) == 30 and len(runs) == 3
    assert {r["outcome"] for r in runs} == {"completed"} and {len(r["hops"]) for r in runs} == {10}
    inner = [f for f in flows if f["run"]["parent"] is not None]
    # the kick has no trace yet (A's instrumentation starts it): its child is placed by lineage,
    # every later hop by the trace header it carries
    assert len(inner) == 27
    assert {f["run"]["evidence"] for f in inner if f["run"]["hop"] == 2} == {"lineage"}
    assert {f["run"]["evidence"] for f in inner if f["run"]["hop"] > 2} == {"header"}
    assert all(any(k == "traceparent" for k, _ in f["request"]["headers"]) for f in inner)


def test_payloads_follow_the_services():
    ps = payloads(6)
    assert ps[0] == {"name": "payload", "d;5Digits": [], "avg": None, "max": None, "min": None}
    assert ps[5]["sequence"] == {"1": "b", "2": "b", "3": "a"} and len(ps[5]["digits"]) == 3
    assert ps[4]["avg"] == sum(ps[4]["digits"]) / 2


COUNTING_SCRIPT = '''
import collections
from proxy_addons.routing import Routing


class Count:
    def __init__(self):
        self.seen = collections.Counter()

    def requestheaders(self, flow):
        self.seen["requestheaders"] += 1

    def request(self, flow):
        self.seen["request"] += 1

    def responseheaders(self, flow):
        self.seen["responseheaders"] += 1

    def response(self, flow):
        self.seen["response"] += 1

    def update(self, flows):
        self.seen["update"] += 1


counter = Count()
addons = [Routing(), counter]
'''


def test_the_harness_dispatches_as_mitmdump_does(tmp_path, monkeypatch, caplog):
    """mitmdump's whole addon chain, the script under its script loader, each hop's four events
    (each followed by mitmproxy's ``update``), and no addon failing on the harness's flows: a
    failing built-in addon (e.g. TlsConfig without its certificate store) costs a traceback per
    event and would swamp the figures."""
    (tmp_path / "counting_script.py").write_text(COUNTING_SCRIPT)
    monkeypatch.syspath_prepend(str(tmp_path))
    import counting_script

    with caplog.at_level("WARNING"):
        asyncio.run(drive("counting_script", 2, 3, str(tmp_path / "w")))
    assert dict(counting_script.counter.seen) == {
        "requestheaders": 6, "request": 6, "responseheaders": 6, "response": 6, "update": 24}
    assert [r.getMessage() for r in caplog.records if r.levelno >= 30] == []


def test_the_harness_master_holds_mitmdumps_chain():
    import types

    before = logging.getLogger().level

    async def chain():
        with mitmdump_master(types.ModuleType("empty")) as master:
            assert logging.getLogger().level == logging.DEBUG  # as mitmdump sets it: every line
            return [type(a).__name__ for a in master.addons.chain]  # reaches mitmproxy's handlers

    names = asyncio.run(chain())
    assert logging.getLogger().level == before
    assert {"Proxyserver", "ScriptLoader", "TlsConfig", "Dumper", "TermLog", "KeepServing"} <= set(names)
    assert len(names) > 30


def test_concurrent_harness_runs_are_twins_told_apart(tmp_path):
    """At concurrency 4 the kicks are identical: each kick's child is a guess among the open
    kicks (``lineage+answer``), and every run still ends with exactly its own hops."""
    asyncio.run(drive("proxy_addons.gateway", 8, 10, str(tmp_path), concurrency=4))
    (session,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    flows = [r for r in read_jsonl(session / "flows.jsonl") if r.get("type", "flow") == "flow"]
    runs = read_jsonl(session / "runs.jsonl")
    assert len(flows) == 80 and len(runs) == 8 and {len(r["hops"]) for r in runs} == {10}
    assert {f["run"]["evidence"] for f in flows if f["run"]["hop"] == 2} == {"lineage+answer"}
    traces: dict[str, set] = {}
    for f in flows:
        trace = dict(f["request"]["headers"]).get("traceparent")
        if trace is not None:
            traces.setdefault(f["run"]["id"], set()).add(trace.split("-")[1])
    assert sorted(len(t) for t in traces.values()) == [1] * 8 and len(set().union(*traces.values())) == 8


def test_one_script_for_instruction_counts(capsys):
    from bench.addons_cpu import main

    assert main(["--one", "proxy_addons.gateway_bare", "--runs", "2", "--max-hops", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("proxy_addons.gateway_bare: ") and "µs CPU a hop over 2 runs" in out
