"""The one app factory for both services: validate → reject at random → process → forward.

A and B differ only in the ``process`` function they pass in. The run's state lives only in the
payload; the answer of every outer hop carries the run's final outcome, passed up unchanged, so the
kick's answer says how the run ended while the 4xx stays on the hop that rejected.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from services.limits import install_limits
from services.payload import Payload, hop_of, iteration_of
from services.settings import Settings

Process = Callable[[Payload, random.Random], Payload]
log = logging.getLogger("services")


def rng_for(settings: Settings, payload: Payload) -> random.Random:
    """With SEED set, the random choices depend only on (seed, service, payload): the same kicks
    give the same runs, whatever the interleaving. Without SEED, fresh randomness."""
    if settings.seed is None:
        return random.Random()
    canonical = json.dumps(payload.dump(), sort_keys=True, separators=(",", ":"))
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


def create_app(settings: Settings, process: Process) -> FastAPI:
    name = settings.service_name
    partner = "b" if name == "a" else "a"

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # One client per process. No cap on connections: a run of MAX_HOPS hops holds one open
        # request per nesting level, so any finite pool smaller than that could deadlock.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        async with httpx.AsyncClient(
            timeout=settings.partner_timeout, limits=limits, trust_env=False
        ) as client:
            app.state.client = client
            yield

    app = FastAPI(title=f"hoptrace service {name.upper()}", lifespan=lifespan)
    app.state.served = 0
    install_limits(app, settings.max_body_bytes)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "service": name, "served": app.state.served}

    @app.post(f"/{name}/")
    async def handle(payload: Payload) -> Response:
        app.state.served += 1
        received = payload.dump()
        hop, iteration = hop_of(name, payload), iteration_of(name, payload)
        rng = rng_for(settings, payload)
        if rng.random() < settings.fail_rate:
            log.info("%s rejected hop %d (iteration %d): %s", name, hop, iteration, received)
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
        if hop >= settings.max_hops:
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
        return await forward(app.state.client, out, hop)

    async def forward(client: httpx.AsyncClient, out: dict, hop: int) -> Response:
        url = settings.partner_url
        try:
            resp = await client.post(url, json=out)
        except httpx.TimeoutException:
            detail = f"{name}: partner {partner} at {url} did not answer within {settings.partner_timeout:g} s"
            return JSONResponse(
                status_code=504,
                content={"outcome": "partner_timeout", "service": name, "detail": detail, "payload": out},
            )
        except httpx.HTTPError as exc:
            detail = f"{name}: partner {partner} at {url} unreachable: {type(exc).__name__}: {exc}"
            return JSONResponse(
                status_code=502,
                content={"outcome": "partner_unreachable", "service": name, "detail": detail, "payload": out},
            )
        if resp.is_success or resp.status_code >= 500:
            # The run's outcome (or a partner error) is passed up unchanged.
            ctype = resp.headers.get("content-type", "application/json")
            return Response(resp.content, status_code=resp.status_code, media_type=ctype)
        try:
            body = resp.json()
        except ValueError:
            body = resp.text
        return JSONResponse(rejected_outcome(partner, resp.status_code, body, out, hop))

    return app
