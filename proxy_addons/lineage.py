"""PURE: which payload can follow which, the one place that knows what our services do.

The run engine (``runs.py``) never looks inside a payload itself: it asks a ``Lineage``. A hop
offers a *successor key* (``key_after``: what the service that received this payload would send
on); a new request offers a *predecessor key* (``key_before``: what the sender must have received).
Equal keys mean "follows", so the engine finds a request's parent with one dict look-up instead of
scanning every open hop. Another pair of services describes itself by subclassing ``Lineage``.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

import orjson

STATS = ("avg", "max", "min")
GAVE_UP = ("partner_timeout", "partner_unreachable")  # services/app.py answers without the child's
# What services.payload.Payload fills in when a field is missing: A and B always send all five.
DEFAULTS: dict[str, Any] = {"name": "payload", "digits": [], "avg": None, "max": None, "min": None}


_INT = {int}


def _ints(values: list) -> bool:
    """Every item is an int (not a bool): ``digits``, the common and long case. C-speed."""
    return not values or set(map(type, values)) == _INT


def _plain(value: Any) -> Any:
    """JSON value with integral floats written as ints, so ``5`` and ``5.0`` compare equal (the
    services' pydantic model turns an int ``avg`` into a float)."""
    t = type(value)
    if t is float:
        return int(value) if value.is_integer() else value
    if t is dict:
        return {k: _plain(v) for k, v in value.items()}
    if t is list:
        if _ints(value):  # digits: the common, long case
            return value
        return [_plain(v) for v in value]
    return value


def same(a: Any, b: Any) -> bool:
    """JSON equality, key order and int/float spelling ignored (Python's ``==`` on parsed JSON)."""
    return bool(a == b)


def canonical(value: Any) -> bytes | str:
    """One key per JSON value, key order and int/float spelling ignored: a hashable state. orjson
    (fast) when it can; the stdlib for what it refuses (ints beyond 64 bits), deterministically,
    so one value always gets the same key."""
    plain = _plain(value)
    try:
        return orjson.dumps(plain, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(plain, sort_keys=True, separators=(",", ":"), default=str)


def diff(before: Any, after: Any) -> dict:
    """What changed from ``before`` to ``after``: ``changed`` {key: [old, new]}, ``added``,
    ``removed``, and ``appended`` {key: [new items]} where a list only grew at its end.
    Non-objects that differ are reported under the key ``""``. Empty dict: no change.
    (Runs for every hop of every report: ``same`` inline, and ``removed`` looked for only when
    some key of ``before`` was not met in ``after``.)"""
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return {} if same(before, after) else {"changed": {"": [before, after]}}
    out: dict[str, dict] = {}
    met = 0
    for key, new in after.items():
        if key not in before:
            out.setdefault("added", {})[key] = new
            continue
        met += 1
        old = before[key]
        if old == new:
            continue
        if type(old) is list and type(new) is list and len(new) > len(old) and new[: len(old)] == old:
            out.setdefault("appended", {})[key] = new[len(old) :]
        else:
            out.setdefault("changed", {})[key] = [old, new]
    if met < len(before):
        for key, old in before.items():
            if key not in after:
                out.setdefault("removed", {})[key] = old
    return out


class Lineage:
    """The weakest useful rule set; subclasses sharpen it.

    ``evidence`` names what a lineage match proves ("lineage", or "timing" for a rule that only
    says "any open hop could be the parent"). ``single_forward``: a hop forwards at most once
    in its life (True for A/B), so a hop whose child ended is no longer a possible parent."""

    evidence = "lineage"
    single_forward = True

    def senders(self, target: str | None) -> tuple[str, ...] | None:
        """The services that send requests to ``target``; None: unknown, any service may."""
        return None

    def key_after(self, service: str | None, received: Any) -> Hashable | None:
        """Key a successor of ``received`` must match; None: ``service`` forwards nothing from it."""
        return None

    def key_before(self, sender: str, forwarded: Any) -> Hashable | None:
        """Key of the payload ``sender`` must have received to forward ``forwarded``."""
        return None

    def follows(self, service: str | None, received: Any, forwarded: Any) -> bool:
        """True when ``service``, having received ``received``, could have sent ``forwarded``."""
        key = self.key_after(service, received)
        return key is not None and service is not None and key == self.key_before(service, forwarded)

    def iteration(self, service: str | None, payload: Any) -> int | None:
        """The iteration a request belongs to, read from its payload; None when unknown."""
        return None

    def expected_hop(self, service: str | None, payload: Any) -> int | None:
        """Where this request sits in a run kicked from the empty state; None when unknown.
        A first hop with an expected hop > 1 makes its run ``partial``."""
        return None

    def answer_links(
        self, parent_body: Any, child_status: int | None, child_body: Any, child_request: Any = None
    ) -> bool | None:
        """Could ``parent_body`` be the answer its service gave after this child's answer?
        True/False when the bodies decide it, None when they cannot (missing or cut bodies).
        ``child_status`` None: the child has not answered yet."""
        if child_status is None or child_body is None or parent_body is None:
            return None
        return True if same(parent_body, child_body) else None

    def diff(self, before: Any, after: Any) -> dict:
        return diff(before, after)


class AnyLineage(Lineage):
    """For unknown services: any open hop of any service may be the parent, only nesting and
    timing decide (the engine then prefers the earliest open hop without a child)."""

    evidence = "timing"
    single_forward = False

    def key_after(self, service: str | None, received: Any) -> Hashable | None:
        return service and ("any", service)

    def key_before(self, sender: str, forwarded: Any) -> Hashable | None:
        return ("any", sender)


def _payload(value: Any) -> dict | None:
    """The payload with the schema's defaults filled in, or None when it is not one. Its
    ``sequence`` (services/payload.py: each service records itself there) is left out: it says
    nothing the digits do not, and a service may have it turned off."""
    if not isinstance(value, dict):
        return None
    out = {**DEFAULTS, **value}
    out.pop("sequence", None)
    digits = out["digits"]
    return out if isinstance(digits, list) and _ints(digits) else None


def _digit_count(value: Any) -> int | None:
    """``len(_payload(value)["digits"])`` without building the payload."""
    if not isinstance(value, dict):
        return None
    digits = value.get("digits", DEFAULTS["digits"])
    return len(digits) if isinstance(digits, list) and _ints(digits) else None


def stats_of(digits: list[int]) -> dict[str, Any]:
    """What B sets: avg/max/min of ``digits``, all None when ``digits`` is empty."""
    if not digits:
        return {"avg": None, "max": None, "min": None}
    return {"avg": sum(digits) / len(digits), "max": max(digits), "min": min(digits)}


def _without_stats(p: dict) -> str:
    return canonical({k: v for k, v in p.items() if k not in STATS})


class PingPongLineage(Lineage):
    """Our A/B services. A: forwards what it received with one int 0..100 appended to ``digits``.
    B: forwards ``digits`` unchanged with avg/max/min set to their stats. Other fields unchanged.

    Iteration = one A step plus the B step after it: A receiving n digits is iteration n+1, B
    receiving n digits is iteration n; so iteration I starts at hop 2I-1 of a run kicked empty."""

    partners = {"a": "b", "b": "a"}

    def senders(self, target: str | None) -> tuple[str, ...] | None:
        partner = self.partners.get(target or "")
        return (partner,) if partner else None

    def key_after(self, service: str | None, received: Any) -> Hashable | None:
        p = _payload(received)
        if p is None or service not in self.partners:
            return None
        return ("a", canonical(p)) if service == "a" else ("b", _without_stats(p))

    def key_before(self, sender: str, forwarded: Any) -> Hashable | None:
        p = _payload(forwarded)
        if p is None:
            return None
        digits = p["digits"]
        if sender == "a":
            if not digits or not 0 <= digits[-1] <= 100:
                return None
            return ("a", canonical({**p, "digits": digits[:-1]}))
        if sender == "b":
            want = stats_of(digits)
            if not same({k: p[k] for k in STATS}, want):
                return None
            return ("b", _without_stats(p))
        return None

    def iteration(self, service: str | None, payload: Any) -> int | None:
        n = _digit_count(payload) if service in self.partners else None
        if n is None:
            return None
        return n + 1 if service == "a" else n

    def expected_hop(self, service: str | None, payload: Any) -> int | None:
        n = _digit_count(payload) if service in self.partners else None
        if n is None:
            return None
        return 2 * n + 1 if service == "a" else 2 * n

    def answer_links(
        self, parent_body: Any, child_status: int | None, child_body: Any, child_request: Any = None
    ) -> bool | None:
        """services/app.py: a 2xx/5xx answer is passed up byte for byte; a 4xx becomes a 200
        ``{"outcome": "rejected", "status": 4xx, "payload": <the 4xx body's payload, else what
        was sent>}``. A parent that gave up (``partner_timeout``) names what it sent instead."""
        if parent_body is None:
            return None
        if isinstance(parent_body, dict) and parent_body.get("outcome") in GAVE_UP:
            # Its own time-out names what it sent; else it passed up a deeper one unchanged.
            if child_status is not None and child_body is not None and same(parent_body, child_body):
                return True
            if child_request is None or "payload" not in parent_body:
                return None
            return same(parent_body["payload"], child_request)
        if child_status is None:  # the child has not answered: only a timeout answers first
            return False
        if 400 <= child_status < 500:
            if not isinstance(parent_body, dict) or parent_body.get("outcome") != "rejected":
                # refuted only by an answer of our own format; a foreign one cannot tell
                return False if _ours(parent_body) else None
            if parent_body.get("status") != child_status:
                return False
            if isinstance(child_body, dict) and "payload" in child_body:
                want = child_body["payload"]
            elif child_request is not None:
                want = child_request
            else:
                return None
            return same(parent_body.get("payload"), want)
        if child_body is None:  # e.g. the gateway's own 502: its body is not recorded
            return False if _own_answer(parent_body) else None
        return same(parent_body, child_body)


def _ours(body: Any) -> bool:
    """An answer in our services' format (an outcome, or a service's own reject)."""
    return isinstance(body, dict) and ("outcome" in body or _own_answer(body))


def _own_answer(body: Any) -> bool:
    """An answer a service makes itself (its reject, a rejected/max_hops outcome), never a
    partner's error passed up."""
    if not isinstance(body, dict):
        return False
    if body.get("outcome") in ("rejected", "max_hops"):
        return True
    return "outcome" not in body and {"service", "reason", "payload"} <= body.keys()


# The lineages a user can choose by name (gateway option ``hoptrace_lineage``, ``report --lineage``).
LINEAGES: dict[str, type[Lineage]] = {"pingpong": PingPongLineage, "any": AnyLineage}
