"""The payload's ``sequence``: what each service records, what the schema accepts, the setting."""

from __future__ import annotations

import random

import pytest

from proxy_addons.lineage import PingPongLineage
from services.a import process_a
from services.app import rng_for
from services.b import process_b
from services.payload import Payload, with_sequence
from services.settings import load_settings
from tests.unit.dev_client import KICK, client_for


def test_each_service_overwrites_its_iteration_in_order():
    out = with_sequence({"digits": [1]}, "a", 1)
    assert out["sequence"] == {"1": "a"}
    out = with_sequence(out, "b", 1)
    assert out["sequence"] == {"1": "b"}
    out = with_sequence({**out, "sequence": {"10": "b", **out["sequence"]}}, "a", 2)
    assert list(out["sequence"].items()) == [("1", "b"), ("2", "a"), ("10", "b")]


@pytest.mark.parametrize("bad", [{"0": "a"}, {"x": "a"}, {"1": "c"}, ["a"], "a"])
def test_schema_refuses_a_malformed_sequence(bad):
    with pytest.raises(ValueError):
        Payload.model_validate({**KICK, "sequence": bad})


def test_sequence_survives_validation_and_is_absent_unless_sent():
    p = Payload.model_validate({**KICK, "sequence": {"1": "b", "2": "a"}})
    assert p.dump()["sequence"] == {"1": "b", "2": "a"}
    assert "sequence" not in Payload.model_validate(KICK).dump()


def test_seeded_choices_do_not_depend_on_sequence():
    s = load_settings("a", seed=3)
    plain = Payload(digits=[4, 5])
    marked = Payload.model_validate({"digits": [4, 5], "sequence": {"1": "b", "2": "a"}})
    assert rng_for(s, plain).random() == rng_for(s, marked).random()


@pytest.mark.parametrize(("on", "want"), [(True, {"1": "a"}), (False, None)])
def test_setting_turns_it_off(on, want):
    with client_for(fail_rate=0, max_hops=1, sequence=on) as c:
        payload = c.post("/a/", json=KICK).json()["payload"]
    assert payload.get("sequence") == want


def test_gateway_lineage_follows_payloads_that_carry_a_sequence():
    lin, rng = PingPongLineage(), random.Random(1)
    got = Payload.model_validate(KICK)
    sent = with_sequence(process_a(got, rng).dump(), "a", 1)
    assert lin.follows("a", got.dump(), sent)
    back = with_sequence(process_b(Payload.model_validate(sent), rng).dump(), "b", 1)
    assert lin.follows("b", sent, back)
