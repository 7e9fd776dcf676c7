"""Trace propagation with OpenTelemetry's own FastAPI and httpx instrumentation (W3C traceparent).

A request without ``traceparent`` (the kick) starts a trace; the service's call to its partner
carries the trace on, so every hop of a run is one trace, each hop's server span a child of the
client span of the hop that sent it. The answer carries ``traceresponse`` (W3C Trace Context
level 2), so whoever kicked a run learns its trace id. Spans are exported only when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``…_TRACES_ENDPOINT``) is set: then to any OTLP/HTTP
collector (Jaeger, Tempo); otherwise nothing is exported and nothing fails.
"""

from __future__ import annotations

import os

import httpx
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.propagators import (
    TraceResponsePropagator,
    set_global_response_propagator,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

EXPORT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def export_configured(env: dict | None = None) -> bool:
    env = os.environ if env is None else env
    return any(env.get(v) for v in EXPORT_VARS) and env.get("OTEL_SDK_DISABLED", "").lower() != "true"


def make_tracer_provider(service: str) -> TracerProvider:
    """This service's provider: OTLP/HTTP export when configured by the standard env vars."""
    name = os.environ.get("OTEL_SERVICE_NAME") or f"hoptrace-{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    if export_configured():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def instrument_app(app: FastAPI, provider: TracerProvider) -> None:
    """Server spans for every request (no per-message receive/send spans), ``traceresponse``
    on every answer."""
    set_global_response_propagator(TraceResponsePropagator())
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, exclude_spans=["receive", "send"])


def instrument_client(client: httpx.AsyncClient, provider: TracerProvider) -> None:
    """Client spans for calls to the partner; injects ``traceparent`` into their headers."""
    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)


def current_ids() -> tuple[str | None, str | None]:
    """(trace id, span id) of the current span as hex, or (None, None) outside any trace."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def tag_span(**attrs) -> None:
    """Put the hop's facts (hop, iteration, outcome) on the current server span, for Jaeger."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes({f"hoptrace.{k}": v for k, v in attrs.items() if v is not None})
