"""The retention addon on mitmproxy test flows in a real View: whole runs go, clean ones first,
broken and unfinished ones stay; under mitmdump (no view) it holds nothing."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions
from mitmproxy.addons.view import View
from mitmproxy.test import taddons, tflow

from proxy_addons.retention import RUN_KEY, Retention


def run_flows(run: str, hops: int, status: int = 200) -> list:
    flows = []
    for _ in range(hops):
        f = tflow.tflow(resp=True)
        f.response.status_code = 200
        f.metadata[RUN_KEY] = run
        flows.append(f)
    flows[-1].response.status_code = status  # the innermost hop: where a run breaks
    return flows


def play(ret: Retention, view: View, flows: list, end: bool = True) -> None:
    for f in flows:
        ret.request(f)
        view.add([f])
    if end:
        for f in reversed(flows):  # nested: the innermost hop ends first
            f.live = False
            ret.response(f)


def runs_in(view: View) -> list[str]:
    return sorted({f.metadata[RUN_KEY] for f in view})


def test_clean_runs_go_first_broken_and_live_runs_stay():
    view, ret = View(), Retention()
    with taddons.context(view, ret) as tctx:
        tctx.configure(ret, hoptrace_view_max=10)
        ret.running()
        play(ret, view, run_flows("broken", 3, status=400))
        live = run_flows("live", 2)
        play(ret, view, live, end=False)
        for n in range(6):
            play(ret, view, run_flows(f"clean{n}", 3))
        assert len(view) <= 10
        assert {"broken", "live", "clean5"} <= set(runs_in(view))
        assert "clean0" not in runs_in(view)
        assert ret.dropped == 23 - len(view) and ret.tracked == len(view)
        # whole runs only: every run still shown has all its flows
        for run in runs_in(view):
            assert sum(f.metadata[RUN_KEY] == run for f in view) == (2 if run == "live" else 3)


def test_broken_runs_go_too_when_nothing_else_is_left():
    view, ret = View(), Retention()
    with taddons.context(view, ret) as tctx:
        tctx.configure(ret, hoptrace_view_max=10)
        ret.running()
        for n in range(8):
            play(ret, view, run_flows(f"broken{n}", 2, status=502))
        assert len(view) <= 10 and "broken7" in runs_in(view) and "broken0" not in runs_in(view)


def test_flows_without_run_id_are_their_own_run():
    view, ret = View(), Retention()
    with taddons.context(view, ret) as tctx:
        tctx.configure(ret, hoptrace_view_max=5)
        ret.running()
        flows = [tflow.tflow(resp=True) for _ in range(20)]
        flows[0].response.status_code = 500
        play(ret, view, flows)
        assert len(view) <= 5 and flows[0] in list(view)


def test_mitmdump_has_no_view_and_nothing_is_held():
    ret = Retention()
    with taddons.context(ret) as tctx:
        tctx.configure(ret, hoptrace_view_max=2)
        ret.running()
        for f in run_flows("r", 5):
            ret.request(f)
            ret.response(f)
        assert ret.runs == {} and ret.tracked == 0
        assert not hasattr(ret, "update")  # else LiveRuns would send update events for nothing


def test_zero_keeps_all_and_negative_is_refused():
    view, ret = View(), Retention()
    with taddons.context(view, ret) as tctx:
        tctx.configure(ret, hoptrace_view_max=0)
        ret.running()
        play(ret, view, [tflow.tflow(resp=True) for _ in range(30)])
        assert len(view) == 30 and ret.dropped == 0
        with pytest.raises(exceptions.OptionsError, match="hoptrace_view_max must be >= 0"):
            tctx.configure(ret, hoptrace_view_max=-1)


@pytest.mark.parametrize("in_pipeline", [False, True], ids=["addons", "pipeline"])
def test_a_twins_hop_moves_to_the_run_it_ends_in_so_runs_are_dropped_whole(in_pipeline):
    """Two identical kicks; k2's child c2 arrives first and is guessed under k1's run, k1's child
    c1 under k2's. When k2's run ends (with c2, without c1) the live diagnosis corrects both and
    sends ``update``: the view then holds k2's run as {k2, c2}, and dropping it (limit 3) leaves
    k1's live run whole. Grouped by the guess, it would drop {k2, c1} and cut c1 out of k1's run.
    The same with both behind the gateway's Pipeline, where the ``update`` Retention takes only
    once running must still reach it."""
    import json

    from mitmproxy import hooks

    from proxy_addons.annotate import LiveRuns
    from proxy_addons.pipeline import Pipeline
    from proxy_addons.runs_model import run_id_of
    from tests.unit.test_annotate import json_flow

    kick = {"name": "payload", "digits": [], "avg": None, "max": None, "min": None}
    view, live, ret = View(), LiveRuns(), Retention()
    with taddons.context(view, *([Pipeline(live, ret)] if in_pipeline else [live, ret])) as tctx:
        tctx.options.update(hoptrace_view_max=3)
        tctx.master.addons.trigger(hooks.RunningHook())
        k1, k2 = json_flow("a", kick, 1.000), json_flow("a", kick, 1.001)
        c2, c1 = json_flow("b", {**kick, "digits": [7]}, 1.010), json_flow("b", {**kick, "digits": [9]}, 1.011)
        for f in (k1, k2, c2, c1):
            live.request(f)  # no running loop: placed at once
            ret.request(f)
            view.add([f])
        r1, r2 = run_id_of(k1.id), run_id_of(k2.id)
        assert {k: {f.id for f in e.flows} for k, e in ret.runs.items()} == {r1: {k1.id, c2.id}, r2: {k2.id, c1.id}}
        for f, t, digit in ((c2, 1.020, 7), (c1, 1.021, 9), (k2, 1.030, 7), (k1, 1.040, 9)):
            payload = {**kick, "digits": [digit], "avg": float(digit), "max": digit, "min": digit}
            f.response.headers["content-type"] = "application/json"
            f.response.content = json.dumps({"outcome": "max_hops", "hops": 2, "payload": payload}).encode()
            f.response.timestamp_end = t
            f.live = False
            live.response(f)  # the gateway's order: LiveRuns, then Retention
            ret.response(f)
            if f is k2:  # k2's run {k2, c2} ended and was dropped; k1's {k1, c1} is still open
                assert {f.id for f in view} == {k1.id, c1.id} and ret.dropped == 2
                assert ret.runs[r1].live == 1 and c1.metadata[RUN_KEY] == r1
        assert {k: {f.id for f in e.flows} for k, e in ret.runs.items()} == {r1: {k1.id, c1.id}}
        assert ret.tracked == len(view) == 2


def test_a_corrected_flow_already_dropped_with_its_run_is_left_alone():
    """A flow whose run was dropped from the view, and whose run id is corrected afterwards
    (while a newer flow is counted under the old id), changes nothing: no error, no count."""
    view, ret = View(), Retention()
    with taddons.context(view, ret) as tctx:
        tctx.configure(ret, hoptrace_view_max=4)
        ret.running()
        old = run_flows("x", 2)
        play(ret, view, old)
        for n in range(3):
            play(ret, view, run_flows(f"clean{n}", 2))
        assert "x" not in runs_in(view) and old[0] not in list(view)
        again = run_flows("x", 1)
        play(ret, view, again, end=False)  # the same id counted anew
        old[0].metadata[RUN_KEY] = "y"
        ret.update([old[0], again[0]])
        assert [f.id for f in ret.runs["x"].flows] == [again[0].id] and ret.runs["x"].live == 1
        assert "y" not in ret.runs and ret.tracked == len(view)
