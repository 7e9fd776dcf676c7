"""Diagnosis of reconstructed runs against the synthetic services' ground truth."""

from __future__ import annotations

import json
import random

import pytest

from proxy_addons.diagnosis import (
    assignment_comment,
    diagnose,
    flow_comment,
    hop_comment,
    log_line,
    summarize,
)
from proxy_addons.runs import Assignment, reconstruct
from tests.unit.synth import Synth, TruthRun

T0 = 1_764_000_000.0


def population(seed: int, n: int = 100, named: bool = False, **kw) -> Synth:
    """``n`` kicks within 10 ms: identical ones, or each with its own ``name`` (no twins)."""
    s = Synth(seed=seed, **kw)
    rng = random.Random(seed)
    for i in range(n):
        s.kick(T0 + rng.uniform(0, 0.01), {"name": f"k{i}", "digits": []} if named else {"digits": []})
    return s


def expected(tr: TruthRun) -> tuple[str, int | None, str | None]:
    """(outcome, break hop, break service) from the generator's own record of the run."""
    failed = [h for h in tr.hops if h.status is not None and h.status >= 500]
    if failed:
        h = max(failed, key=lambda x: x.hop)
        if isinstance(h.response, dict) and h.response.get("outcome") == "partner_timeout":
            h = next(c for c in tr.hops if c.parent == h.flow_id)
        return "error", h.hop, h.to
    b = tr.break_hop
    if b is not None:
        return "broken", b.hop, b.to
    return "completed", None, None


@pytest.mark.parametrize("seed", range(6))
def test_every_run_diagnosed_as_the_truth(seed):
    s = population(seed)
    runs = reconstruct(s.dump())
    by_kick = {r.kick.flow_id: r for r in runs}
    for kick, tr in s.runs.items():
        d = diagnose(by_kick[kick])
        outcome, hop, service = expected(tr)
        assert d.outcome == outcome
        if outcome == "completed":
            assert d.brk is None
            continue
        assert (d.brk["hop"], d.brk["service"]) == (hop, service)
        bh = tr.hops[hop - 1]
        assert d.brk["state"] == bh.request
        assert d.brk["last_good_state"] == (tr.hops[hop - 2].request if hop > 1 else None)
        assert d.brk["status"] == 400 and d.brk["detail"] == bh.response
        assert d.brk["iteration"] == bh.response["iteration"] == (hop + 1) // 2


def test_breaks_in_long_runs_know_their_iteration():
    s = population(1, n=40, fail_rate=0.05, max_hops=80)
    for d in map(diagnose, reconstruct(s.dump())):
        if d.outcome == "broken":
            b = d.brk
            assert b["iteration"] == (b["hop"] + 1) // 2
            assert b["produced_by"] == ("client" if b["hop"] == 1 else ("a" if b["service"] == "b" else "b"))
            if b["hop"] > 1:  # what the last accepting service did to the state
                key = "appended" if b["produced_by"] == "a" else "changed"
                assert key in b["change"]
        else:
            assert d.outcome == "completed"
            assert d.run.kick.exchange.response["outcome"] == "max_hops"
            assert len(d.run.hops) == 80


def test_gateway_502_names_the_down_service():
    s = population(2, n=30, named=True, fail_rate=0.2, down=frozenset({"b"}))  # 502s: twins undecidable
    diags = [diagnose(r) for r in reconstruct(s.dump())]
    errors = [d for d in diags if d.outcome == "error"]
    assert errors and all(d.brk["service"] == "b" and d.brk["status"] == 502 for d in errors)
    assert all(d.brk["reason"] == "gateway" and d.brk["detail"]["undelivered"] for d in errors)
    assert all(d.brk["state"]["digits"] for d in errors)  # the undelivered payload
    assert {d.outcome for d in diags} <= {"error", "broken"}


def test_partner_timeout_blames_the_slow_hop():
    s = population(3, n=40, fail_rate=0.2, timeout=0.05, slow_rate=0.2)
    runs = reconstruct(s.dump())
    by_kick = {r.kick.flow_id: r for r in runs}
    seen = 0
    for kick, tr in s.runs.items():
        d = diagnose(by_kick[kick])
        outcome, hop, service = expected(tr)
        assert (d.outcome, d.brk and d.brk["hop"], d.brk and d.brk["service"]) == (outcome, hop, service)
        if outcome == "error":
            seen += 1
            assert d.brk["status"] == 504 and d.brk["reason"] == "partner_timeout"
    assert seen


