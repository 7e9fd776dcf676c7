"""Record every finished exchange into the session folder: flows.jsonl, flows.mitm, flows.har.

The recorder only reads the traffic. It writes in its ``response``/``error`` hooks, after the
other addons have annotated the flow (comment, marker, ``flow.metadata["hoptrace.record"]``), and
the hook returns only once the record is written to the OS (sink.py), so a response the client
got is in the dump, even if the gateway is then killed.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import mitmproxy
from mitmproxy import ctx, exceptions, http

from proxy_addons.bodies import DEFAULT_MAX_BODY
from proxy_addons import flowmeta, tnet
from proxy_addons.har import export_har
from proxy_addons.mitmstate import MitmEncoder
from proxy_addons.record_parts import headers_list, make_utf8_safe, message_body
from proxy_addons.session import new_session_dir, open_session_dir, write_json
from proxy_addons.sink import Sink, jsonl

log = logging.getLogger(__name__)
CLIENT_GONE = "Client disconnected."  # mitmproxy's error when the caller hangs up first

# The redaction hook: redact.py attaches a Redactor to each flow under this attribute (not saved
# in the flow's state). Everything written passes through it — the record's headers and bodies,
# the .mitm copy — while the flow the proxy forwards is never changed.
REDACTOR = "_hoptrace_redactor"


def _line(data: bytes) -> bytes:
    """A runs.jsonl line from a run's JSON, encoded already (``Diagnosis.to_bytes``)."""
    return data + b"\n"


def redactor(flow: http.HTTPFlow):
    return getattr(flow, REDACTOR, None)


def on_disk(flow: http.HTTPFlow) -> http.HTTPFlow:
    """The flow as flows.mitm gets it: itself, or a redacted copy."""
    r = redactor(flow)
    return flow if r is None else r.flow(flow)


def request_body(flow: http.HTTPFlow, max_bytes: int) -> dict:
    """The request's BODY, decoded and parsed once per flow: the live diagnosis reads it when the
    request arrives, the record reuses it (and its parsed value) unless the content was replaced
    since (e.g. by fault injection). Treat it as read-only."""
    raw = flow.request.raw_content
    hit = getattr(flow, "_hoptrace_request_body", None)
    if hit is not None and hit[0] is raw and hit[1] == max_bytes:
        return hit[2]
    body = message_body(flow.request, max_bytes)
    if (r := redactor(flow)) is not None:
        body = r.body(body)
    flow._hoptrace_request_body = (raw, max_bytes, body)  # type: ignore[attr-defined]
    return body


def flow_record(flow: http.HTTPFlow, max_body: int = DEFAULT_MAX_BODY) -> dict:
    """The flows.jsonl record of a finished flow (see docs/dump-format.md)."""
    req, resp = flow.request, flow.response
    ended = resp.timestamp_end if resp and resp.timestamp_end else time.time()
    peer = flow.client_conn.peername
    rec = {
        "type": "flow",
        "v": 1,
        "flow_id": flow.id,
        "started": req.timestamp_start,
        "ended": ended,
        "duration_ms": round((ended - req.timestamp_start) * 1000, 3),
        "client": f"{peer[0]}:{peer[1]}" if peer else None,
        "method": req.method,
        "path": req.path,
        "service": flow.metadata.get(flowmeta.SERVICE),
        "upstream": flow.metadata.get(flowmeta.UPSTREAM),
        "request": {"headers": headers_list(req.headers), "body": request_body(flow, max_body)},
        "status": resp.status_code if resp else None,
        "response": None,
        "error": None,
        "origin": flow.metadata.get(flowmeta.ORIGIN, "upstream"),
    }
    if resp is not None:
        rec["response"] = {
            "status": resp.status_code,
            "reason": resp.reason,
            "headers": headers_list(resp.headers),
            "body": message_body(resp, max_body),
        }
    elif flow.error is not None and flow.error.msg == CLIENT_GONE:
        # the caller hung up first (its own timeout): nobody received an answer, and the
        # upstream may well have received the request
        rec["status"] = None
        rec["origin"] = "client"
        sent = flow.server_conn is not None and flow.server_conn.timestamp_start is not None
        rec["error"] = {"message": flow.error.msg, "status": None, "undelivered": not sent,
                        "abandoned": True}
    elif flow.error is not None:
        rec["status"] = 502
        rec["origin"] = "gateway"
        rec["error"] = {"message": flow.error.msg, "status": 502, "undelivered": True}
    if (r := redactor(flow)) is not None:
        r.record(rec)
    make_utf8_safe(rec)
    rec.update(flow.metadata.get(flowmeta.RECORD, {}))
    return rec


