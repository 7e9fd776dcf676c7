"""The one app factory for both services: validate → reject at random → process → forward.

A and B differ only in the ``process`` function they pass in. The run's state lives only in the
payload; the answer of every outer hop carries the run's final outcome, passed up unchanged, so the
kick's answer says how the run ended while the 4xx stays on the hop that rejected.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from opentelemetry.sdk.trace import TracerProvider

from services import tracing
from services.devview import HopRecord, install_history
from services.history import History
from services.limits import echoable, install_limits, unprocessable
from services.payload import Payload, hop_of, iteration_of, with_sequence
from services.settings import Settings

Process = Callable[[Payload, random.Random], Payload]


def rng_for(settings: Settings, payload: Payload) -> random.Random:
    """With SEED set, the random choices depend only on (seed, service, payload): the same kicks
    give the same runs, whatever the interleaving. Without SEED, fresh randomness."""
    if settings.seed is None:
        return random.Random()
    plain = {k: v for k, v in payload.dump().items() if k != "sequence"}  # same runs, on or off
    canonical = json.dumps(plain, sort_keys=True, separators=(",", ":"))
    return random.Random(f"{settings.seed}|{settings.service_name}|{canonical}")


def rejected_outcome(partner: str, status: int, body: object, sent: dict, hop: int) -> dict:
    """Turn the partner's 4xx into the run's outcome; the 4xx itself stays on the partner's hop."""
    b = body if isinstance(body, dict) else {}
    return {
        "outcome": "rejected",
        "stopped_by": b.get("service", partner),
        "status": status,
        "hops": b.get("hop", hop + 1),
        "iteration": b.get("iteration"),
        "reason": b.get("reason") or ("schema validation" if status == 422 else f"HTTP {status}"),
        "payload": b.get("payload", sent),
    }


def run_outcome_of(content: bytes) -> str | None:
    """The run outcome a passed-up answer tells (``rejected``, ``max_hops``, …), if any."""
    try:
        body = json.loads(content)
    except ValueError:
        return None
    return body.get("outcome") if isinstance(body, dict) else None


def create_app(settings: Settings, process: Process, tracer_provider: TracerProvider | None = None) -> FastAPI:
    name = settings.service_name
    partner = "b" if name == "a" else "a"
    provider = tracer_provider or tracing.make_tracer_provider(name)
    history = History(settings.history_path, settings.history_max, name)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # One client per process. No cap on connections: a run of MAX_HOPS hops holds one open
        # request per nesting level, so any finite pool smaller than that could deadlock.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        async with httpx.AsyncClient(
            timeout=settings.partner_timeout, limits=limits, trust_env=False
        ) as client:
            tracing.instrument_client(client, provider)
            app.state.client = client
            yield
        history.close()
        if tracer_provider is None:
            provider.shutdown()  # flushes spans to the collector, if one is configured

    app = FastAPI(title=f"hoptrace service {name.upper()}", lifespan=lifespan)
    app.state.served = 0
    install_limits(app, settings.max_body_bytes)
    tracing.instrument_app(app, provider)
    install_history(app, history)

    @app.exception_handler(RequestValidationError)
    async def refused(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path == f"/{name}/":  # the schema refused a payload: the run ends here
            HopRecord(history, settings, None, None, echoable(exc.body)).rejected(
                422, "schema validation", echoable(exc.body))
        return await unprocessable(request, exc)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "service": name, "served": app.state.served}

    @app.post(f"/{name}/")
    async def handle(payload: Payload) -> Response:
        app.state.served += 1
        received = payload.dump()
        hop, iteration = hop_of(name, payload), iteration_of(name, payload)
        rec = HopRecord(history, settings, hop, iteration, received)
        rng = rng_for(settings, payload)
        if rng.random() < settings.fail_rate:
            rec.rejected(400, "negative validation", received)
            return JSONResponse(
                status_code=400,
                content={
                    "detail": f"{name} rejected the payload (negative validation)",
                    "service": name,
                    "reason": "negative validation",
                    "hop": hop,
                    "iteration": iteration,
                    "payload": received,
                },
            )
        out = process(payload, rng).dump()
        if settings.sequence:
            out = with_sequence(out, name, iteration)
        rec.processed(out)
        if hop >= settings.max_hops:
            rec.answered("max_hops", 200, out, run_outcome="max_hops")
            return JSONResponse(
                {
                    "outcome": "max_hops",
                    "stopped_by": name,
                    "status": 200,
                    "hops": hop,
                    "iteration": iteration,
                    "reason": f"MAX_HOPS={settings.max_hops} reached",
                    "payload": out,
                }
            )
        return await forward(app.state.client, out, hop, rec)

    async def forward(client: httpx.AsyncClient, out: dict, hop: int, rec: HopRecord) -> Response:
        url = settings.partner_url
        rec.forwarded(partner, url, out)
        try:
            resp = await client.post(url, json=out)
        except httpx.TimeoutException:
            detail = f"{name}: partner {partner} at {url} did not answer within {settings.partner_timeout:g} s"
            rec.partner_failed("partner_timeout", 504, detail, out)
            return JSONResponse(
                status_code=504,
                content={"outcome": "partner_timeout", "service": name, "detail": detail, "payload": out},
            )
        except httpx.HTTPError as exc:
            detail = f"{name}: partner {partner} at {url} unreachable: {type(exc).__name__}: {exc}"
            rec.partner_failed("partner_unreachable", 502, detail, out)
            return JSONResponse(
                status_code=502,
                content={"outcome": "partner_unreachable", "service": name, "detail": detail, "payload": out},
            )
        if resp.is_success or resp.status_code >= 500:
            # The run's outcome (or a partner error) is passed up unchanged.
            ctype = resp.headers.get("content-type", "application/json")
            told = run_outcome_of(resp.content)
            # a 5xx that is not a deeper hop's outcome passed up: the partner (or the gateway) failed
            result = "partner_error" if resp.status_code >= 500 and told is None else "forwarded"
            rec.answered(result, resp.status_code, out, run_outcome=told, partner_status=resp.status_code)
            return Response(resp.content, status_code=resp.status_code, media_type=ctype)
        try:
            body = resp.json()
        except ValueError:
            body = resp.text
        outcome = rejected_outcome(partner, resp.status_code, body, out, hop)
        rec.answered("forwarded", 200, out, run_outcome="rejected", partner_status=resp.status_code)
        return JSONResponse(outcome)

    return app
