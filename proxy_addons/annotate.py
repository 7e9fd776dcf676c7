"""Live diagnosis in the gateway: every flow is placed in its run as it arrives and commented
``run R · hop H · A→B · iteration I``; the breaking flow is marked; each finished run is logged
in one line and appended to runs.jsonl. The brains are the pure run engine (runs.py) and
diagnosis (diagnosis.py): this addon only feeds them from mitmproxy's hooks.
"""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import traverse
from mitmproxy.hooks import UpdateHook

from proxy_addons import flowmeta
from proxy_addons.diagnosis import assignment_comment, diagnose, hop_comment, log_line
from proxy_addons.lineage import LINEAGES, PingPongLineage
from proxy_addons.logbridge import LOGGER, spare_add_log
from proxy_addons.recorder import Recorder, cached_record, configured_request_body, forget_record
from proxy_addons.runs import Assignment, Exchange, Run, RunTracker
from proxy_addons.runs_model import ENGINE_HEADERS, hop_fields, placement, run_fields

log = logging.getLogger(LOGGER)
BREAK_MARK = ":red_circle:"  # a service rejected (4xx it originated)
ERROR_MARK = ":warning:"  # a proxy-level failure (502/504, connection error)
INJECTED_MARK = ":syringe:"  # the faults addon touched this flow (docs/faults.md)


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
        self.pending: list[tuple[bool, http.HTTPFlow]] = []  # (is start, flow) for the engine
        self.sync = False  # place each request in its own hook (see _check_sync)
        # run id → flows whose record (or last placement record) names that run, and back: when
        # the run ends, those no longer in it get their placement now (docs/dump-format.md)
        self.said: dict[str, set[str]] = {}
        self.said_of: dict[str, str] = {}

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
        if {"hoptrace_faults", "hoptrace_view_max"} & updated:
            self._check_sync()

    def running(self) -> None:
        self._check_sync()
        self._show_comments()
        spare_add_log()  # a run's line on the terminal and in mitmweb, not through add_log

    def _check_sync(self) -> None:
        """Placement must be made in the request hook itself when another addon selects flows by
        their run as they arrive: fault rules (faults.py) or mitmweb's retention (retention.py)."""
        opts = ctx.options
        faults = "hoptrace_faults" in opts and bool(opts.hoptrace_faults)
        view = ("hoptrace_view_max" in opts and bool(opts.hoptrace_view_max)
                and ctx.master.addons.get("view") is not None)
        self.sync = faults or view

    def request(self, flow: http.HTTPFlow) -> None:
        """Queue the request for the engine; it is placed on the next loop iteration, while the
        service works on it, so no request waits for the engine (unless ``sync``)."""
        if flow.metadata.get(flowmeta.SERVICE) is None:  # not routed to a service (e.g. the
            return  # gateway's 404): not part of a run
        if self.recorder is not None:
            self.recorder.hold(flow)
        self._queue(True, flow)
        if self.sync:
            self._flush()

    def response(self, flow: http.HTTPFlow) -> None:
        self._ended(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        if flow.response is None:
            self._ended(flow)

    def _ended(self, flow: http.HTTPFlow) -> None:
        """Queue the end for the engine, except a kick's: its run is finished here, before the
        recorder writes it, so the kick goes to flows.mitm with its final comment and marker
        before its answer leaves (docs/architecture.md, durability rule)."""
        if flow.metadata.get(flowmeta.SERVICE) is None:
            return
        if flowmeta.RUN not in flow.metadata:  # answered in the hook that queued it (a fault):
            self._flush()  # its record needs its placement now
        run = flow.metadata.get(flowmeta.RECORD, {}).get("run")
        self._queue(False, flow)
        if run is not None and run["parent"] is None:
            self._flush()
        if flow.id in self.flows and flow.id in self.tracker.nodes:  # not a kick whose run ended
            self._place_now(flow)

    def _place_now(self, flow: http.HTTPFlow) -> None:
        """The record about to be written says where the engine has the hop now, not where it
        was put when it arrived (a twin's answer may have moved it since)."""
        flow.metadata[flowmeta.RECORD]["run"] = run_fields(self._now(flow))

    def _now(self, flow: http.HTTPFlow) -> Assignment:
        """Where the engine has the flow now, remembered as what its record (or placement
        record) will say."""
        a = self.tracker.assignment(flow.id)
        self._say(flow.id, a.run_id)
        return a

    def _say(self, fid: str, rid: str) -> None:
        old = self.said_of.get(fid)
        if old == rid:
            return
        if old is not None:
            self._unsay(fid)
        self.said_of[fid] = rid
        self.said.setdefault(rid, set()).add(fid)

    def _unsay(self, fid: str) -> None:
        rid = self.said_of.pop(fid, None)
        flows = self.said.get(rid) if rid is not None else None
        if flows is not None:
            flows.discard(fid)
            if not flows:
                del self.said[rid]

    def _queue(self, start: bool, flow: http.HTTPFlow) -> None:
        """Events reach the engine in the order the hooks saw them, one loop iteration later."""
        self.pending.append((start, flow))
        if len(self.pending) == 1:
            try:
                asyncio.get_running_loop().call_soon(self._flush)
            except RuntimeError:  # no loop (tests, shutdown): at once
                self._flush()

    def _flush(self) -> None:
        while self.pending:
            events, self.pending = self.pending, []
            for start, flow in events:
                if start:
                    self._start(flow)
                else:
                    self._end(flow)

    def _start(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        peer = flow.client_conn.peername
        ex = Exchange(
            flow_id=flow.id, started=req.timestamp_start, service=flow.metadata[flowmeta.SERVICE],
            method=req.method, path=req.path, request=_value(configured_request_body(flow)),
            headers=engine_headers(req.headers.fields),
            client=f"{peer[0]}:{peer[1]}" if peer else None,
        )
        a = self.tracker.start(ex)
        self.flows[flow.id] = flow
        self._annotate(flow, a)
        if ex.replay_of is not None:  # a `hoptrace replay` kick: link it to the original
            flow.metadata[flowmeta.RECORD]["replay_of"] = ex.replay_of

    def _annotate(self, flow: http.HTTPFlow, a: Assignment) -> None:
        flow.comment = assignment_comment(a)
        flow.metadata[flowmeta.RUN] = a.run_id
        flow.metadata.setdefault(flowmeta.RECORD, {})["run"] = run_fields(a)

    def _end(self, flow: http.HTTPFlow) -> None:
        rec = cached_record(flow)  # built by the recorder (a kick's: by us, just before it)
        if flow.metadata.get(flowmeta.RECORDED):
            forget_record(flow)  # written: nothing reads it again; the flow lives on till its run ends
        mark = break_mark(rec)
        if mark:
            flow.marked = mark
        late = flow.id not in self.flows  # it ended after its run was reported (a timed-out hop)
        # the engine reads only its own headers, as at the start (not all the record's, rebuilt)
        ex = Exchange.from_record(rec, engine_headers(flow.request.headers.fields))
        for run in self.tracker.end(ex):
            self._finish(run)
        if late and self.recorder is not None:
            self.recorder.release([flow])

    def _finish(self, run: Run) -> None:
        """A run ended: its flows' final comments and ``run`` fields now (a flow already in
        flows.jsonl with a placement that changed gets a ``placement`` record after it, and so
        does one recorded as in this run that has left it); its diagnosis (log line, runs.jsonl)
        on the next loop iteration, after the kick's answer has left."""
        self.finished += 1
        self._report_later(run)
        flows, changed, moved = [], [], []
        left = self.said.pop(run.run_id, None)
        for h in run.hops:
            if left is not None:
                left.discard(h.flow_id)
            if h.flow_id in self.said_of:
                self._unsay(h.flow_id)
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
        for fid in sorted(left or ()):
            self.said_of.pop(fid, None)
            if fid in self.flows and fid in self.tracker.nodes:
                self._left(self.flows[fid], moved, changed)
        if self.recorder is not None:
            self.recorder.release(flows)
            self.recorder.write_placements(moved)
        if changed and self._updates_wanted():
            ctx.master.addons.trigger(UpdateHook(changed))

    def _updates_wanted(self) -> bool:
        """Does a loaded addon take ``update`` events (mitmweb's flow list, a user's script)? Under
        mitmdump none does, and a trigger costs ≈ 85 µs on the kick's answer path; this look ≈ 9 µs
        (not cached: a script reloaded at any time may bring one)."""
        return any(a is not self and callable(getattr(a, "update", None)) for a in traverse(ctx.master.addons.chain))

    def _left(self, flow: http.HTTPFlow, moved: list[dict], changed: list[http.HTTPFlow]) -> None:
        """A flow recorded as in a run that ended without it: where it is now (provisional: its
        new run is still open), so that no reader takes it for a hop of the ended run, and no
        addon that groups flows by run (mitmweb's retention) keeps it with the ended one."""
        a = self._now(flow)
        fields = run_fields(a)
        extra = flow.metadata.setdefault(flowmeta.RECORD, {})
        if extra.get("run") != fields:
            extra["run"] = fields
            if flow.metadata.get(flowmeta.RECORDED):
                moved.append(placement(flow.id, fields))
        if flow.metadata.get(flowmeta.RUN) != a.run_id:
            flow.metadata[flowmeta.RUN] = a.run_id
            flow.comment = assignment_comment(a)
            changed.append(flow)

    def _show_comments(self) -> None:
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
                self.recorder.write_run(d.to_bytes())

    def done(self) -> None:
        self._flush()
        for run in self.tracker.flush():
            self._finish(run)
        self._report()


def engine_headers(fields: tuple[tuple[bytes, bytes], ...]) -> tuple[tuple[str, str], ...]:
    """The request headers the run engine reads (trace and replay headers), from the raw
    fields: decoding every header of every flow for it cost more than the engine itself; only
    those are decoded (their names are ASCII: ``bytes.lower`` finds them as ``str.lower`` does)."""
    out = []
    for k, v in fields:
        if len(k) in _ENGINE_LENGTHS and k.lower() in _ENGINE_HEADERS:  # most names: no lower()
            out.append((k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape")))
    return tuple(out)


_ENGINE_HEADERS = frozenset(name.encode() for name in ENGINE_HEADERS)
_ENGINE_LENGTHS = frozenset(len(name) for name in _ENGINE_HEADERS)


def _value(body: dict):
    return body.get("value") if body.get("kind") in ("json", "text") else None
