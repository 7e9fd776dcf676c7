"""The lineage rules against what the services really do (their own process functions)."""

from __future__ import annotations

import random

import pytest

from proxy_addons.lineage import AnyLineage, PingPongLineage, canonical, diff, stats_of
from services.a import process_a
from services.app import rejected_outcome
from services.b import process_b
from services.payload import Payload, iteration_of

L = PingPongLineage()
SEED_KICK = {"name": "payload", "digits": [], "avg": None, "max": None, "min": None, "d;5Digits": 5}


def step(service: str, received: dict, seed: int = 0) -> dict:
    proc = process_a if service == "a" else process_b
    return proc(Payload.model_validate(received), random.Random(seed)).dump()


@pytest.mark.parametrize("seed", range(20))
def test_real_steps_follow_and_keys_match(seed):
    rng = random.Random(seed)
    p = dict(SEED_KICK) if seed % 2 else {"digits": []}  # a bare kick gets the defaults filled in
    for n in range(rng.randint(1, 12)):
        svc = "a" if n % 2 == 0 else "b"
        out = step(svc, p, seed * 100 + n)
        assert L.follows(svc, p, out)
        assert L.key_after(svc, p) == L.key_before(svc, out)
        other = "b" if svc == "a" else "a"
        assert not L.follows(other, p, out) or out == p
        p = out


@pytest.mark.parametrize(
    ("received", "forwarded"),
    [
        ({"digits": [1]}, {"digits": [1, 2, 3]}),  # two digits appended
        ({"digits": [1]}, {"digits": [2, 5]}),  # history changed
        ({"digits": [1]}, {"digits": [1, 101]}),  # out of range
        ({"digits": [1]}, {"digits": [1, True]}),  # not an int
        ({"digits": [1], "name": "x"}, {"digits": [1, 4], "name": "y"}),  # other field changed
        ({"digits": [1], "extra": 1}, {"digits": [1, 4]}),  # unknown field dropped
        ({"digits": [1]}, {"digits": [1]}),  # nothing appended
    ],
)
def test_a_rejects_non_successors(received, forwarded):
    assert not L.follows("a", received, forwarded)


def test_b_rule():
    r = {"digits": [3, 5], "avg": 3.0, "max": 3, "min": 3}
    assert L.follows("b", r, {"digits": [3, 5], "avg": 4.0, "max": 5, "min": 3})
    assert L.follows("b", r, {"digits": [3, 5], "avg": 4, "max": 5, "min": 3})  # 4 == 4.0
    assert not L.follows("b", r, {"digits": [3, 5], "avg": 4.5, "max": 5, "min": 3})
    assert not L.follows("b", r, {"digits": [3, 5, 1], "avg": 3.0, "max": 5, "min": 1})
    assert L.follows("b", {"digits": []}, {"digits": [], "avg": None, "max": None, "min": None})
    assert not L.follows("b", {"digits": []}, {"digits": [], "avg": 0, "max": None, "min": None})
    assert stats_of([]) == {"avg": None, "max": None, "min": None}


def test_not_payloads_never_follow():
    for bad in (None, "text", [1], {"digits": "x"}, {"digits": [1, "2"]}):
        assert L.key_after("a", bad) is None and L.key_before("a", bad) is None
        assert not L.follows("a", bad, bad)
    assert L.key_after("c", {"digits": []}) is None
    assert L.senders("a") == ("b",) and L.senders("b") == ("a",) and L.senders(None) is None


@pytest.mark.parametrize("n", range(6))
def test_iteration_matches_the_services(n):
    p = Payload(digits=list(range(n)))
    assert L.iteration("a", p.dump()) == iteration_of("a", p) == n + 1
    assert L.iteration("b", p.dump()) == iteration_of("b", p) == n
    assert L.expected_hop("a", p.dump()) == 2 * n + 1
    assert L.iteration("x", p.dump()) is None


def test_answer_links_pass_up_and_rejected_outcome():
    final = {"outcome": "max_hops", "stopped_by": "a", "payload": {"digits": [1, 2]}}
    assert L.answer_links(final, 200, dict(final)) is True
    assert L.answer_links(final, 200, {**final, "hops": 9}) is False
    assert L.answer_links("502 text", 502, "502 text") is True
    sent = {"name": "payload", "digits": [7], "avg": None, "max": None, "min": None}
    err = {"detail": "b rejected", "service": "b", "reason": "negative validation", "hop": 2,
           "iteration": 1, "payload": sent}
    parent = rejected_outcome("b", 400, err, sent, 1)
    assert L.answer_links(parent, 400, err) is True
    assert L.answer_links(parent, 400, {**err, "payload": {"digits": [8]}}) is False
    assert L.answer_links(parent, 409, err) is False
    assert L.answer_links(final, 400, err) is False
    v422 = rejected_outcome("b", 422, {"detail": [{"msg": "bad"}]}, sent, 1)
    assert L.answer_links(v422, 422, {"detail": [{"msg": "bad"}]}, child_request=sent) is True
    assert L.answer_links(v422, 422, {"detail": []}) is None  # no payload in the body, none given
    assert L.answer_links(final, None, None) is False  # answered before its child: not its child
    timeout = {"outcome": "partner_timeout", "service": "a", "payload": sent}
    assert L.answer_links(timeout, None, None) is None
    assert L.answer_links("502 Bad Gateway", 502, None) is None  # gateway 502: body not recorded
    assert L.answer_links(final, 502, None) is False  # a service's own answer is no pass-up


def test_any_lineage_is_weak():
    w = AnyLineage()
    assert w.evidence == "timing" and w.senders("a") is None
    assert w.follows("x", {"a": 1}, {"b": 2})
    assert w.key_after(None, {}) is None
    assert w.answer_links({"x": 1}, 200, {"x": 1}) is True
    assert w.answer_links({"x": 1}, 200, {"x": 2}) is None


def test_canonical_ignores_order_and_int_float():
    assert canonical({"b": 1, "a": [1.0, {"c": 2}]}) == canonical({"a": [1, {"c": 2.0}], "b": 1.0})
    assert canonical(1.5) != canonical(1)


def test_diff():
    before = {"name": "p", "digits": [1], "avg": None, "gone": 1}
    after = {"name": "p", "digits": [1, 9], "avg": 5.0, "new": True}
    assert diff(before, after) == {
        "appended": {"digits": [9]},
        "changed": {"avg": [None, 5.0]},
        "added": {"new": True},
        "removed": {"gone": 1},
    }
    assert diff(before, dict(before)) == {}
    assert diff({"d": [1, 2]}, {"d": [3]}) == {"changed": {"d": [[1, 2], [3]]}}
    assert diff(None, {"a": 1}) == {"changed": {"": [None, {"a": 1}]}}
    assert L.diff(1, 1.0) == {}
