"""hoptrace/bare ratios from interleaved rounds, and how far they can be trusted.

On this VM a single round's hoptrace/bare spreads ±15 % and more, so one ``make bench`` (8
rounds) tells a ratio to within about ±0.05: often not enough to say whether the 0.95 target is
met. The figures here say so instead of leaving it to the reader: the geometric mean of the
per-round ratios with a 95 % bootstrap interval, and a verdict against the target (met: the
whole interval on the right side of it; missed: the whole interval on the wrong side; cannot
tell); the same for the added p50 latency a hop (hoptrace's median minus bare's, per round).

``python -m bench.ratios FILE...`` reads stored ``bench.gateway`` results (``bench/results/``)
and prints, per concurrency, each file's paired ratio and the pool of all their rounds (runs of
the same code pooled give a narrower interval), e.g.::

    python -m bench.ratios bench/results/gateway-thirteenth-c1-long.json bench/results/gateway-1755.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
from pathlib import Path

from bench.machine import console

TARGET = 0.95  # hoptrace/bare throughput, at least
P50_TARGET_MS = 0.2  # added p50 latency a hop over bare, at most


def cpu_model(bare_hop_ms: float, added_cpu_ms: float, target: float = TARGET) -> dict:
    """The concurrency-1 ratio from the steadier CPU figures. The hops are nested, so all the
    gateway's work is in series with the rest, wherever it runs: hops/s ≈ 1 / (T + ΔCPU), the
    ratio T / (T + ΔCPU), and ``target`` needs ΔCPU ≤ T × (1 / target − 1) (docs/performance.md)."""
    return {"bare_hop_ms": bare_hop_ms, "added_cpu_ms": added_cpu_ms,
            "ratio": bare_hop_ms / (bare_hop_ms + added_cpu_ms),
            "added_cpu_budget_ms": bare_hop_ms * (1 / target - 1)}


def round_ratios(rounds: list[dict], c: int) -> list[float]:
    """hoptrace/bare within each round at concurrency ``c`` (both measured in it)."""
    by: dict[int, dict[str, float]] = {}
    for r in rounds:
        if r["concurrency"] == c and r["hops_per_s"]:
            by.setdefault(r["round"], {})[r["mode"]] = r["hops_per_s"]
    return [m["hoptrace"] / m["bare"] for m in by.values() if "hoptrace" in m and "bare" in m]


def paired(rounds: list[dict], c: int) -> dict | None:
    """hoptrace/bare per round at concurrency ``c``: geometric mean, lowest, highest, and the
    95 % interval of the mean (from 3 rounds on)."""
    return summary(round_ratios(rounds, c))


def summary(ratios: list[float]) -> dict | None:
    if not ratios:
        return None
    out = {"geomean": geomean(ratios), "min": min(ratios), "max": max(ratios), "rounds": len(ratios)}
    if (ci := bootstrap_interval(ratios)) is not None:
        out["interval95"] = list(ci)
    return out


def geomean(xs: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(x) for x in xs))


def mean_interval(values: list[float], level: float = 0.95, resamples: int = 4000,
                  seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap of the mean of per-round values: the rounds drawn again with
    replacement ``resamples`` times (a fixed seed: the same rounds give the same interval). None
    under 3 rounds, where it would only restate them."""
    if len(values) < 3:
        return None
    rng, n = random.Random(seed), len(values)
    means = sorted(math.fsum(rng.choices(values, k=n)) / n for _ in range(resamples))
    tail = (1 - level) / 2
    return means[int(tail * resamples)], means[min(resamples - 1, int((1 - tail) * resamples))]


def bootstrap_interval(ratios: list[float], level: float = 0.95, resamples: int = 4000,
                       seed: int = 0) -> tuple[float, float] | None:
    """The same for the geometric mean of per-round ratios (the mean of their logarithms)."""
    ci = mean_interval([math.log(x) for x in ratios], level, resamples, seed)
    return None if ci is None else (math.exp(ci[0]), math.exp(ci[1]))


def verdict(interval: tuple[float, float] | list[float], target: float = TARGET) -> str:
    """What the interval says about a target that is a floor: met (all of it at or above),
    missed (all below), or cannot tell (the target inside it)."""
    lo, hi = interval
    if lo >= target:
        return "met"
    if hi < target:
        return "missed"
    return "cannot tell"


