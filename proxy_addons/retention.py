"""Keep mitmweb's memory bounded: at most ``hoptrace_view_max`` flows stay in its view.

mitmweb keeps every flow in memory (mitmproxy issue #4129); a long session would grow without
end. The dumps on disk keep everything, so the view only has to keep what a person looks at: when
it holds more than the limit, whole runs are dropped, oldest first, runs that completed cleanly
before broken ones; a run with a flow still in flight is never touched. It drops down to 90 % of
the limit, so the work is done in batches, not on every flow.

Runs are grouped by ``run_of(flow)``: the run id the live diagnosis put in
``flow.metadata[flowmeta.RUN]``, or the flow alone when there is none. That id is a guess on
arrival: identical twin runs may swap hops, and the live diagnosis corrects the id when a run ends
and tells every addon through mitmproxy's ``update`` event; the flow then moves from the run it
was counted under to its corrected one. A run is broken when ``is_broken(flow)`` holds for one of
its flows (marked by the diagnosis, an error, or a 4xx/5xx). mitmdump has no view: there this
addon does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from mitmproxy import ctx, exceptions, http

from proxy_addons import flowmeta

log = logging.getLogger(__name__)
RUN_KEY = getattr(flowmeta, "RUN", "hoptrace.run")
TRACKED = "hoptrace.retention.run"  # flow.metadata: the run the flow was counted under
ENDED = "hoptrace.retention.ended"


def run_of(flow: http.HTTPFlow) -> str:
    """The group a flow is kept or dropped with."""
    return flow.metadata.get(RUN_KEY) or flow.id


def is_broken(flow: http.HTTPFlow) -> bool:
    status = flow.response.status_code if flow.response else None
    return bool(flow.marked) or flow.error is not None or status is None or status >= 400


@dataclass
class RunFlows:
    flows: list[http.HTTPFlow] = field(default_factory=list)
    live: int = 0
    broken: bool = False


class Retention:
    def __init__(self) -> None:
        self.runs: dict[str, RunFlows] = {}  # insertion order = age
        self.tracked = 0
        self.dropped = 0
        self.view = None

    def load(self, loader) -> None:
        loader.add_option(
            "hoptrace_view_max", int, 5000,
            "At most this many flows stay in mitmweb's view (memory); whole runs are dropped, clean "
            "ones first, broken ones kept longest. The dumps keep everything. 0: keep all.",
        )

    def configure(self, updated: set[str]) -> None:
        if "hoptrace_view_max" in updated and ctx.options.hoptrace_view_max < 0:
            raise exceptions.OptionsError(
                f"hoptrace_view_max must be >= 0 (0 keeps all), got {ctx.options.hoptrace_view_max}")

    def running(self) -> None:
        self.view = ctx.master.addons.get("view")  # None under mitmdump
        if self.view is not None:
            # only with a view: a loaded ``update`` handler makes LiveRuns send one per run whose
            # placement changed, on the kick's answer path (≈ 85 µs), which mitmdump is spared
            self.update = self.regroup

    def regroup(self, flows: Sequence[http.HTTPFlow]) -> None:
        """Flows whose run id changed (a twin's hop placed in the wrong run on arrival) move to
        the run they now belong to, so a run is kept or dropped whole."""
        for flow in flows:
            old, new = flow.metadata.get(TRACKED), run_of(flow)
            src = self.runs.get(old) if old is not None else None
            if src is None or old == new:
                continue  # not counted, or dropped already
            try:
                src.flows.remove(flow)
            except ValueError:  # dropped with its run, which has been counted anew since
                continue
            ended = bool(flow.metadata.get(ENDED))
            if not src.flows:
                del self.runs[old]
            else:
                src.live -= not ended
                src.broken = any(is_broken(f) for f in src.flows if f.metadata.get(ENDED))
            dst = self.runs.setdefault(new, RunFlows())
            dst.flows.append(flow)
            dst.live += not ended
            dst.broken = dst.broken or (ended and is_broken(flow))
            flow.metadata[TRACKED] = new

    def request(self, flow: http.HTTPFlow) -> None:
        if self.view is None or not ctx.options.hoptrace_view_max:
            return
        key = flow.metadata[TRACKED] = run_of(flow)
        entry = self.runs.setdefault(key, RunFlows())
        entry.flows.append(flow)
        entry.live += 1
        self.tracked += 1

    def response(self, flow: http.HTTPFlow) -> None:
        self.ended(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self.ended(flow)

    def ended(self, flow: http.HTTPFlow) -> None:
        entry = self.runs.get(flow.metadata.get(TRACKED, ""))
        if entry is None or flow.metadata.get(ENDED):
            return
        flow.metadata[ENDED] = True
        entry.live -= 1
        entry.broken = entry.broken or is_broken(flow)
        limit = ctx.options.hoptrace_view_max
        if limit and self.tracked > limit:
            self.shrink(int(limit * 0.9))

    def shrink(self, target: int) -> None:
        """Drop finished runs, oldest first, clean ones before broken ones, down to ``target``."""
        for drop_broken in (False, True):
            for key in list(self.runs):
                if self.tracked <= target:
                    return
                entry = self.runs[key]
                if entry.live > 0 or entry.broken != drop_broken or any(f.live for f in entry.flows):
                    continue
                del self.runs[key]
                self.tracked -= len(entry.flows)
                self.dropped += len(entry.flows)
                for f in entry.flows:
                    self.view.remove([f])  # one at a time: a batch makes mitmweb log an alert
