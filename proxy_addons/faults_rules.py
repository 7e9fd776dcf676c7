"""Fault rules: the text a QA person types (``status=400 service=b hop=4``) → a checked ``Rule``.

A rule is space-separated ``key=value`` fields, optionally ended by a mitmproxy flow filter (the
rest of the rule from the first token starting with ``~``, ``!`` or ``(``). Several rules are
separate option values or separated by ``;``. The syntax is documented in docs/faults.md; every
error names the rule and the field that is wrong.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import flowfilter

ACTIONS = ("status", "body", "delay", "drop")
SELECTORS = ("service", "hop", "iteration", "every", "p")
MAX_DELAY_S = 3600.0
_FIELD = re.compile(r"""([a-z_]+)=("[^"]*"|'[^']*'|[^\s"']*)(?=\s|$)|([a-z_]+)(?=\s|$)""")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True, slots=True)
class Span:
    """An inclusive range of positive ints: ``3``, ``2-4``, ``5-`` (5 or more)."""

    lo: int
    hi: int | None

    def __contains__(self, n: object) -> bool:
        return isinstance(n, int) and n >= self.lo and (self.hi is None or n <= self.hi)

    def __str__(self) -> str:
        if self.hi == self.lo:
            return str(self.lo)
        return f"{self.lo}-" if self.hi is None else f"{self.lo}-{self.hi}"


@dataclass(slots=True)
class Rule:
    """One checked rule. ``matches`` reads the run placement the live diagnosis gave the flow."""

    text: str
    status: int | None = None
    body: str | None = None
    delay: float = 0.0
    drop: bool = False
    service: str | None = None
    hop: Span | None = None
    iteration: Span | None = None
    every: int | None = None
    p: float | None = None
    filter: str | None = None
    flt: Any = field(default=None, repr=False, compare=False)

    @property
    def action(self) -> str:
        return "drop" if self.drop else "status" if self.status is not None else "delay"

    def record(self, index: int) -> dict:
        """The ``injected`` field of a flows.jsonl record."""
        out: dict[str, Any] = {"rule": self.text, "index": index, "action": self.action}
        if self.status is not None:
            out["status"] = self.status
        if self.delay:
            out["delay_s"] = self.delay
        return out

    def selects(self, service: str | None, run: dict | None, ordinal: int | None, flow) -> bool:
        """Every selector but the probability (drawn last, so draws depend only on matches)."""
        if self.service is not None and service != self.service:
            return False
        if self.hop is not None and (run is None or run.get("hop") not in self.hop):
            return False
        if self.iteration is not None and (run is None or run.get("iteration") not in self.iteration):
            return False
        if self.every is not None and (ordinal is None or ordinal % self.every):
            return False
        return self.flt is None or bool(self.flt(flow))


def rule_rng(seed: int | None, text: str) -> random.Random:
    """Each rule draws from its own generator: with a seed, its draws depend only on (seed, rule
    text), whatever other rules exist; without one, fresh randomness."""
    return random.Random(f"{seed}|{text}") if seed is not None else random.Random()


def split_rules(values: list[str] | tuple[str, ...] | str) -> list[str]:
    """Option values → one string per rule: ``;`` outside quotes separates rules, blanks vanish."""
    out: list[str] = []
    for value in [values] if isinstance(values, str) else values:
        cur, quote = [], ""
        for ch in value:
            if quote:
                quote = "" if ch == quote else quote
            elif ch in "\"'":
                quote = ch
            elif ch == ";":
                out.append("".join(cur))
                cur = []
                continue
            cur.append(ch)
        out.append("".join(cur))
    return [r.strip() for r in out if r.strip()]


def _unquote(v: str) -> str:
    return v[1:-1] if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'" else v