def round_added_p50(rounds: list[dict], c: int) -> list[float]:
    """hoptrace's median hop latency minus bare's, within each round at concurrency ``c`` (ms)."""
    by: dict[int, dict[str, float]] = {}
    for r in rounds:
        if r["concurrency"] == c and r.get("hop_ms"):
            by.setdefault(r["round"], {})[r["mode"]] = statistics.median(r["hop_ms"])
    return [m["hoptrace"] - m["bare"] for m in by.values() if "hoptrace" in m and "bare" in m]


def added_p50(rounds: list[dict], c: int) -> dict | None:
    """The added p50 a hop, paired per round: mean, lowest, highest, 95 % interval of the mean."""
    return p50_summary(round_added_p50(rounds, c))


def p50_summary(diffs: list[float]) -> dict | None:
    if not diffs:
        return None
    out = {"mean_ms": statistics.fmean(diffs), "min": min(diffs), "max": max(diffs), "rounds": len(diffs)}
    if (ci := mean_interval(diffs)) is not None:
        out["interval95"] = list(ci)
    return out


def verdict_at_most(interval: tuple[float, float] | list[float], limit: float = P50_TARGET_MS) -> str:
    """The same for a target that is a ceiling."""
    lo, hi = interval
    if hi <= limit:
        return "met"
    if lo > limit:
        return "missed"
    return "cannot tell"


def pool(results: dict[str, dict], c: int) -> list[tuple[str, dict, dict | None]]:
    """Each result's paired throughput ratio and added p50 at concurrency ``c`` (those with
    rounds at it), then ("pooled", all their rounds) when more than one has some."""
    rows, ratios, diffs = [], [], []
    for name, res in results.items():
        rounds = res.get("rounds", [])
        rs = round_ratios(rounds, c)
        if rs:
            ratios += rs
            diffs += round_added_p50(rounds, c)
            rows.append((name, summary(rs), added_p50(rounds, c)))
    if len(rows) > 1:
        rows.append(("pooled", summary(ratios), p50_summary(diffs)))
    return rows


def _interval(s: dict | None, fmt: str, judge) -> tuple[str, str]:
    ci = s.get("interval95") if s else None
    if ci is None:
        return "-", "too few rounds" if s else "-"
    return f"{ci[0]:{fmt}}–{ci[1]:{fmt}}", judge(ci)


def main(argv: list[str] | None = None) -> int:
    from rich.table import Table

    p = argparse.ArgumentParser(prog="python -m bench.ratios", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", type=Path, help="bench.gateway JSON results")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    a = p.parse_args(argv)
    results = {}
    for path in a.results:
        try:
            res = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            p.error(f"{path}: not a readable bench.gateway result ({exc})")
        if not isinstance(res, dict) or not isinstance(res.get("rounds"), list):
            p.error(f"{path}: no interleaved rounds in it (not a bench.gateway result)")
        results[path.name] = res
    t = Table(title=f"paired per round, 95 % bootstrap intervals: hoptrace/bare (target ≥ {TARGET}), "
                    f"added p50 ms a hop (target ≤ {P50_TARGET_MS})")
    for col in ("c", "result", "rounds", "hoptrace/bare", "range", "95 % interval", "verdict",
                "added p50", "95 % interval ", "verdict "):
        t.add_column(col, justify="left" if col.startswith(("result", "verdict")) else "right")
    for c in a.concurrency:
        rows = pool(results, c)
        for name, r, d in rows:
            ci_r, v_r = _interval(r, ".3f", verdict)
            ci_d, v_d = _interval(d, "+.2f", verdict_at_most)
            t.add_row(str(c), name.removesuffix(".json"), str(r["rounds"]), f"{r['geomean']:.3f}",
                      f"{r['min']:.2f}–{r['max']:.2f}", ci_r, v_r,
                      f"{d['mean_ms']:+.2f}" if d else "-", ci_d, v_d)
        if not rows:
            t.add_row(str(c), "(none has rounds at this concurrency)", "0", *["-"] * 7)
        t.add_section()
    console().print(t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
