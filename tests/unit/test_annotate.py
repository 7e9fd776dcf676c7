"""The live diagnosis addon's options and marks (the full live path is tests/e2e/test_live.py)."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from proxy_addons.annotate import BREAK_MARK, ERROR_MARK, INJECTED_MARK, LiveRuns, break_mark
from proxy_addons.lineage import AnyLineage
from proxy_addons.recorder import Recorder


def json_flow(service: str, body: dict, t: float):
    """A flow to ``service`` with a JSON request body, answered (its answer is set later)."""
    import json

    from mitmproxy.test import tflow

    f = tflow.tflow(resp=True)
    f.metadata["hoptrace.service"] = service
    f.request.path = f"/{service}/"
    f.request.headers["content-type"] = "application/json"
    f.request.content = json.dumps(body).encode()
    f.request.timestamp_start = t
    return f


def test_lineage_option_is_checked_and_switches_the_engine():
    live, rec = LiveRuns(), Recorder()
    with taddons.context(rec, live) as tctx:
        with pytest.raises(exceptions.OptionsError, match="unknown 'nope'; choose one of pingpong, any"):
            tctx.configure(live, hoptrace_lineage="nope")
        tctx.configure(live, hoptrace_lineage="any")
        assert isinstance(live.tracker.lineage, AnyLineage)


@pytest.mark.parametrize(("rec", "mark"), [
    ({"status": 400, "origin": "upstream"}, BREAK_MARK),
    ({"status": 422, "origin": "upstream"}, BREAK_MARK),
    ({"status": 404, "origin": "gateway"}, None),
    ({"status": 502, "origin": "gateway"}, ERROR_MARK),
    ({"status": 504, "origin": "upstream"}, ERROR_MARK),
    ({"status": 200, "origin": "upstream"}, None),
    ({"status": None}, None),
    ({"status": 400, "origin": "gateway", "injected": {"action": "status"}}, INJECTED_MARK),
    ({"status": 502, "origin": "gateway", "injected": {"action": "drop"}}, INJECTED_MARK),
    ({"status": 200, "origin": "upstream", "injected": {"action": "delay"}}, INJECTED_MARK),
])
def test_break_marks(rec, mark):
    assert break_mark(rec) == mark


def test_placement_is_made_in_the_request_hook_only_when_an_addon_selects_by_run():
    """Deferred placement (the engine off the request path) unless fault rules or mitmweb's
    retention read a flow's run in its own request hook."""
    from mitmproxy.addons.view import View
    from mitmproxy.test import tflow

    from proxy_addons.faults import Faults
    from proxy_addons.retention import Retention

    live, faults = LiveRuns(), Faults()
    with taddons.context(Recorder(), live, faults, Retention()) as tctx:
        live.running()
        assert live.sync is False
        fl = tflow.tflow()
        fl.metadata["hoptrace.service"] = "a"
        live.request(fl)  # no running loop here: placed at once, as at shutdown
        assert fl.metadata["hoptrace.record"]["run"]["hop"] == 1
        tctx.configure(faults, hoptrace_faults=["status=400 service=a hop=1"])
        assert live.sync is True
        tctx.configure(faults, hoptrace_faults=[])
        assert live.sync is False
        tctx.master.addons.add(View())
        tctx.configure(live, hoptrace_view_max=100)
        assert live.sync is True


def test_a_request_is_placed_on_the_next_loop_iteration_and_a_kick_finished_in_its_hook():
    import asyncio

    from mitmproxy.test import tflow

    async def go():
        live = LiveRuns()
        with taddons.context(Recorder(), live):
            live.running()
            fl = tflow.tflow(resp=True)
            fl.metadata["hoptrace.service"] = "a"
            live.request(fl)
            assert "hoptrace.run" not in fl.metadata  # not yet: the request goes out first
            await asyncio.sleep(0)
            assert fl.metadata["hoptrace.record"]["run"]["parent"] is None  # a kick
            assert live.finished == 0
            live.response(fl)  # a kick's answer: its run is finished before the hook returns
            assert live.finished == 1 and fl.comment.startswith("run ")

    asyncio.run(go())


