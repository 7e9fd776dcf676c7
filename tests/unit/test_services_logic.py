"""The services' pure parts: schema, processing, hop numbering, settings."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from services.a import process_a
from services.app import rng_for
from services.b import process_b
from services.payload import Payload, hop_of, iteration_of
from services.settings import load_settings
from tests.conftest import SEED_KICK


def test_seed_kick_validates_and_keeps_unknown_field():
    p = Payload.model_validate_json(SEED_KICK)
    assert p.dump() == {"name": "payload", "digits": [], "avg": None, "max": None, "min": None,
                        "d;5Digits": []}


def test_a_appends_one_digit_in_range():
    p = Payload(digits=[5])
    for seed in range(200):
        out = process_a(p, random.Random(seed))
        assert out.digits[:-1] == [5] and 0 <= out.digits[-1] <= 100
    assert p.digits == [5]  # input untouched


def test_b_sets_stats_and_leaves_them_null_when_empty():
    out = process_b(Payload(digits=[1, 2, 6], **{"x": 1}), random.Random(0))
    assert (out.avg, out.max, out.min) == (3.0, 6, 1)
    assert out.dump()["x"] == 1
    empty = process_b(Payload(digits=[], avg=1.0, max=1, min=1), random.Random(0))
    assert (empty.avg, empty.max, empty.min) == (None, None, None)


@pytest.mark.parametrize(("service", "n", "hop", "it"), [("a", 0, 1, 1), ("b", 1, 2, 1), ("a", 1, 3, 2), ("b", 2, 4, 2)])
def test_hop_and_iteration_from_payload(service, n, hop, it):
    p = Payload(digits=list(range(n)))
    assert (hop_of(service, p), iteration_of(service, p)) == (hop, it)


def test_seeded_rng_depends_on_payload_only():
    s = load_settings("a", seed=7)
    p = Payload(digits=[1, 2])
    assert rng_for(s, p).random() == rng_for(s, Payload(digits=[1, 2])).random()
    assert rng_for(s, p).random() != rng_for(s, Payload(digits=[1, 3])).random()
    assert rng_for(load_settings("b", seed=7), p).random() != rng_for(s, p).random()


def test_settings_defaults():
    s = load_settings("b")
    assert (s.port, s.partner_url, s.max_hops) == (8002, "http://127.0.0.1:8000/a/", 100)
    assert s.fail_rate == pytest.approx(4 / 11)


@pytest.mark.parametrize(("env", "needle"), [
    ({"FAIL_RATE": "2"}, "FAIL_RATE"),
    ({"MAX_HOPS": "0"}, "MAX_HOPS"),
    ({"PARTNER_URL": "ftp://x"}, "PARTNER_URL"),
    ({"PARTNER_TIMEOUT": "-1"}, "PARTNER_TIMEOUT"),
])
def test_invalid_settings_fail_at_startup_with_clear_message(env, needle, monkeypatch):
    proc = subprocess.run([sys.executable, "-m", "services", "a"], env={**_clean_env(), **env},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "invalid service settings" in proc.stderr and needle in proc.stderr
    assert "Traceback" not in proc.stderr


def _clean_env() -> dict:
    import os

    keep = {k: v for k, v in os.environ.items() if k not in
            {"FAIL_RATE", "MAX_HOPS", "PARTNER_URL", "PARTNER_TIMEOUT", "SEED", "PORT"}}
    return keep


def test_payload_rejects_wrong_types():
    with pytest.raises(ValueError):
        Payload.model_validate(json.loads('{"digits": "x"}'))
