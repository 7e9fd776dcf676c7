"""Ground truth for the accuracy tests, from the services' side only. Our services keep a history
(GET /history: one row per request with its W3C trace id, hop, payload received and status):
grouped by trace, that is each run as the services lived it. The single-process app keeps no
trace: each kick's answer (what the client got back) is rebuilt into the hop-by-hop chain the
app's rules imply, then checked against the app's own log. Either way the truth is cross-checked
with the kick answers and the services' counters. Compared with the report as one
*signature* per run (services in hop order, each hop's payload and status, outcome, break hop,
service and state at break), so twins (identical kicks) match as a multiset.

The chain of a run kicked with K whose last payload has digits D (A appends a digit, B sets
avg/max/min of the digits so far):
  hop 1      K as sent
  hop 2i     (A → B)  K with digits D[:i], stats of D[:i-1] (null for i = 1)
  hop 2i+1   (B → A)  K with digits D[:i], stats of D[:i]
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

from proxy_addons.lineage import DEFAULTS, canonical, stats_of

NULL_STATS = {"avg": None, "max": None, "min": None}


def norm(payload) -> str:
    """A payload as the schema sees it (defaults filled, key order and 5 vs 5.0 ignored)."""
    return canonical({**DEFAULTS, **payload} if isinstance(payload, dict) else payload)


@dataclass(frozen=True, slots=True)
class End:
    """How a run ended, read from its kick's answer."""

    outcome: str  # broken | completed
    service: str  # who rejected (broken) or stopped at the cap (completed)
    hop: int  # the break hop, or the last hop
    payload: dict  # broken: the state at break (what `service` received); completed: its output

    @property
    def digits(self) -> list[int]:
        return list(self.payload.get("digits") or [])


def chain(kick: dict, end: End) -> list[tuple[str, str, int]]:
    """(service, normalised request payload, status) per hop, hop 1 first."""
    d = end.digits
    base = {k: v for k, v in end.payload.items() if k not in ("digits", "avg", "max", "min")}
    out = [("a", norm(kick), 200)]
    for hop in range(2, end.hop + 1):
        i = hop // 2
        stats = (stats_of(d[: i - 1]) if i > 1 else NULL_STATS) if hop % 2 == 0 else stats_of(d[:i])
        out.append(("b" if hop % 2 == 0 else "a", norm({**base, "digits": d[:i], **stats}), 200))
    if end.outcome == "broken":
        out[-1] = (out[-1][0], out[-1][1], 400)
    return out


def expected_hop(service: str, digits: list) -> int:
    return 2 * len(digits) + 1 if service == "a" else 2 * len(digits)


def end_of_ours(status: int, body: dict) -> End:
    """services/app.py answers: a 400 from A on the kick itself, else a 200 outcome."""
    if status == 400:
        return End("broken", body["service"], body["hop"], body["payload"])
    assert status == 200, (status, body)
    outcome = {"rejected": "broken", "max_hops": "completed"}[body["outcome"]]
    return End(outcome, body["stopped_by"], body["hops"], body["payload"])


def end_of_single(status: int, body: dict) -> End:
    """tests/apps/single.py answers: {error, payload} 400, {stopped: {...}, status} or {done}."""
    if status == 400 or "stopped" in body:
        inner = body if status == 400 else body["stopped"]
        svc = inner["error"].split()[0]
        return End("broken", svc, expected_hop(svc, inner["payload"].get("digits", [])), inner["payload"])
    assert status == 200 and "done" in body, (status, body)
    return End("completed", "b", expected_hop("b", body["done"]["digits"]), body["done"])


def history_signatures(rows: list[dict]) -> tuple[list[tuple], list[End]]:
    """The services' own history (GET /history of A and B): rows grouped by W3C trace id, one
    trace per run. Returns each run's signature and its end, for the cross-check with the kick
    answers."""
    by_trace: dict[str, list[dict]] = {}
    for r in rows:
        assert r["trace_id"], r
        by_trace.setdefault(r["trace_id"], []).append(r)
    sigs, ends = [], []
    for trace, hops in by_trace.items():
        hops.sort(key=lambda r: r["hop"])
        assert [r["hop"] for r in hops] == list(range(1, len(hops) + 1)), trace
        last = hops[-1]
        rejected = next((r for r in hops if r["result"] == "rejected"), None)
        if rejected is not None:
            end = End("broken", rejected["service"], rejected["hop"], rejected["payload_in"])
        else:
            assert last["result"] == "max_hops", last
            end = End("completed", last["service"], last["hop"], last["payload_out"])
        state = norm(end.payload) if end.outcome == "broken" else None
        brk = (end.hop, end.service, state) if end.outcome == "broken" else None
        chain_ = tuple((r["service"], norm(r["payload_in"]), r["status"]) for r in hops)
        sigs.append((end.outcome, brk, chain_))
        ends.append(end)
    return sigs, ends


def end_key(e: End) -> tuple:
    return (e.outcome, e.service, e.hop, norm(e.payload))


def truth_signature(kick: dict, end: End) -> tuple:
    state = norm(end.payload) if end.outcome == "broken" else None
    brk = (end.hop, end.service, state) if end.outcome == "broken" else None
    return (end.outcome, brk, tuple(chain(kick, end)))


def report_signature(run: dict) -> tuple:
    """The same signature from one run of `hoptrace report --format json`."""
    hops = tuple((h["to"], norm(h["request"]), h["status"]) for h in run["hops"])
    b = run["break"]
    brk = (b["hop"], b["service"], norm(b["state"])) if b else None
    return (run["outcome"], brk, hops)


def accuracy(truth: list[tuple], runs: list[dict]) -> tuple[int, list]:
    """(runs the report got exactly right, the signatures it missed)."""
    t, r = Counter(truth), Counter(report_signature(x) for x in runs)
    right = sum((t & r).values())
    return right, list((t - r).elements())


def well_formed(run: dict) -> list[str]:
    """Problems with a run's shape: hops numbered 1..n, the kick from the client, then each hop
    sent by the service the previous hop went to."""
    hops = run["hops"]
    problems = []
    if [h["hop"] for h in hops] != list(range(1, len(hops) + 1)):
        problems.append("hop numbers")
    if hops and hops[0]["from"] != "client":
        problems.append("kick not from the client")
    for prev, h in zip(hops, hops[1:]):
        if h["from"] != prev["to"] or h["parent"] != prev["flow_id"]:
            problems.append(f"hop {h['hop']} not sent by hop {prev['hop']}'s service")
    return problems


def served_by_chain(truths: list[tuple]) -> Counter:
    """How many requests each service received, if the chains are right."""
    return Counter(svc for _, _, hops in truths for svc, _, _ in hops)


def log_multiset(entries: list[dict]) -> Counter:
    """tests/apps/single.py's own log: (service, payload received, status answered)."""
    return Counter((e["service"], norm(e["payload"]), e["status"]) for e in entries)


def dumps(sig: tuple) -> str:
    return json.dumps(sig)[:400]
