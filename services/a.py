"""Service A: appends a random digit 0..100 to ``digits``."""

from __future__ import annotations

import random

from services.app import create_app
from services.payload import Payload
from services.settings import load_settings


def process_a(payload: Payload, rng: random.Random) -> Payload:
    return payload.model_copy(update={"digits": [*payload.digits, rng.randint(0, 100)]})


def make_app():
    return create_app(load_settings("a"), process_a)
