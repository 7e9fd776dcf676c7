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
