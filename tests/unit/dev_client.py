"""A service app in-process (Starlette's TestClient runs its lifespan) for the developer-view
tests; runs that stay inside one service (FAIL_RATE=1, MAX_HOPS=1) need no partner."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():  # starlette warns about its httpx-based client on import
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from services.a import process_a
from services.app import create_app
from services.settings import load_settings

KICK = {"name": "payload", "digits": [], "avg": None, "max": None, "min": None}


def client_for(tracer_provider=None, **settings) -> TestClient:
    return TestClient(create_app(load_settings("a", **settings), process_a, tracer_provider))
