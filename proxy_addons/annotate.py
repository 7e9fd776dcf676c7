"""Live diagnosis in the gateway: every flow is placed in its run as it arrives and commented
``run R · hop H · A→B · iteration I``; the breaking flow is marked; each finished run is logged
in one line and appended to runs.jsonl. The brains are the pure run engine (runs.py) and
diagnosis (diagnosis.py): this addon only feeds them from mitmproxy's hooks.
"""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import ctx, exceptions, http
from mitmproxy.hooks import UpdateHook

from proxy_addons import flowmeta
from proxy_addons.diagnosis import assignment_comment, diagnose, hop_comment, log_line
from proxy_addons.lineage import LINEAGES, PingPongLineage
from proxy_addons.recorder import Recorder, cached_record, request_body
from proxy_addons.runs import Assignment, Exchange, Hop, Run, RunTracker

log = logging.getLogger("hoptrace")
BREAK_MARK = ":red_circle:"  # a service rejected (4xx it originated)
ERROR_MARK = ":warning:"  # a proxy-level failure (502/504, connection error)
INJECTED_MARK = ":syringe:"  # the faults addon touched this flow (docs/faults.md)


def run_fields(a: Assignment) -> dict:
    """The ``run`` field of a flows.jsonl record (as known when the request arrived)."""
    return {"id": a.run_id, "hop": a.hop, "from": a.sender, "to": a.to, "iteration": a.iteration,
            "evidence": a.evidence, "parent": a.parent}


def hop_fields(run: Run, h: Hop) -> dict:
    """The same fields for a hop of a finished run: its final placement."""
    return {"id": run.run_id, "hop": h.hop, "from": h.sender, "to": h.to, "iteration": h.iteration,
            "evidence": h.evidence, "parent": h.parent}


def placement(flow_id: str, fields: dict) -> dict:
    """A flows.jsonl ``placement`` record: the final ``run`` fields of a flow already recorded
    with a provisional placement (docs/dump-format.md). The last one for a flow id wins."""
    return {"type": "placement", "v": 1, "flow_id": flow_id, "run": fields}


def break_mark(rec: dict) -> str | None:
    if rec.get("injected"):
        return INJECTED_MARK
    status = rec.get("status")
    if status is None:
        return None
    if rec.get("origin") == "upstream" and 400 <= status < 500:
        return BREAK_MARK
    return ERROR_MARK if status >= 500 else None


class LiveRuns:
    def __init__(self, recorder: Recorder | None = None) -> None:
        self.recorder = recorder
        self.tracker = RunTracker(PingPongLineage())
        self.flows: dict[str, http.HTTPFlow] = {}  # open runs' flows, to fix comments at the end
        self.finished = 0
        self.to_report: list[Run] = []  # finished runs whose diagnosis is written next iteration

    def load(self, loader) -> None:
        loader.add_option(
            "hoptrace_lineage", str, "pingpong",
            f"How a service's output follows its input, for run reconstruction: {', '.join(LINEAGES)} "
            "(any = only nesting and timing).",
        )

    def configure(self, updated: set[str]) -> None:
        if "hoptrace_lineage" in updated:
            name = ctx.options.hoptrace_lineage
            if name not in LINEAGES:
                raise exceptions.OptionsError(
                    f"hoptrace_lineage: unknown {name!r}; choose one of {', '.join(LINEAGES)}")
            if not isinstance(self.tracker.lineage, LINEAGES[name]):
                self.tracker = RunTracker(LINEAGES[name]())

    def request(self, flow: http.HTTPFlow) -> None:
        service = flow.metadata.get(flowmeta.SERVICE)
        if service is None:  # not routed to a service (e.g. the gateway's 404): not part of a run
            return
        req = flow.request
        peer = flow.client_conn.peername
        ex = Exchange(
            flow_id=flow.id, started=req.timestamp_start, service=service, method=req.method,
            path=req.path, request=_value(request_body(flow, ctx.options.hoptrace_max_body)),
            headers=tuple(req.headers.items(multi=True)),
            client=f"{peer[0]}:{peer[1]}" if peer else None,
        )
        a = self.tracker.start(ex)
        self.flows[flow.id] = flow
        if self.recorder is not None:
            self.recorder.hold(flow)
        self._annotate(flow, a)
        if ex.replay_of is not None:  # a `hoptrace replay` kick: link it to the original
            flow.metadata[flowmeta.RECORD]["replay_of"] = ex.replay_of

    def response(self, flow: http.HTTPFlow) -> None:
        self._end(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        if flow.response is None:
            self._end(flow)

    def _annotate(self, flow: http.HTTPFlow, a: Assignment) -> None:
        flow.comment = assignment_comment(a)
        flow.metadata[flowmeta.RUN] = a.run_id
        flow.metadata.setdefault(flowmeta.RECORD, {})["run"] = run_fields(a)

    def _end(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get(flowmeta.RUN) is None:
            return
        rec = cached_record(flow)
        mark = break_mark(rec)
        if mark:
            flow.marked = mark
        late = flow.id not in self.flows  # it ended after its run was reported (a timed-out hop)
        for run in self.tracker.end(Exchange.from_record(rec)):
            self._finish(run)
        if late and self.recorder is not None:
            self.recorder.release([flow])

    def _finish(self, run: Run) -> None:
        """A run ended: its flows' final comments and ``run`` fields now (a flow already in
        flows.jsonl with a placement that changed gets a ``placement`` record after it); its
        diagnosis (log line, runs.jsonl) on the next loop iteration, after the kick's answer has
        left."""
        self.finished += 1
        self._report_later(run)
        flows, changed, moved = [], [], []
        for h in run.hops:
            flow = self.flows.pop(h.flow_id, None)
            if flow is None:
                continue
            flows.append(flow)
            extra = flow.metadata.setdefault(flowmeta.RECORD, {})
            final = hop_fields(run, h)
            if extra.get("run") != final:  # a provisional placement was corrected at the end
                extra["run"] = final  # what a record written from now on says
                if flow.metadata.get(flowmeta.RECORDED):
                    moved.append(placement(flow.id, final))
            comment = hop_comment(run, h)
            if flow.comment != comment:
                flow.comment = comment
                flow.metadata[flowmeta.RUN] = run.run_id
                changed.append(flow)
        if self.recorder is not None:
            self.recorder.release(flows)
            self.recorder.write_placements(moved)
        if changed:
            ctx.master.addons.trigger(UpdateHook(changed))

    def running(self) -> None:
        """In mitmweb, show the comment column (run · hop · A→B · iteration) unless the user
        chose the columns."""
        opts = ctx.options
        if "web_columns" in opts and not opts.has_changed("web_columns"):
            opts.update(web_columns=[*opts.web_columns, "comment"])

    def _report_later(self, run: Run) -> None:
        if not self.to_report:
            try:
                asyncio.get_running_loop().call_soon(self._report)
            except RuntimeError:  # no loop (shutdown): at once
                self.to_report.append(run)
                self._report()
                return
        self.to_report.append(run)

    def _report(self) -> None:
        runs, self.to_report = self.to_report, []
        for run in runs:
            d = diagnose(run, self.tracker.lineage)
            log.info(log_line(d))
            if self.recorder is not None:
                self.recorder.write_run(d.to_json())

    def done(self) -> None:
        for run in self.tracker.flush():
            self._finish(run)
        self._report()


def _value(body: dict):
    return body.get("value") if body.get("kind") in ("json", "text") else None