def test_in_flight_and_answer_only_breaks():
    s = population(4, n=30, fail_rate=0.3)
    recs = s.dump()
    # cut the 4xx hops out: the kick's answer still says who rejected what
    four = {r["flow_id"] for r in recs if r["status"] == 400}
    runs = reconstruct([r for r in recs if r["flow_id"] not in four])
    broken = [d for d in map(diagnose, runs) if d.outcome == "broken"]
    assert broken and all(d.brk.get("from_answer") or d.run.kick.exchange.status == 400 for d in broken)
    for d in broken:
        if d.brk.get("from_answer"):
            tr = s.runs[d.run.kick.flow_id]
            assert (d.brk["hop"], d.brk["service"], d.brk["state"]) == (
                tr.break_hop.hop, tr.break_hop.to, tr.break_hop.request)
    live = [{**r, "ended": None, "status": None, "response": None} if r["path"] == "/a/" and
            r["request"]["body"]["value"] == {"digits": []} else r for r in recs]
    assert {diagnose(r).outcome for r in reconstruct(live)} == {"in_flight"}


def test_unknown_path_is_an_error():
    rec = {"type": "flow", "flow_id": "abc-1", "started": T0, "ended": T0 + 0.001, "service": None,
           "path": "/nope", "method": "GET", "request": {"headers": [], "body": {"kind": "empty"}},
           "status": 404, "origin": "gateway", "response": {"status": 404, "body": {"kind": "text", "value": "no route"}}}
    (run,) = reconstruct([rec])
    d = diagnose(run)
    assert d.outcome == "error" and d.brk["status"] == 404 and d.brk["hop"] == 1


def test_json_contract_and_changes():
    s = Synth(seed=5, fail_rate=0.0, max_hops=6)
    s.kick(T0, {"name": "payload", "digits": [], "d;5Digits": 5})
    (run,) = reconstruct(s.dump())
    out = diagnose(run).to_json()
    json.dumps(out)
    assert out["outcome"] == "completed" and out["break"] is None and out["run"] == run.run_id
    assert [(h["hop"], h["from"], h["to"]) for h in out["hops"]] == [
        (1, "client", "a"), (2, "a", "b"), (3, "b", "a"), (4, "a", "b"), (5, "b", "a"), (6, "a", "b")]
    need = {"hop", "flow_id", "from", "to", "method", "path", "status", "request", "response",
            "started", "duration_ms", "evidence"}
    assert all(need <= h.keys() for h in out["hops"])
    changes = [h["change"] for h in out["hops"]]
    assert all(set(c) == {"appended"} and len(c["appended"]["digits"]) == 1 for c in changes[::2][1:])
    assert "added" in changes[0]  # the bare kick got the schema's defaults
    assert all(set(c) == {"changed"} and set(c["changed"]) <= {"avg", "max", "min"} for c in changes[1::2])
    assert out["hops"][0]["evidence"] == "kick" and out["hops"][0]["duration_ms"] > 0


def test_summary_counts_and_rates():
    s = population(6, n=200)
    runs = reconstruct(s.dump())
    summ = summarize(runs)
    assert summ["runs"] == 200 and sum(summ["outcomes"].values()) == 200
    assert summ["outcomes"]["broken"] == sum(1 for t in s.runs.values() if t.break_hop)
    hops = [h for t in s.runs.values() for h in t.hops]
    for svc in ("a", "b"):
        got = summ["services"][svc]
        rec = sum(h.to == svc for h in hops)
        brk = sum(t.break_hop is not None and t.break_hop.to == svc for t in s.runs.values())
        assert (got["received"], got["breaks"]) == (rec, brk)
        assert got["break_rate"] == pytest.approx(brk / rec)
        assert 0.2 < got["break_rate"] < 0.55  # FAIL_RATE = 4/11
    assert sum(summ["run_length"].values()) == 200 and summ["hops"] == len(hops)
    assert summarize([diagnose(r) for r in runs]) == summ


def test_comments_and_log_lines():
    assert flow_comment("1a2b3c4d", 1, "client", "a", 1) == "run 1a2b3c4d \u00b7 hop 1 \u00b7 client\u2192A \u00b7 iteration 1"
    assert flow_comment("x", 4, "a", "b", None) == "run x \u00b7 hop 4 \u00b7 A\u2192B"
    a = Assignment("f", "1a2b3c4d", 2, "a", "b", "lineage", 1)
    assert assignment_comment(a) == "run 1a2b3c4d · hop 2 · A→B · iteration 1"
    s = population(7, n=20)
    for r in reconstruct(s.dump()):
        d = diagnose(r)
        assert hop_comment(r, r.hops[-1]).startswith(f"run {r.run_id} · hop {len(r.hops)} · ")
        line = log_line(d)
        assert line.startswith(f"run {r.run_id} {d.outcome}") and "\n" not in line
        if d.outcome == "broken":
            assert f"at hop {d.brk['hop']}" in line and "rejected (400)" in line