def test_a_recorded_hop_that_leaves_an_ended_run_gets_its_placement_when_that_run_ends(tmp_path):
    """Two identical kicks; k2's child c2 arrives first and is guessed under k1, k1's child c1
    under k2, and both children are recorded so. When k2 answers (passing c2's answer up), its
    run ends with c2 and without c1: c1's placement (now under k1, whose run is still open) is
    written right then, so a reader of flows.jsonl never takes c1 for a hop of k2's ended run.
    (Before, c1's correction came only when k1's run ended, which may be long after.)"""
    import json

    from proxy_addons.runs_model import run_id_of
    from tests.conftest import read_jsonl

    kick = {"name": "payload", "digits": [], "avg": None, "max": None, "min": None}

    def answer(f, t: float, body: dict) -> None:
        f.response.headers["content-type"] = "application/json"
        f.response.content = json.dumps(body).encode()
        f.response.timestamp_end = t
        live.response(f)
        rec.response(f)

    def done(digit: int) -> dict:
        payload = {**kick, "digits": [digit], "avg": float(digit), "max": digit, "min": digit}
        return {"outcome": "max_hops", "stopped_by": "b", "status": 200, "hops": 2, "payload": payload}

    rec = Recorder()
    live = LiveRuns(rec)
    with taddons.context(rec, live) as tctx:
        tctx.configure(rec, hoptrace_session=str(tmp_path / "s"))
        k1, k2 = json_flow("a", kick, 1.000), json_flow("a", kick, 1.001)
        c2, c1 = json_flow("b", {**kick, "digits": [7]}, 1.010), json_flow("b", {**kick, "digits": [9]}, 1.011)
        for f in (k1, k2, c2, c1):
            live.request(f)  # no running loop: placed at once
        answer(c2, 1.020, done(7))
        answer(c1, 1.021, done(9))
        answer(k2, 1.030, done(7))  # k2's run ends: c2 is its own, c1 is not
        written_before_k1 = len(read_jsonl(tmp_path / "s" / "flows.jsonl"))
        answer(k1, 1.040, done(9))
        assert (live.said, live.said_of) == ({}, {})  # every run ended: nothing kept for them
        rec.done()
    lines = read_jsonl(tmp_path / "s" / "flows.jsonl")
    r1, r2 = run_id_of(k1.id), run_id_of(k2.id)
    first = {r["flow_id"]: r["run"]["id"] for r in lines if r.get("type", "flow") == "flow"}
    assert (first[c2.id], first[c1.id]) == (r1, r2)  # recorded as guessed: swapped
    early = [(r["flow_id"], r["run"]["id"]) for r in lines[:written_before_k1] if r.get("type") == "placement"]
    assert (c2.id, r2) in early and (c1.id, r1) in early
    final = dict(first)
    final.update((r["flow_id"], r["run"]["id"]) for r in lines if r.get("type") == "placement")
    assert final == {k1.id: r1, c1.id: r1, k2.id: r2, c2.id: r2}


def test_comment_updates_go_out_only_when_a_loaded_addon_takes_them():
    """mitmdump has no addon that takes ``update`` events, and triggering one walks the whole
    addon chain at the end of a run whose comments changed, on the kick's answer path: skipped.
    An addon that takes them (mitmweb's view, a user's script), loaded at any time, gets every
    run's final comments."""
    import json

    from mitmproxy.hooks import UpdateHook

    class Listener:
        def __init__(self) -> None:
            self.got: list = []

        def update(self, flows) -> None:
            self.got.extend(flows)

    def run() -> list:
        """Two identical kicks whose children are guessed swapped (as in the test above): the
        children's comments change when the runs end. Returns the flows whose comment changed."""
        kick = {"name": "payload", "digits": [], "avg": None, "max": None, "min": None}
        k1, k2 = json_flow("a", kick, 1.000), json_flow("a", kick, 1.001)
        c2, c1 = json_flow("b", {**kick, "digits": [7]}, 1.010), json_flow("b", {**kick, "digits": [9]}, 1.011)
        for f in (k1, k2, c2, c1):
            live.request(f)  # no running loop: placed at once
        first = {f.id: f.comment for f in (k1, k2, c2, c1)}
        for f, t, digit in ((c2, 1.020, 7), (c1, 1.021, 9), (k2, 1.030, 7), (k1, 1.040, 9)):
            payload = {**kick, "digits": [digit], "avg": float(digit), "max": digit, "min": digit}
            f.response.headers["content-type"] = "application/json"
            f.response.content = json.dumps({"outcome": "max_hops", "hops": 2, "payload": payload}).encode()
            f.response.timestamp_end = t
            live.response(f)
        return [f for f in (k1, k2, c2, c1) if f.comment != first[f.id]]

    live = LiveRuns()
    with taddons.context(Recorder(), live) as tctx:
        live.running()
        triggered = []
        real = tctx.master.addons.trigger
        tctx.master.addons.trigger = lambda event: (triggered.append(type(event)), real(event))
        moved = run()
        assert live.finished == 2 and len(moved) == 2  # c1 and c2 got their final comments
        assert UpdateHook not in triggered
        listener = Listener()
        tctx.master.addons.add(listener)
        moved = run()
        assert live.finished == 4 and len(moved) == 2 and UpdateHook in triggered
        assert {f.id for f in listener.got} == {f.id for f in moved}


def test_engine_headers_are_the_trace_and_replay_headers_in_any_case():
    """Only the headers the run engine reads are decoded; names in any case, values kept as
    sent (non-UTF-8 bytes as surrogate escapes, as mitmproxy's own view decodes them)."""
    from proxy_addons.annotate import engine_headers
    from proxy_addons.runs_model import Exchange

    fields = ((b"Host", b"127.0.0.1:8000"), (b"TraceParent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
              (b"X-Request-ID", b"r\xff1"), (b"x-hoptrace-replay-of", b"0badcafe/3"), (b"traceparentx", b"no"),
              (b"K\xe2\x84\xaaelvin", b"no"))
    got = engine_headers(fields)
    assert got == (("TraceParent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
                   ("X-Request-ID", "r\udcff1"), ("x-hoptrace-replay-of", "0badcafe/3"))
    ex = Exchange("f", 1.0, "a", "POST", "/a/", None, got, None)
    assert (ex.trace_id, ex.request_id, ex.replay_of) == (
        "0af7651916cd43dd8448eb211c80319c", "r\udcff1", {"run": "0badcafe", "hop": 3})
    assert ex.header("TRACEPARENT") == got[0][1] and ex.header("nope") is None
