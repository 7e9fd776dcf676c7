"""A stand-in for a pipeline we cannot change (like the seed's original app): ONE process serves
both /a/ and /b/ on one port and calls one fixed gateway URL. It propagates nothing (no ids, no
trace headers) and is written without our service factory.

Run: GATEWAY_URL=http://127.0.0.1:8000 FAIL_RATE=0.3 uvicorn tests.apps.single:app --port 9000
"""

from __future__ import annotations

import json
import os
import random

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

GATEWAY = os.environ.get("GATEWAY_URL", "http://localhost:8000")
FAIL_RATE = float(os.environ.get("FAIL_RATE", "0.3"))
MAX_DIGITS = int(os.environ.get("MAX_DIGITS", "30"))
SERVED = {"a": 0, "b": 0}
LOG: list[dict] = []  # ground truth for tests: what this app received, in order, and its answer status


async def step(request: Request, me: str, partner: str) -> Response:
    SERVED[me] += 1
    try:
        data = json.loads(await request.body())
        digits = data.get("digits", [])
        assert isinstance(digits, list)
    except Exception:
        return JSONResponse({"error": "bad payload"}, status_code=422)
    entry = {"service": me, "payload": data, "status": None}
    LOG.append(entry)
    if random.random() < FAIL_RATE:
        entry["status"] = 400
        return JSONResponse({"error": f"{me} says no", "payload": data}, status_code=400)
    if me == "a":
        data = {**data, "digits": digits + [random.randint(0, 100)]}
    else:
        data = {**data, "avg": sum(digits) / len(digits) if digits else None,
                "max": max(digits, default=None), "min": min(digits, default=None)}
    if len(data.get("digits", [])) >= MAX_DIGITS and me == "b":
        entry["status"] = 200
        return JSONResponse({"done": data})
    # naive: one client (one connection) per call; verify=False only spares building a TLS
    # context per call (the gateway is plain http)
    async with httpx.AsyncClient(timeout=60, trust_env=False, verify=False) as client:
        resp = await client.post(f"{GATEWAY}/{partner}/", json=data)
    entry["status"] = 200
    if resp.status_code >= 400:
        return JSONResponse({"stopped": resp.json() if resp.content else None, "status": resp.status_code})
    return Response(resp.content, media_type="application/json")


async def a(request: Request) -> Response:
    return await step(request, "a", "b")


async def b(request: Request) -> Response:
    return await step(request, "b", "a")


async def stats(request: Request) -> Response:
    return JSONResponse({"served": SERVED, "log": LOG})


app = Starlette(routes=[Route("/a/", a, methods=["POST"]), Route("/b/", b, methods=["POST"]),
                        Route("/stats", stats)])