def test_injected_400_is_a_break_marked_injected():
    s = population(8, n=60, named=True, fail_rate=0.2, inject_rate=0.15, max_hops=30)
    diags = {d.run.kick.flow_id: d for d in map(diagnose, reconstruct(s.dump()))}
    injected = real = 0
    for kick, tr in s.runs.items():
        d, b = diags[kick], tr.break_hop
        if b is None:
            assert d.outcome == "completed"
            continue
        assert d.outcome == "broken" and (d.brk["hop"], d.brk["service"], d.brk["status"]) == (b.hop, b.to, 400)
        out = d.to_json()
        flagged = [h["hop"] for h in out["hops"] if h["injected"]]
        if isinstance(b.response, dict) and b.response.get("injected"):
            injected += 1
            assert d.brk["injected"] is True and d.brk["fault"]["action"] == "status"
            assert flagged == [b.hop] and out["hops"][b.hop - 1]["fault"] == d.brk["fault"]
            assert f"rejected (400) · iteration {b.response['iteration']} · injected" in log_line(d)
            assert hop_comment(d.run, d.run.hops[b.hop - 1]).endswith(" · injected")
        else:
            real += 1
            assert d.brk["injected"] is False and d.brk["fault"] is None and flagged == []
            assert "injected" not in log_line(d)
    assert injected >= 5 and real >= 5
    summ = summarize(list(diags.values()))
    assert sum(v["injected"] for v in summ["services"].values()) == injected


def test_replayed_kick_names_the_original_run():
    s = Synth(seed=9, fail_rate=0.0, max_hops=4)
    s.kick(T0, {"name": "payload", "digits": []}, headers=[["X-Hoptrace-Replay-Of", "1a2b3c4d/3"]])
    s.kick(T0 + 1, {"name": "other", "digits": []})
    first, second = (diagnose(r).to_json() for r in reconstruct(s.dump()))
    assert first["replay_of"] == {"run": "1a2b3c4d", "hop": 3} and second["replay_of"] is None


RUN_KEYS = ["run", "outcome", "partial", "length", "status", "started", "duration_ms", "replay_of", "hops",
            "break"]  # docs/report-format.md, in its order
HOP_KEYS = ["hop", "flow_id", "from", "to", "method", "path", "status", "request", "response", "started",
            "duration_ms", "evidence", "iteration", "parent", "origin", "error", "change", "injected", "fault"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_encoded_run_is_the_json_of_the_run_document(seed):
    """``to_bytes`` (what reports and runs.jsonl write) says exactly what ``to_json`` holds, keys in
    the documented order, for odd payloads too: a huge int, non-ASCII text, a float, an injected fault."""
    s = Synth(seed=seed, max_hops=8, inject_rate=0.3, fail_rate=0.3)
    s.kick(T0, {"name": "päyload \u2028", "digits": [], "big": 2**70, "f": 0.1})
    for i in range(20):
        s.kick(T0 + 0.5 + i, {"digits": []})
    runs = reconstruct(s.dump())
    assert len(runs) == 21
    for run in runs:
        d = diagnose(run)
        doc = d.to_json()
        assert list(doc) == RUN_KEYS and all(list(h) == HOP_KEYS for h in doc["hops"])
        assert json.loads(d.to_bytes()) == doc
        assert doc["length"] == len(doc["hops"]) == len(run.hops)
    first = diagnose(runs[0]).to_json()
    assert first["hops"][0]["request"]["big"] == 2**70 and first["hops"][0]["request"]["name"] == "päyload \u2028"
    assert any(h["injected"] and h["fault"] for r in runs for h in diagnose(r).to_json()["hops"])


def test_a_string_utf8_cannot_hold_is_escaped_not_lost():
    """A lone surrogate (a text body decoded with surrogateescape) still gives the run's line."""
    s = Synth(seed=4, max_hops=4)
    s.kick(T0, {"digits": []})
    (run,) = reconstruct(s.dump())
    run.hops[0].exchange.request = {"name": "bad \udcff byte", "digits": []}
    line = diagnose(run).to_bytes()
    assert json.loads(line)["hops"][0]["request"]["name"] == "bad \udcff byte"
    assert b"\\udcff" in line and json.loads(line) == diagnose(run).to_json()
