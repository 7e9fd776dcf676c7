"""The concurrency-1 ratio predicted from the gateway's CPU (bench/gateway.py ``cpu_model``)."""

from __future__ import annotations

import json

import pytest

from bench.gateway import cpu_model, summarize
from bench.ratios import added_p50, bootstrap_interval, geomean, paired, pool, verdict, verdict_at_most


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


def test_the_paired_interval_is_reproducible_holds_the_mean_and_widens_with_the_spread():
    tight = [0.94, 0.95, 0.96, 0.95, 0.94, 0.96, 0.95, 0.95]
    wide = [0.80, 1.10, 0.85, 1.05, 0.90, 1.15, 0.82, 1.00]
    lo, hi = bootstrap_interval(tight)
    assert bootstrap_interval(tight) == (lo, hi)  # a fixed seed: the same rounds, the same interval
    assert lo < geomean(tight) < hi
    wlo, whi = bootstrap_interval(wide)
    assert wlo < geomean(wide) < whi
    assert whi - wlo > 3 * (hi - lo)
    assert min(wide) < wlo and whi < max(wide)  # an interval of the mean, not the rounds' range
    assert bootstrap_interval([0.9, 0.9, 0.9]) == pytest.approx((0.9, 0.9))
    assert bootstrap_interval([0.9, 1.0]) is None  # too few rounds to say anything


def test_the_verdict_says_whether_the_rounds_can_tell_the_ratio_from_the_target():
    assert verdict((0.95, 0.99)) == "met"
    assert verdict((0.90, 0.949)) == "missed"
    assert verdict((0.93, 0.97)) == "cannot tell"
    assert verdict_at_most((0.05, 0.2)) == "met"  # the added p50's target is a ceiling
    assert verdict_at_most((0.21, 0.5)) == "missed"
    assert verdict_at_most((0.1, 0.3)) == "cannot tell"


def test_paired_gives_the_interval_from_three_rounds_on():
    p = paired(_rounds([0.9, 0.95, 1.0, 0.97]), 1)
    assert p["rounds"] == 4 and p["min"] == pytest.approx(0.9) and p["max"] == pytest.approx(1.0)
    assert p["geomean"] == pytest.approx(geomean([0.9, 0.95, 1.0, 0.97]))
    lo, hi = p["interval95"]
    assert 0.9 <= lo < p["geomean"] < hi <= 1.0
    assert "interval95" not in paired(_rounds([0.9, 0.95]), 1)


def _rounds(ratios, c=1):
    out = []
    for i, r in enumerate(ratios):
        out += [_round("bare", c, 250, 1.7, i), _round("hoptrace", c, 250 * r, 1.9, i)]
    return out


def test_pooling_stored_runs_takes_every_round_and_narrows_the_interval():
    a, b = [0.90, 0.97, 0.93, 0.99, 0.92, 0.96], [0.94, 0.91, 0.98, 0.95, 0.93, 0.97]
    rows = pool({"a.json": {"rounds": _rounds(a)}, "b.json": {"rounds": _rounds(b)},
                 "c16-only.json": {"rounds": _rounds([1.0, 1.0, 1.0], c=16)}}, 1)
    assert [name for name, _, _ in rows] == ["a.json", "b.json", "pooled"]  # no row without rounds at c
    pooled = rows[-1][1]
    assert pooled["rounds"] == 12 and pooled["geomean"] == pytest.approx(geomean(a + b))
    width = [s["interval95"][1] - s["interval95"][0] for _, s, _ in rows]
    assert width[2] < min(width[:2])
    assert [name for name, _, _ in pool({"a.json": {"rounds": _rounds(a)}}, 1)] == ["a.json"]  # nothing to pool


def test_the_ratios_command_prints_each_result_and_the_pool_and_refuses_what_is_not_a_result(tmp_path, capsys):
    from bench.ratios import main

    for name, ratios in (("one.json", [0.9, 0.95, 1.0]), ("two.json", [0.96, 0.97, 0.98])):
        (tmp_path / name).write_text(json.dumps({"rounds": _rounds(ratios)}))
    assert main([str(tmp_path / "one.json"), str(tmp_path / "two.json"), "--concurrency", "1"]) == 0
    out = capsys.readouterr().out
    assert "one" in out and "two" in out and "pooled" in out
    assert f"{geomean([0.9, 0.95, 1.0, 0.96, 0.97, 0.98]):.3f}" in out
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"what": "not a gateway run"}))
    for bad in ("bad.json", "other.json", "missing.json"):
        with pytest.raises(SystemExit) as exc:
            main([str(tmp_path / bad)])
        assert exc.value.code == 2
        assert bad in capsys.readouterr().err