def _span(key: str, v: str) -> Span:
    m = re.fullmatch(r"(\d+)(?:(-)(\d*))?", v)
    if not m:
        raise ValueError(f"{key}={v!r}: expected N, N-M or N- (e.g. {key}=3, {key}=2-4, {key}=5-)")
    lo = int(m.group(1))
    hi = lo if not m.group(2) else (int(m.group(3)) if m.group(3) else None)
    if lo < 1 or (hi is not None and hi < lo):
        raise ValueError(f"{key}={v!r}: numbers start at 1 and N-M needs M >= N")
    return Span(lo, hi)


def _seconds(v: str) -> float:
    scale = 0.001 if v.endswith("ms") else 1.0
    try:
        s = float(v.removesuffix("ms").removesuffix("s")) * scale
    except ValueError:
        raise ValueError(f"delay={v!r}: expected seconds (0.5, 2s) or milliseconds (500ms)") from None
    if not 0 < s <= MAX_DELAY_S:
        raise ValueError(f"delay={v!r}: must be > 0 and at most {MAX_DELAY_S:g} s")
    return s


def _number(key: str, v: str, kind: type, lo: float, hi: float):
    try:
        n = kind(v)
    except ValueError:
        raise ValueError(f"{key}={v!r}: not a{'n integer' if kind is int else ' number'}") from None
    if not lo <= n <= hi:
        raise ValueError(f"{key}={v!r}: must be between {lo:g} and {hi:g}")
    return n


def _set(rule: Rule, key: str, v: str) -> None:
    if key == "status":
        rule.status = _number(key, v, int, 100, 599)
    elif key == "body":
        rule.body = v
    elif key == "delay":
        rule.delay = _seconds(v)
    elif key == "drop":
        if v not in ("", "true", "1"):
            raise ValueError(f"drop={v!r}: drop takes no value")
        rule.drop = True
    elif key == "service":
        if not _NAME.match(v):
            raise ValueError(f"service={v!r}: expected a route name such as a or b")
        rule.service = v
    elif key in ("hop", "iteration"):
        setattr(rule, key, _span(key, v))
    elif key == "every":
        rule.every = _number(key, v, int, 1, 1_000_000)
    elif key == "p":
        rule.p = _number(key, v, float, 0.0, 1.0)
        if rule.p == 0:
            raise ValueError("p=0 never fires; remove the rule instead")
    else:
        raise ValueError(f"unknown field {key!r}; known: {', '.join(ACTIONS + SELECTORS)}, "
                         "and a flow filter (~u, ~m, …) at the end")


def parse_rule(text: str) -> Rule:
    """One rule's text → Rule; ValueError naming the bad part."""
    rule, seen, pos, text = Rule(text=text.strip()), set(), 0, text.strip()
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        if text[pos] in "~!(":
            rule.filter = text[pos:].strip()
            try:
                rule.flt = flowfilter.parse(rule.filter)
            except ValueError:
                raise ValueError(f"bad flow filter {rule.filter!r} (see mitmproxy's ~u, ~m, ~h … filters)") from None
            break
        m = _FIELD.match(text, pos)
        if not m:
            raise ValueError(f"cannot read {text[pos:].split()[0]!r}: expected key=value, 'drop' or a ~filter")
        key = m.group(1) or m.group(3)
        if key in seen:
            raise ValueError(f"{key} is given twice")
        seen.add(key)
        _set(rule, key, _unquote(m.group(2) or ""))
        pos = m.end()
    if rule.status is None and not rule.drop and not rule.delay:
        raise ValueError("no action: give status=CODE, delay=SECONDS or drop")
    if rule.drop and rule.status is not None:
        raise ValueError("drop and status exclude each other")
    if rule.body is not None and rule.status is None:
        raise ValueError("body needs a status")
    return rule


def parse_rules(values: list[str] | tuple[str, ...] | str) -> list[Rule]:
    """All rules of the option; ValueError ``rule N 'text': problem``."""
    rules = []
    for n, text in enumerate(split_rules(values), 1):
        try:
            rules.append(parse_rule(text))
        except ValueError as exc:
            raise ValueError(f"rule {n} {text!r}: {exc}") from None
    return rules
