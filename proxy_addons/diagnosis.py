"""PURE: a reconstructed run → how it ended, where it broke, and what each service changed.

Outcomes (first that applies):
  in_flight  the dump ended before the kick was answered.
  error      a proxy-level failure somewhere in the run: a 5xx (502 upstream down or unreachable,
             504 partner timeout) or a connection error. The break names the hop that failed.
  broken     a service itself answered 4xx (``origin == "upstream"``, 400 ≤ status < 500). If the
             4xx hop is missing from the dump but the kick's answer is our ``rejected`` outcome,
             the break is read from that answer (``from_answer: true``).
  completed  the kick was answered 2xx (our services: the ``max_hops`` outcome).

Fault injection (docs/faults.md): a 4xx the gateway injected is a break like a service's, and a
break on a hop the gateway touched (status, drop or delay) says ``injected: true`` and gives the
rule in ``fault``, so nobody mistakes it for a real one. A replayed run names the original in
``replay_of``.

The break's states:
  state            the payload the failing/rejecting service received (its hop's request) — the
                   output of the last service that succeeded.
  last_good_state  the last payload a service *accepted* (passed its checks and processed): the
                   request of the break hop's parent; null when the kick itself was refused.
                   ``change`` = diff(last_good_state, state) shows what that service did to it.

An answer's body is looked into only for its ``outcome`` key, and read further only when it has
one; one without is passed on whole (a break's ``detail``): the fast report leaves such bodies
as JSON bytes (records_typed.read_responses).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from proxy_addons.lineage import GAVE_UP, Lineage, PingPongLineage, diff
from proxy_addons.run_json import run_bytes, run_json
from proxy_addons.runs_model import Assignment, Hop, Run

OUTCOMES = ("broken", "completed", "error", "in_flight")


@dataclass(slots=True)
class Diagnosis:
    run: Run
    outcome: str
    brk: dict | None
    changes: list[dict | None]  # per hop: what its service changed (None: unknown)

    def to_json(self) -> dict:
        """The runs.jsonl contract (docs/report-format.md; proxy_addons/run_json.py)."""
        return run_json(self)

    def to_bytes(self) -> bytes:
        """``to_json`` encoded, compact UTF-8, without building its dicts: what the reports
        and the gateway's runs.jsonl write."""
        return run_bytes(self)


def rejected(h: Hop) -> bool:
    """A service refused this hop: a 4xx it answered itself, or one the gateway injected."""
    ex = h.exchange
    upstream = ex.origin == "upstream" or (ex.origin is None and ex.error is None)
    upstream = upstream or ex.injected is not None  # an injected 4xx stands for a rejection
    return upstream and ex.status is not None and 400 <= ex.status < 500


def _brk(run: Run, h: Hop, status: int | None, detail: Any, lin: Lineage, changes: dict | None = None,
         **extra) -> dict:
    """``changes``: flow id → (its child's flow id, change) from ``hop_changes``, so the
    parent's change need not be computed twice."""
    parent = None
    if h.parent is not None:
        for p in run.hops:
            if p.flow_id == h.parent:
                parent = p
                break
    state = h.exchange.request
    good = parent.exchange.request if parent else None
    change = None
    if parent is not None:
        known = changes.get(parent.flow_id) if changes else None
        change = known[1] if known is not None and known[0] == h.flow_id else lin.diff(good, state)
    return {
        "hop": h.hop, "iteration": h.iteration, "service": h.to, "status": status, "state": state,
        "last_good_state": good, "detail": detail, "flow_id": h.flow_id,
        "produced_by": parent.to if parent else "client", "change": change,
        "injected": h.exchange.injected is not None, "fault": h.exchange.injected, **extra,
    }


def _error_break(run: Run, h: Hop, lin: Lineage, changes: dict | None = None) -> dict:
    """The hop where the failure began: ``h``, the deepest failed hop; when it gave up on its
    partner (timeout / unreachable) and the partner's hop is recorded, that hop is the one that
    failed."""
    ex = h.exchange
    detail = ex.error if ex.error is not None else ex.response
    body = ex.response if isinstance(ex.response, dict) else {}
    status = ex.status if ex.status is not None else (ex.error or {}).get("status")
    if body.get("outcome") in GAVE_UP:
        child = next((c for c in reversed(run.hops) if c.parent == h.flow_id), None)
        if child is not None:
            return _brk(run, child, status, detail, lin, changes, reason=body["outcome"], reported_by=h.to)
        return _brk(run, h, status, detail, lin, changes, reason=body["outcome"])
    return _brk(run, h, status, detail, lin, changes,
                reason="gateway" if ex.origin == "gateway" else "upstream")