def test_the_printed_notes_give_the_interval_and_its_verdict(capsys):
    from bench.gateway import print_table

    rounds = _rounds([0.93, 0.95, 0.97, 0.94])
    result = {"summary": summarize(rounds, ["bare", "hoptrace"], [1]), "records": {},
              "params": {"max_hops": 10, "rounds": 4, "modes": ["bare", "hoptrace"]}}
    print_table(result)
    out = " ".join(capsys.readouterr().out.split())  # rich may wrap the line
    lo, hi = result["summary"]["1"]["hoptrace/bare paired"]["interval95"]
    assert f"95 % interval {lo:.3f}–{hi:.3f}, target: cannot tell" in out


def test_the_added_p50_is_paired_per_round_and_judged_against_its_ceiling(capsys):
    from bench.gateway import print_table

    rounds = []
    for i, added in enumerate([0.30, 0.35, 0.40, 0.32]):  # each round: hoptrace's hops that much slower
        rounds += [{**_round("bare", 1, 250, 1.7, i), "hop_ms": [3.8, 4.0, 4.2]},
                   {**_round("hoptrace", 1, 240, 1.9, i), "hop_ms": [3.8 + added, 4.0 + added, 4.2 + added]}]
    a = added_p50(rounds, 1)
    assert a["rounds"] == 4 and a["mean_ms"] == pytest.approx(0.3425)
    assert a["min"] == pytest.approx(0.30) and a["max"] == pytest.approx(0.40)
    lo, hi = a["interval95"]
    assert 0.30 <= lo < a["mean_ms"] < hi <= 0.40 and verdict_at_most((lo, hi)) == "missed"
    result = {"summary": summarize(rounds, ["bare", "hoptrace"], [1]), "records": {},
              "params": {"max_hops": 10, "rounds": 4, "modes": ["bare", "hoptrace"]}}
    assert result["summary"]["1"]["added p50 paired"] == a
    print_table(result)
    out = " ".join(capsys.readouterr().out.split())
    assert f"added p50 paired per round +0.34 ms (95 % interval {lo:+.2f}–{hi:+.2f}, target: missed)" in out
    pooled = pool({"x.json": {"rounds": rounds}, "y.json": {"rounds": rounds}}, 1)[-1]
    assert pooled[0] == "pooled" and pooled[2]["rounds"] == 8


def test_tables_written_to_a_file_are_wide_enough_for_every_figure(tmp_path, monkeypatch):
    """`make bench > bench.log`: rich assumes 80 columns off a terminal and cut the gateway
    table's figures to "…" (the fifteenth stop's log); off a terminal the bench tables are wide."""
    from bench.gateway import print_table
    from bench.machine import LOG_WIDTH

    monkeypatch.delenv("COLUMNS", raising=False)
    rounds = _rounds([0.93, 0.95, 0.97])
    result = {"summary": summarize(rounds, ["bare", "hoptrace"], [1]), "records": {},
              "params": {"max_hops": 10, "rounds": 3, "modes": ["bare", "hoptrace"]}}
    log = tmp_path / "bench.log"
    with open(log, "w") as f:
        monkeypatch.setattr("sys.stdout", f)
        print_table(result)
    text = log.read_text()
    assert "…" not in text
    assert "gateway CPU ms/hop" in text and "services CPU ms/hop" in text
    assert max(len(line) for line in text.splitlines()) <= LOG_WIDTH


def test_rounds_default_to_more_at_concurrency_1_and_take_one_number_or_one_per_concurrency(capsys):
    from bench.gateway import DEFAULT_ROUNDS, DEFAULT_ROUNDS_C1, main, rounds_at

    assert rounds_at(None, [1, 16]) == {1: DEFAULT_ROUNDS_C1, 16: DEFAULT_ROUNDS}
    assert DEFAULT_ROUNDS_C1 % 4 == 0 and DEFAULT_ROUNDS % 4 == 0  # every mode in every place alike
    assert rounds_at([2], [1, 2]) == {1: 2, 2: 2}
    assert rounds_at([12, 4], [1, 16]) == {1: 12, 16: 4}
    with pytest.raises(ValueError, match="one per concurrency"):
        rounds_at([12, 4, 2], [1, 16])
    for argv, said in ((["--rounds", "8", "4", "2"], "one per concurrency (2), not 3"),
                       (["--rounds", "0"], "must be >= 1"), (["--concurrency", "1", "1"], "each value once")):
        with pytest.raises(SystemExit) as exc:
            main(argv)  # refused before any process starts
        assert exc.value.code == 2
        assert said in capsys.readouterr().err
