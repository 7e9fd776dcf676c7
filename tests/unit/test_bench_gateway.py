"""The concurrency-1 ratio predicted from the gateway's CPU (bench/gateway.py ``cpu_model``)."""

from __future__ import annotations

import pytest

from bench.gateway import cpu_model, summarize


def test_the_model_is_the_serial_sum_and_its_budget_meets_the_target_exactly():
    m = cpu_model(4.0, 0.2)
    assert m["ratio"] == pytest.approx(4.0 / 4.2)
    assert m["added_cpu_budget_ms"] == pytest.approx(4.0 / 19)
    at_budget = cpu_model(4.0, m["added_cpu_budget_ms"])
    assert at_budget["ratio"] == pytest.approx(0.95)
    assert cpu_model(4.0, 0.0)["ratio"] == 1.0


def _round(mode: str, c: int, hops: float, cpu: float, rnd: int = 0) -> dict:
    return {"mode": mode, "concurrency": c, "round": rnd, "hops_per_s": hops, "hop_ms": [1000 / hops],
            "runs": 1, "ok": 1, "gateway_cpu_ms_per_hop": cpu, "services_cpu_ms_per_hop": 2.0}


def test_the_summary_gives_it_at_concurrency_1_only():
    rounds = [_round("bare", c, 250, 1.7) for c in (1, 16)] + [_round("hoptrace", c, 230, 1.95) for c in (1, 16)]
    s = summarize(rounds, ["bare", "hoptrace"], [1, 16])
    m = s["1"]["hoptrace/bare from CPU"]
    assert m["bare_hop_ms"] == pytest.approx(4.0)
    assert m["added_cpu_ms"] == pytest.approx(0.25)
    assert m["ratio"] == pytest.approx(4.0 / 4.25)
    assert "hoptrace/bare from CPU" not in s["16"]  # saturated cores: not a serial sum