def _answer_break(run: Run) -> dict | None:
    """The kick's answer says a service rejected, but that hop is not in the dump."""
    body = run.kick.exchange.response
    if not (isinstance(body, dict) and body.get("outcome") == "rejected"):
        return None
    return {
        "hop": body.get("hops"), "iteration": body.get("iteration"), "service": body.get("stopped_by"),
        "status": body.get("status"), "state": body.get("payload"), "last_good_state": None,
        "detail": body, "flow_id": None, "from_answer": True,
    }


def hop_changes(run: Run, lin: Lineage) -> list[dict | None]:
    """What each hop's service did: its child's request against its own request; for the last
    hop, the payload of a ``max_hops`` answer. None when the service forwarded nothing."""
    return _changes(run, lin)[0]


def _changes(run: Run, lin: Lineage) -> tuple[list[dict | None], dict[str, tuple[str, dict]]]:
    """``hop_changes``, and flow id → (the child it was diffed against, change). (The hot loop
    of every report: one pass, the lineage's diff looked up once.)"""
    hops = run.hops
    differ = _differ(lin)
    by_parent: dict[str, tuple[str, dict]] = {}
    if len(hops) == 1:  # a kick refused at once: a third of all runs
        return [_leaf_change(hops[0], differ)], by_parent
    child_of = {h.parent: h for h in hops if h.parent}
    out: list[dict | None] = []
    for h in hops:
        c = child_of.get(h.flow_id)
        if c is not None:
            change = differ(h.exchange.request, c.exchange.request)
            by_parent[h.flow_id] = (c.flow_id, change)
            out.append(change)
        else:
            out.append(_leaf_change(h, differ))
    return out, by_parent


def _leaf_change(h: Hop, differ) -> dict | None:
    """A hop that forwarded nothing: the payload of its ``max_hops`` answer, if it gave one."""
    resp = h.exchange.response
    if isinstance(resp, dict) and resp.get("outcome") == "max_hops":
        return differ(h.exchange.request, resp.get("payload"))
    return None


def _differ(lin: Lineage):
    """``lin.diff``; the plain function itself when the lineage does not override it."""
    return diff if type(lin).diff is Lineage.diff else lin.diff


def _scan(hops: list[Hop]) -> tuple[Hop | None, Hop | None]:
    """(the first rejected hop, the deepest failed one — the first of equals), in one pass."""
    reject = failed = None
    for h in hops:
        ex = h.exchange
        status = ex.status
        if ex.error is None and (status is None or status < 400):
            continue  # neither: nearly every hop
        if ex.error is not None or status >= 500:
            if failed is None or h.hop > failed.hop:
                failed = h
        elif reject is None and rejected(h):
            reject = h
    return reject, failed


def diagnose(run: Run, lineage: Lineage | None = None) -> Diagnosis:
    """Outcome, break and per-hop changes of one run (see the module doc for the rules)."""
    lin = lineage or PingPongLineage()
    changes, by_parent = _changes(run, lin)
    reject, failed = _scan(run.hops)
    error_brk = _error_break(run, failed, lin, by_parent) if failed is not None else None
    kick = run.kick.exchange
    if error_brk is not None:
        outcome, brk = ("in_flight" if run.in_flight else "error"), error_brk
    elif reject is not None:
        brk = _brk(run, reject, reject.exchange.status, reject.exchange.response, lin, by_parent,
                   reason="rejected")
        outcome = "in_flight" if run.in_flight else "broken"
    elif run.in_flight:
        outcome, brk = "in_flight", None
    elif kick.status is not None and 200 <= kick.status < 300:
        brk = _answer_break(run)
        outcome = "broken" if brk else "completed"
    else:  # e.g. the gateway's own 404: no service answered
        outcome = "error"
        brk = _brk(run, run.kick, kick.status, kick.error or kick.response, lin, reason=kick.origin)
    return Diagnosis(run, outcome, brk, changes)


