"""hoptrace's own log lines skip mitmproxy's deprecated add_log bridge (a walk over every addon
per line) and still reach the terminal; every other logger's lines still take the bridge."""

from __future__ import annotations

import asyncio
import io
import logging

from mitmproxy import hooks
from mitmproxy.addons.termlog import TermLog
from mitmproxy.log import LegacyLogEvents
from mitmproxy.test import taddons

from proxy_addons.annotate import LiveRuns
from proxy_addons.logbridge import LOGGER, NotOurs, spare_add_log


class AddLogSeen:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add_log(self, entry) -> None:
        self.lines.append(entry.msg)


def test_hoptrace_lines_reach_the_terminal_but_not_add_log():
    seen, out = AddLogSeen(), io.StringIO()
    root, before = logging.getLogger(), logging.getLogger().level

    async def go() -> None:
        with taddons.context(seen, LiveRuns()) as tctx:
            term = TermLog(out=out)
            try:
                tctx.master.addons.add(term)
                root.setLevel(logging.DEBUG)  # as mitmdump sets it
                logging.getLogger("other").info("an addon's line")
                logging.getLogger(LOGGER).info("hoptrace: run r1 before running")
                await asyncio.sleep(0.01)  # the bridge hands lines over on the loop
                tctx.master.addons.trigger(hooks.RunningHook())
                logging.getLogger(LOGGER).info("hoptrace: run r2 after running")
                logging.getLogger("other").info("another addon's line")
                await asyncio.sleep(0.01)
            finally:
                term.uninstall()
                root.setLevel(before)

    asyncio.run(go())
    lines = [m.split("] ", 1)[-1] for m in seen.lines]  # without the time stamp
    assert [m for m in lines if "addon's line" in m or "hoptrace: run" in m] == [
        "an addon's line", "hoptrace: run r1 before running", "another addon's line"]
    printed = out.getvalue()
    assert "hoptrace: run r1 before running" in printed and "hoptrace: run r2 after running" in printed
    spare_add_log()  # again: no bridge gets the filter twice
    bridges = [h for h in logging.getLogger().handlers if isinstance(h, LegacyLogEvents)]
    assert bridges and all(sum(isinstance(f, NotOurs) for f in h.filters) == 1 for h in bridges)