_max_body = [DEFAULT_MAX_BODY]  # the option, as last configured (an option read costs µs per flow)


def configured_request_body(flow: http.HTTPFlow) -> dict:
    """``request_body`` cut at the configured ``hoptrace_max_body`` (what the record will hold)."""
    return request_body(flow, _max_body[0])


def cached_record(flow: http.HTTPFlow) -> dict:
    """The flow's record, built once per flow however many addons ask for it (diagnosis reads
    it before the recorder writes it). Kept on the flow object, not in its saved state."""
    rec = getattr(flow, "_hoptrace_record", None)
    if rec is None:
        rec = flow_record(flow, _max_body[0])
        flow._hoptrace_record = rec  # type: ignore[attr-defined]
    else:
        rec.update(flow.metadata.get(flowmeta.RECORD, {}))
    return rec


def forget_record(flow: http.HTTPFlow) -> None:
    """Drop the record and parsed request body cached on the flow, once written: a run's flows
    stay alive until the run ends, and their records need not (fewer objects for the GC)."""
    flow._hoptrace_record = None  # type: ignore[attr-defined]
    flow._hoptrace_request_body = None  # type: ignore[attr-defined]


class Recorder:
    def __init__(self) -> None:
        self.session: Path | None = None
        self.sink: Sink | None = None
        self.held: dict[str, http.HTTPFlow] = {}  # flow id → flow not yet in flows.mitm

    def load(self, loader) -> None:
        loader.add_option("hoptrace_dumps", str, "dumps", "Parent folder of the session folders.")
        loader.add_option(
            "hoptrace_session", str, "",
            "Record into this folder instead of a new dumps/<UTC timestamp>/ (must not hold a session).",
        )
        loader.add_option(
            "hoptrace_max_body", int, DEFAULT_MAX_BODY,
            "Bodies larger than this many bytes are cut in flows.jsonl (flows.mitm keeps them whole).",
        )
        loader.add_option("hoptrace_har", bool, True, "Write flows.har at clean shutdown.")

    def configure(self, updated: set[str]) -> None:
        if ctx.options.hoptrace_max_body < 0:
            raise exceptions.OptionsError("hoptrace_max_body must be >= 0")
        _max_body[0] = ctx.options.hoptrace_max_body
        if self.sink is not None and {"hoptrace_dumps", "hoptrace_session"} & updated:
            self.close()  # a new folder chosen at run time: the next flows go there
            self.session = None
            self.open()

    def running(self) -> None:
        if self.sink is None:
            self.open()

    def open(self) -> None:
        """Start recording: into the session folder already chosen (a write that comes after
        ``done``, e.g. a flow torn down at shutdown, appends there), else into a new one."""
        if self.session is not None:
            self._open_sink()
            return
        try:
            if ctx.options.hoptrace_session:
                self.session = open_session_dir(ctx.options.hoptrace_session)
            else:
                self.session = new_session_dir(ctx.options.hoptrace_dumps)
        except (OSError, RuntimeError) as exc:
            raise exceptions.OptionsError(f"hoptrace: cannot open the session folder: {exc}") from None
        write_json(self.session / "session.json", {
            "started": time.time(),
            "mitmproxy": mitmproxy.version.VERSION,
            "routes": getattr(ctx.options, "routes", ""),
            "mode": list(ctx.options.mode),
        })
        self._open_sink()
        log.info("hoptrace: recording into %s (flows.mitm encoder: %s)", self.session,
                 "C" if tnet.ACCELERATED else "Python, the C one was not built")

    def _open_sink(self) -> None:
        mitm = MitmEncoder()  # on_disk inside: a deferred flow is redacted when written, off the answer's path
        self.sink = Sink(self.session, {"flows.jsonl": jsonl, "flows.mitm": lambda f: mitm(on_disk(f)),
                                        "runs.jsonl": _line})

    # Plain (not async) hooks: the write is synchronous, and mitmproxy calls a sync hook without
    # creating and scheduling a coroutine per flow.
    def response(self, flow: http.HTTPFlow) -> None:
        self.write(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        if flow.response is None:  # otherwise the response hook already recorded it
            self.write(flow)

    def write(self, flow: http.HTTPFlow) -> None:
        """Write the flow's record (and, unless held, its .mitm entry) before returning: the hook
        that calls this releases the response only afterwards."""
        if flow.metadata.get(flowmeta.RECORDED):
            return
        if self.sink is None:
            self.open()
        flow.metadata[flowmeta.RECORDED] = True
        try:
            parts: dict = {"flows.jsonl": cached_record(flow)}
            if flow.id not in self.held:
                parts["flows.mitm"] = flow
            self.sink.write(parts)
        except Exception:
            log.exception("hoptrace: flow %s could not be recorded", flow.id)

    def hold(self, flow: http.HTTPFlow) -> None:
        """Write this flow to flows.mitm only when ``release``d: the run engine holds a run's
        flows until the run ends, so the comment and marker saved are the final ones."""
        self.held[flow.id] = flow

    def release(self, flows: list[http.HTTPFlow]) -> None:
        """Write held flows to flows.mitm now (their flows.jsonl lines are already written)."""
        if self.sink is None:
            self.open()
        for flow in flows:
            # not recorded yet (its own hook is still to come): record() writes it then
            if self.held.pop(flow.id, None) is not None and flow.metadata.get(flowmeta.RECORDED):
                self.sink.defer({"flows.mitm": flow})

    def write_placements(self, records: list[dict]) -> None:
        """Append corrected placements to flows.jsonl (deferred, like runs.jsonl: the flows'
        own records, already written, stay valid on their own)."""
        if records and self.sink is None:
            self.open()
        for rec in records:
            self.sink.defer({"flows.jsonl": rec})

    def write_run(self, run: bytes) -> None:
        """Append one finished run to runs.jsonl (deferred: no client waits on it): its JSON,
        encoded (``Diagnosis.to_bytes``)."""
        if self.sink is None:
            self.open()
        self.sink.defer({"runs.jsonl": run})

    def close(self) -> None:
        if self.sink is not None:
            # every held flow that was recorded goes to flows.mitm; one never answered (still in
            # flight at shutdown) is in neither file
            self.release(list(self.held.values()))
            self.sink.close()
            self.sink = None

    def done(self) -> None:
        self.close()
        if self.session is not None and ctx.options.hoptrace_har:
            write_har(self.session)


def write_har(session: Path) -> None:
    """flows.har from the session's flows.mitm, saying how far it got (a long session takes a
    while: ≈ 0.6 ms a flow, mostly mitmproxy reading them back); never raises: the other files
    are written already, and flows.mitm holds every flow."""
    har = session / "flows.har"
    if not (session / "flows.mitm").exists():
        log.info("hoptrace: no flows.mitm in %s: no flows.har", session)
        return
    log.info("hoptrace: writing %s from flows.mitm …", har)
    try:
        n = export_har(session / "flows.mitm", har, lambda k: log.info("hoptrace: flows.har: %d flows …", k))
    except Exception as exc:
        log.error("hoptrace: %s not written: %s (flows.mitm holds every flow)", har, exc)
    else:
        log.info("hoptrace: wrote %s (%d flows)", har, n)
