"""Break statistics on synthetic dumps made by the services' own code with a known FAIL_RATE."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from proxy_addons.diagnosis import diagnose
from proxy_addons.runs import reconstruct
from proxy_addons.stats import break_stats, session_fail_rates, wilson
from tests.unit.synth import Synth

T0 = 1_764_000_000.0
FAIL = 4 / 11


def synth(seed: int, n: int = 300, **kw) -> Synth:
    s = Synth(seed=seed, fail_rate=FAIL, **kw)
    rng = random.Random(seed)
    for i in range(n):  # sequential-ish, distinct kicks: no twins to settle
        s.kick(T0 + i * 0.05 + rng.uniform(0, 0.01), {"name": f"k{i}", "digits": []})
    return s


def stats_of(s: Synth, fail_rate=None) -> dict:
    return break_stats([diagnose(r) for r in reconstruct(s.dump())], fail_rate, source="test")


@pytest.mark.parametrize(("k", "n", "lo", "hi"), [
    (0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0), (81, 263, 0.2553, 0.3662),
])
def test_wilson_interval_matches_published_values(k, n, lo, hi):
    got = wilson(k, n)
    assert got == pytest.approx((lo, hi), abs=5e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_known_rate_lands_inside_the_interval_and_counts_match_the_truth():
    s = synth(1)
    st = stats_of(s, {"a": FAIL, "b": FAIL})
    truth = list(s.runs.values())
    for svc in ("a", "b"):
        v = st["services"][svc]
        assert v["trials"] == sum(h.to == svc for t in truth for h in t.hops)
        assert v["breaks"] == sum(t.break_hop is not None and t.break_hop.to == svc for t in truth)
        assert v["ci"][0] < FAIL < v["ci"][1] and v["flag"] is None
        assert v["injected"] == 0 and v["real"]["breaks"] == v["breaks"]
    first = st["iterations"][0]
    assert first["trials"] == 300 and first["expected"] == pytest.approx(1 - (1 - FAIL) ** 2)
    assert first["breaks"] == sum(t.break_hop is not None and t.break_hop.hop <= 2 for t in truth)
    assert first["ci"][0] < first["expected"] < first["ci"][1]
    assert st["run_length"]["counts"] == {str(k): v for k, v in sorted(Counter(len(t.hops) for t in truth).items())}
    assert st["flagged"] == [] and st["fail_rate_source"] == "test"


def test_an_injected_extra_400_rate_is_flagged_and_real_rate_is_not():
    s = synth(2, inject_rate=0.2)
    st = stats_of(s, {"a": FAIL, "b": FAIL})
    injected = Counter(t.break_hop.to for t in s.runs.values()
                       if t.break_hop is not None and t.break_hop.response.get("injected"))
    for svc in ("a", "b"):
        v = st["services"][svc]
        assert v["flag"] == "above" and v["ci"][0] > FAIL and v["injected"] == injected[svc] > 0
        assert v["real"]["flag"] is None and v["real"]["ci"][0] < FAIL < v["real"]["ci"][1]
    assert "service a" in st["flagged"] and "service b" in st["flagged"]


def test_a_wrong_configured_rate_is_flagged_both_ways():
    s = synth(3, n=200)
    low, high = stats_of(s, {"a": 0.1, "b": 0.1}), stats_of(s, {"a": 0.7, "b": 0.7})
    assert {v["flag"] for v in low["services"].values()} == {"above"}
    assert {v["flag"] for v in high["services"].values()} == {"below"}
    unknown = stats_of(s)
    assert unknown["fail_rate"] is None and unknown["flagged"] == []
    assert all(v["flag"] is None and v["expected"] is None for v in unknown["services"].values())


def test_session_fail_rates_come_from_services_json(tmp_path):
    assert session_fail_rates(tmp_path) is None
    (tmp_path / "services.json").write_text(json.dumps({"a": {"fail_rate": 0.25, "seed": 1}, "b": {"fail_rate": 0.5}}))
    (tmp_path / "flows.jsonl").write_text("")
    assert session_fail_rates(tmp_path / "flows.jsonl") == {"a": 0.25, "b": 0.5} == session_fail_rates(tmp_path)
