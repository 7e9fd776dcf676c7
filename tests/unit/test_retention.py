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


def test_zero_keeps_all_and_negative_is_refused():
    view, ret = View(), Retention()
    with taddons.context(view, ret) as tctx:
        tctx.configure(ret, hoptrace_view_max=0)
        ret.running()
        play(ret, view, [tflow.tflow(resp=True) for _ in range(30)])
        assert len(view) == 30 and ret.dropped == 0
        with pytest.raises(exceptions.OptionsError, match="hoptrace_view_max must be >= 0"):
            tctx.configure(ret, hoptrace_view_max=-1)
