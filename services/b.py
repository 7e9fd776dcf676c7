"""Service B: sets ``avg``/``max``/``min`` from ``digits`` (left null when ``digits`` is empty)."""

from __future__ import annotations

import random

from services.app import create_app
from services.payload import Payload
from services.settings import load_settings


def process_b(payload: Payload, rng: random.Random) -> Payload:
    d = payload.digits
    if not d:
        return payload.model_copy(update={"avg": None, "max": None, "min": None})
    return payload.model_copy(update={"avg": sum(d) / len(d), "max": max(d), "min": min(d)})


def make_app():
    return create_app(load_settings("b"), process_b)
