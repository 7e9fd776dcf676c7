"""Structured logs: one JSON line per event with the trace id; console lines; the access log."""

from __future__ import annotations

import io
import json
import logging

import pytest

from services.logs import SERVICE_LOGGERS, ConsoleFormatter, TraceContext, configure_logging
from tests.unit.dev_client import KICK, client_for


@pytest.fixture
def log_stream():
    """Our handler on a string buffer; the loggers are put back as they were afterwards."""
    saved = {n: (lg.handlers[:], lg.level, lg.propagate) for n in SERVICE_LOGGERS if (lg := logging.getLogger(n))}
    buf = io.StringIO()
    yield buf
    for n, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(n)
        lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate


def lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_one_json_line_per_event_all_with_the_runs_trace_id(log_stream):
    configure_logging("a", "INFO", "auto", log_stream)  # not a terminal → JSON
    with client_for(fail_rate=0, max_hops=1) as c:
        r = c.post("/a/", json=KICK)
    trace_id = r.headers["traceresponse"].split("-")[1]
    events = [e for e in lines(log_stream) if e["event"] != "server"]
    assert [e["event"] for e in events] == ["received", "processed", "answered"]
    assert {(e["service"], e["trace_id"], e["hop"], e["iteration"]) for e in events} == {("a", trace_id, 1, 1)}
    assert events[0]["payload"] == KICK and events[1]["payload"] == r.json()["payload"]
    answered = events[2]
    assert (answered["status"], answered["result"], answered["run_outcome"]) == (200, "max_hops", "max_hops")
    assert answered["duration_ms"] >= 0


def test_rejection_logged_with_payload_size_when_asked(log_stream):
    configure_logging("a", "INFO", "json", log_stream)
    with client_for(fail_rate=1, log_payload="size") as c:
        c.post("/a/", json=KICK)
    received, rejected, answered = [e for e in lines(log_stream) if e["event"] != "server"]
    size = len(json.dumps(KICK, separators=(",", ":")).encode())
    assert "payload" not in received and received["payload_bytes"] == size
    assert (rejected["event"], rejected["status"], rejected["reason"]) == ("rejected", 400, "negative validation")
    assert answered["result"] == "rejected"


def test_level_from_settings_silences_info(log_stream):
    configure_logging("a", "WARNING", "json", log_stream)
    with client_for(fail_rate=1) as c:
        c.post("/a/", json=KICK)
    assert lines(log_stream) == []


def test_uvicorn_access_record_has_the_same_shape(log_stream):
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "POST", "/a/", "1.1", 200), None)
    TraceContext("b").filter(record)
    handler = configure_logging("b", "INFO", "json", log_stream)
    out = json.loads(handler.format(record))
    assert out["event"] == "access" and out["service"] == "b"
    assert (out["method"], out["path"], out["status"]) == ("POST", "/a/", 200)
    assert {"ts", "level", "trace_id", "span_id"} <= out.keys()


def test_console_line_is_short_and_human():
    record = logging.LogRecord("services", logging.INFO, __file__, 1, "received", (), None)
    record.event, record.fields = "received", {"hop": 3, "iteration": 2, "payload": {"digits": [7]}}
    TraceContext("a").filter(record)
    line = ConsoleFormatter().format(record)
    assert " A hop 3 it 2 received" in line and 'payload={"digits": [7]}' in line
    assert "\n" not in line
