"""Trace propagation, in-process: A and B in real uvicorn servers (threads), spans caught by
OpenTelemetry's in-memory exporter; and OTLP export to a real HTTP receiver only when set."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from proxy_addons.stack import free_ports
from services.a import process_a
from services.app import create_app
from services.b import process_b
from services.settings import load_settings
from services.tracing import export_configured, make_tracer_provider
from tests.unit.dev_client import KICK, client_for


@pytest.fixture
def servers():
    """Start apps in uvicorn servers on threads; all are stopped at teardown."""
    started: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app, port: int) -> None:
        srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        th = threading.Thread(target=srv.run, daemon=True)
        th.start()
        started.append((srv, th))
        deadline = time.monotonic() + 20
        while not srv.started:
            assert th.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)

    yield start
    for srv, th in started:
        srv.should_exit = True
        th.join(10)


def test_each_hop_is_a_child_of_the_hop_that_sent_it(servers):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    pa, pb = free_ports(2)
    common = {"fail_rate": 0, "max_hops": 5}
    servers(create_app(load_settings("a", partner_url=f"http://127.0.0.1:{pb}/b/", **common), process_a, provider), pa)
    servers(create_app(load_settings("b", partner_url=f"http://127.0.0.1:{pa}/a/", **common), process_b, provider), pb)
    r = httpx.post(f"http://127.0.0.1:{pa}/a/", json=KICK, timeout=30)
    assert r.json()["outcome"] == "max_hops" and r.json()["hops"] == 5

    deadline = time.monotonic() + 10  # a server span ends just after its answer is sent
    while sum(s.kind == SpanKind.SERVER for s in exporter.get_finished_spans()) < 5:
        assert time.monotonic() < deadline, "hop 1's span never ended"
        time.sleep(0.01)
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    server = sorted((s for s in spans if s.kind == SpanKind.SERVER), key=lambda s: s.attributes["hoptrace.hop"])
    assert [s.attributes["hoptrace.hop"] for s in server] == [1, 2, 3, 4, 5]
    assert len({s.context.trace_id for s in spans}) == 1
    assert f"{server[0].context.trace_id:032x}" == r.headers["traceresponse"].split("-")[1]
    assert server[0].parent is None  # the kick had no trace: hop 1 starts it
    for sender, hop in zip(server, server[1:]):
        client = by_id[hop.parent.span_id]  # hop k's parent: the call hop k-1 made to its partner
        assert client.kind == SpanKind.CLIENT and client.parent.span_id == sender.context.span_id


def test_a_kick_with_a_trace_continues_it():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace_id, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    with client_for(provider, fail_rate=0, max_hops=1) as c:
        c.post("/a/", json=KICK, headers={"traceparent": f"00-{trace_id}-{parent}-01"})
    (span,) = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert f"{span.context.trace_id:032x}" == trace_id and f"{span.parent.span_id:016x}" == parent


def test_export_only_when_the_standard_variable_is_set():
    assert not export_configured({})
    assert export_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert export_configured({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert not export_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"})


def test_spans_reach_an_otlp_http_receiver(monkeypatch):
    got: list[tuple[str, str, bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["content-length"]))
            got.append((self.path, self.headers["content-type"], body))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{httpd.server_port}")
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        provider = make_tracer_provider("a")
        with client_for(provider, fail_rate=1) as c:
            trace_id = c.post("/a/", json=KICK).headers["traceresponse"].split("-")[1]
        provider.shutdown()  # flushes the batch
    finally:
        httpd.shutdown()
    assert got and all(p == "/v1/traces" and t == "application/x-protobuf" for p, t, _ in got)
    req = ExportTraceServiceRequest()
    req.ParseFromString(got[0][2])
    rs = req.resource_spans[0]
    assert {a.key: a.value.string_value for a in rs.resource.attributes}["service.name"] == "hoptrace-a"
    assert {s.trace_id.hex() for ss in rs.scope_spans for s in ss.spans} == {trace_id}
