"""The live diagnosis addon's options and marks (the full live path is tests/e2e/test_live.py)."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from proxy_addons.annotate import BREAK_MARK, ERROR_MARK, INJECTED_MARK, LiveRuns, break_mark
from proxy_addons.lineage import AnyLineage
from proxy_addons.recorder import Recorder


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