class Summary:
    """Counts by outcome; per service: hops received, breaks (4xx it answered itself), break
    rate = breaks / hops received, errors; and the distribution of run lengths. Fed one
    diagnosis at a time, so a report can stream runs without holding them. (Plain dicts, not
    ``Counter``s: an increment costs half as much, and a report adds a million hops.)"""

    def __init__(self) -> None:
        self.received: dict[str | None, int] = {}
        self.breaks: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.injected: dict[str, int] = {}
        self.outcomes: dict[str, int] = {}
        self.lengths: dict[int, int] = {}

    def add(self, d: Diagnosis) -> None:
        b, outcome = d.brk, d.outcome
        if b is not None:
            service = b["service"] or "?"
            if b.get("injected"):
                self.injected[service] = self.injected.get(service, 0) + 1
            if outcome == "broken":
                self.breaks[service] = self.breaks.get(service, 0) + 1
            elif outcome == "error":
                self.errors[service] = self.errors.get(service, 0) + 1
        hops = d.run.hops
        received = self.received  # None (no service) is counted as "?" by ``to_json``
        get = received.get
        for h in hops:
            to = h.to
            received[to] = get(to, 0) + 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        n = len(hops)
        self.lengths[n] = self.lengths.get(n, 0) + 1

    def merge(self, other: Summary) -> None:
        """Add the counts of another part of the same report (report_parallel: one per core)."""
        for mine, theirs in zip(self._counters(), other._counters(), strict=True):
            for key, n in theirs.items():
                mine[key] = mine.get(key, 0) + n

    def _counters(self) -> tuple[dict, ...]:
        return self.received, self.breaks, self.errors, self.injected, self.outcomes, self.lengths

    def to_json(self) -> dict:
        b, e, i = self.breaks, self.errors, self.injected
        received: Counter[str] = Counter()
        for s, n in self.received.items():
            received[s or "?"] += n
        return {
            "runs": sum(self.outcomes.values()),
            "outcomes": {o: self.outcomes.get(o, 0) for o in OUTCOMES},
            "hops": sum(self.received.values()),
            "services": {
                s: {"received": n, "breaks": b.get(s, 0), "break_rate": b.get(s, 0) / n, "errors": e.get(s, 0),
                    "injected": i.get(s, 0)}
                for s, n in sorted(received.items())
            },
            "run_length": dict(sorted(self.lengths.items())),
        }


def summarize(items: list[Run] | list[Diagnosis], lineage: Lineage | None = None) -> dict:
    """The ``Summary`` of a list of runs or diagnoses."""
    summary = Summary()
    for d in items:
        summary.add(d if isinstance(d, Diagnosis) else diagnose(d, lineage))
    return summary.to_json()


def _name(service: str | None) -> str:
    return "client" if service == "client" else (service or "?").upper()


def flow_comment(run_id: str, hop: int, sender: str, to: str | None, iteration: int | None) -> str:
    """``run R · hop H · A→B · iteration I`` (``client→A`` for the kick)."""
    parts = [f"run {run_id}", f"hop {hop}", f"{_name(sender)}\u2192{_name(to)}"]
    if iteration is not None:
        parts.append(f"iteration {iteration}")
    return " \u00b7 ".join(parts)


def assignment_comment(a: Assignment) -> str:
    return flow_comment(a.run_id, a.hop, a.sender, a.to, a.iteration)


def hop_comment(run: Run, h: Hop) -> str:
    base = flow_comment(run.run_id, h.hop, h.sender, h.to, h.iteration)
    return base + (" \u00b7 injected" if h.exchange.injected is not None else "")


def log_line(d: Diagnosis) -> str:
    """One line per finished run for the gateway's log."""
    run, b = d.run, d.brk
    ms = run.kick.exchange.duration_ms
    tail = f"{len(run.hops)} hops" + (f" \u00b7 {ms:.1f} ms" if ms is not None else "")
    head = f"run {run.run_id} {d.outcome.replace('_', ' ')}"
    if b is not None and d.outcome in ("broken", "error"):
        it = f" \u00b7 iteration {b['iteration']}" if b.get("iteration") is not None else ""
        what = "rejected" if d.outcome == "broken" else (b.get("reason") or "failed")
        head += f" at hop {b['hop']} \u00b7 {_name(b['service'])} {what} ({b['status']}){it}"
        head += " \u00b7 injected" if b.get("injected") else ""
    elif d.outcome == "completed":
        body = run.kick.exchange.response
        if isinstance(body, dict) and body.get("outcome"):
            head += f" \u00b7 {body['outcome']} by {_name(body.get('stopped_by'))}"
    if run.partial:
        tail += " \u00b7 partial"
    return f"{head} \u00b7 {tail}"
