"""Synthetic flows.jsonl records of our A/B services behind the gateway, with ground truth.

The services' own code decides every step (schema, A/B processing, reject bodies, the rejected
outcome, seeded randomness), so the bodies are what the real stack would record; only the clock
and the network are simulated. Each hop nests in its parent: the child starts after the parent
started and ends before it ends (except after a partner timeout, as in life).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from types import SimpleNamespace

from proxy_addons.bodies import encode_body
from services.a import process_a
from services.app import rejected_outcome, rng_for
from services.b import process_b
from services.payload import Payload, hop_of, iteration_of

PROCESS = {"a": process_a, "b": process_b}
PARTNER = {"a": "b", "b": "a"}
GATEWAY_502 = "502 Bad Gateway: connection refused"
JSON = "application/json"


@dataclass(slots=True)
class TruthHop:
    flow_id: str
    hop: int
    sender: str
    to: str
    parent: str | None
    status: int | None
    request: dict
    response: object


@dataclass(slots=True)
class TruthRun:
    kick: str
    hops: list[TruthHop] = field(default_factory=list)
    partial: bool = False
    in_flight: bool = False

    @property
    def break_hop(self) -> TruthHop | None:
        return next((h for h in self.hops if h.status is not None and 400 <= h.status < 500), None)


class Synth:
    """``kick(t, payload)`` simulates one whole run starting at ``t``; ``records`` and ``runs``
    (ground truth, keyed by kick flow id) grow as runs are added."""

    def __init__(
        self,
        seed: int = 0,
        fail_rate: float = 4 / 11,
        max_hops: int = 100,
        service_seed: int | None = None,
        down: frozenset[str] = frozenset(),
        timeout: float | None = None,
        slow_rate: float = 0.0,
        propagate_headers: bool = False,
        inject_rate: float = 0.0,
    ) -> None:
        self.rng = random.Random(seed)
        self.fail_rate, self.max_hops = fail_rate, max_hops
        self.service_seed, self.down = service_seed, down
        self.timeout, self.slow_rate = timeout, slow_rate
        self.propagate = propagate_headers
        self.inject_rate = inject_rate  # the gateway answers this share of hops 400 (faults addon)
        self.records: list[dict] = []
        self.runs: dict[str, TruthRun] = {}

    def _fid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def _lag(self, lo: float = 0.0002, hi: float = 0.003) -> float:
        return self.rng.uniform(lo, hi)

    def kick(self, t: float, payload: dict | None = None, headers: list | None = None) -> str:
        """One run from a client kick at ``t``; returns the kick's flow id."""
        fid = self._fid()
        run = TruthRun(kick=fid)
        self.runs[fid] = run
        self._hop(fid, run, "a", payload if payload is not None else {"digits": []}, t, None, 1,
                  "client", headers or [])
        run.hops.sort(key=lambda h: h.hop)
        return fid

    def _hop(self, fid, run, svc, sent, t0, parent, hop, sender, headers):
        """Simulate one exchange; returns (status, body value, ended) as its sender sees it."""
        truth = TruthHop(fid, hop, sender, svc, parent, None, sent, None)
        run.hops.append(truth)
        if svc in self.down:
            t1 = t0 + self._lag()
            self._record(fid, svc, sent, headers, t0, t1, 502, None, origin="gateway")
            truth.status = 502
            return 502, GATEWAY_502, t1
        if self.inject_rate and self.rng.random() < self.inject_rate:
            t1 = t0 + self._lag()
            body = {"detail": "hoptrace gateway: injected fault", "injected": True, "reason": "injected fault",
                    "service": svc, "hop": hop, "iteration": (hop + 1) // 2}
            fault = {"rule": f"status=400 p={self.inject_rate}", "index": 0, "action": "status", "status": 400}
            self._record(fid, svc, sent, headers, t0, t1, 400, body, origin="gateway", injected=fault)
            truth.status, truth.response = 400, body
            return 400, body, t1
        payload = Payload.model_validate(sent)
        received = payload.dump()
        rng = (rng_for(SimpleNamespace(seed=self.service_seed, service_name=svc), payload)
               if self.service_seed is not None else random.Random(self.rng.getrandbits(64)))
        t_proc = t0 + self._lag()
        if self.rng.random() < self.slow_rate and self.timeout:
            t_proc += 2 * self.timeout
        h, it = hop_of(svc, payload), iteration_of(svc, payload)
        if rng.random() < self.fail_rate:
            status, body = 400, {
                "detail": f"{svc} rejected the payload (negative validation)", "service": svc,
                "reason": "negative validation", "hop": h, "iteration": it, "payload": received,
            }
            t1 = t_proc + self._lag()
        else:
            out = PROCESS[svc](payload, rng).dump()
            if h >= self.max_hops:
                status, body = 200, {"outcome": "max_hops", "stopped_by": svc, "status": 200, "hops": h,
                                     "iteration": it, "reason": f"MAX_HOPS={self.max_hops} reached",
                                     "payload": out}
                t1 = t_proc + self._lag()
            else:
                status, body, t1 = self._forward(run, svc, out, t_proc, fid, hop, headers)
        truth.status, truth.response = status, body
        self._record(fid, svc, sent, headers, t0, t1, status, body)
        return status, body, t1

    def _forward(self, run, svc, out, t_send, parent, hop, headers):
        child_headers = [list(x) for x in headers] if self.propagate else []
        if self.propagate and headers:
            child_headers = [[k, _respan(v, self.rng) if k.lower() == "traceparent" else v] for k, v in headers]
        cs, cb, c_end = self._hop(self._fid(), run, PARTNER[svc], out, t_send + self._lag(0.0001, 0.001),
                                  parent, hop + 1, svc, child_headers)
        if self.timeout is not None and c_end - t_send > self.timeout:
            return 504, {"outcome": "partner_timeout", "service": svc,
                         "detail": f"{svc}: partner did not answer", "payload": out}, t_send + self.timeout
        t1 = c_end + self._lag(0.0001, 0.001)
        if 200 <= cs < 300 or cs >= 500:
            return cs, cb, t1
        return 200, rejected_outcome(PARTNER[svc], cs, cb, out, hop), t1

    def _record(self, fid, svc, sent, headers, t0, t1, status, body, origin="upstream", injected=None):
        raw = json.dumps(sent).encode()
        rec = {
            "type": "flow", "v": 1, "flow_id": fid, "started": t0, "ended": t1,
            "duration_ms": (t1 - t0) * 1000, "client": f"127.0.0.1:{self.rng.randint(30000, 60000)}",
            "method": "POST", "path": f"/{svc}/", "service": svc, "upstream": f"http://127.0.0.1:800{ord(svc) - 96}",
            "request": {"headers": [["Content-Type", JSON], *headers], "body": encode_body(raw, JSON)},
            "status": status, "origin": origin, "response": None, "error": None,
        }
        if injected is not None:
            rec["injected"] = injected
        if origin == "gateway" and injected is None:
            rec["error"] = {"message": "Connection refused", "status": 502, "undelivered": True}
        else:
            text = body if isinstance(body, str) else json.dumps(body)
            rec["response"] = {"status": status, "reason": "", "headers": [["content-type", JSON]],
                               "body": encode_body(text.encode(), JSON)}
        self.records.append(rec)

    def dump(self) -> list[dict]:
        """The records as the gateway writes them: in end order."""
        return sorted(self.records, key=lambda r: r["ended"])


def _respan(traceparent: str, rng: random.Random) -> str:
    v, trace, _, flags = traceparent.split("-")
    return f"{v}-{trace}-{rng.getrandbits(64):016x}-{flags}"


def traceparent(rng: random.Random) -> list[list[str]]:
    return [["traceparent", f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-01"]]


def cut_at(synth: Synth, t: float) -> tuple[list[dict], dict[str, TruthRun]]:
    """The dump as if read at ``t``: later requests absent, unfinished ones in flight."""
    recs, keep = [], set()
    for r in synth.records:
        if r["started"] >= t:
            continue
        keep.add(r["flow_id"])
        if r["ended"] > t:
            r = {**r, "ended": None, "status": None, "response": None, "error": None, "duration_ms": None}
        recs.append(r)
    truth = {}
    for k, run in synth.runs.items():
        hops = [h for h in run.hops if h.flow_id in keep]
        if hops:
            inflight = any(r["flow_id"] == k and r["ended"] is None for r in recs)
            truth[k] = TruthRun(k, hops, in_flight=inflight)
    return recs, truth


def drop_first(synth: Synth, kick: str, n: int) -> TruthRun | None:
    """Remove a run's first ``n`` hops from the records (a dump that starts mid-run); returns the
    truth for what is left: hop n+1 becomes hop 1 of a partial run."""
    run = synth.runs.pop(kick)
    gone = {h.flow_id for h in run.hops[:n]}
    synth.records = [r for r in synth.records if r["flow_id"] not in gone]
    rest = run.hops[n:]
    if not rest:
        return None
    renum = [TruthHop(h.flow_id, h.hop - n, "client" if i == 0 else h.sender, h.to,
                      None if i == 0 else h.parent, h.status, h.request, h.response)
             for i, h in enumerate(rest)]
    new = TruthRun(rest[0].flow_id, renum, partial=True)
    synth.runs[new.kick] = new
    return new
