"""hoptrace/bare ratios from interleaved rounds, and how far they can be trusted.

On this VM a single round's hoptrace/bare spreads ±15 % and more, so one ``make bench`` (8
rounds) tells a ratio to within about ±0.05: often not enough to say whether the 0.95 target is
met. The figures here say so instead of leaving it to the reader: the geometric mean of the
per-round ratios with a 95 % bootstrap interval, and a verdict against the target.

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

TARGET = 0.95


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


def bootstrap_interval(ratios: list[float], level: float = 0.95, resamples: int = 4000,
                       seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap of the geometric mean of per-round ratios: the rounds drawn again
    with replacement ``resamples`` times (a fixed seed: the same rounds give the same interval).
    None under 3 rounds, where it would only restate them."""
    if len(ratios) < 3:
        return None
    rng, logs, n = random.Random(seed), [math.log(x) for x in ratios], len(ratios)
    means = sorted(math.fsum(rng.choices(logs, k=n)) / n for _ in range(resamples))
    tail = (1 - level) / 2
    lo, hi = means[int(tail * resamples)], means[min(resamples - 1, int((1 - tail) * resamples))]
    return math.exp(lo), math.exp(hi)


def verdict(interval: tuple[float, float] | list[float], target: float = TARGET) -> str:
    """What the interval says about the target."""
    lo, hi = interval
    if lo >= target:
        return f"above {target}"
    if hi < target:
        return f"below {target}"
    return f"{target} inside: cannot tell"


def pool(results: dict[str, dict], c: int) -> list[tuple[str, dict | None]]:
    """Each result's paired figures at concurrency ``c`` (those with rounds at it), then
    ("pooled", all their rounds) when more than one has some."""
    rows, every = [], []
    for name, res in results.items():
        ratios = round_ratios(res.get("rounds", []), c)
        if ratios:
            every += ratios
            rows.append((name, summary(ratios)))
    if len(rows) > 1:
        rows.append(("pooled", summary(every)))
    return rows


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
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
    t = Table(title=f"hoptrace/bare per round: geometric mean, 95 % bootstrap interval, target {TARGET}")
    for col in ("c", "result", "rounds", "paired", "range", "95 % interval", "verdict"):
        t.add_column(col, justify="left" if col in ("result", "verdict") else "right")
    for c in a.concurrency:
        rows = pool(results, c)
        for name, s in rows:
            ci = s.get("interval95")
            t.add_row(str(c), name.removesuffix(".json"), str(s["rounds"]), f"{s['geomean']:.3f}",
                      f"{s['min']:.2f}–{s['max']:.2f}", f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else "-",
                      verdict(ci) if ci else "too few rounds")
        if not rows:
            t.add_row(str(c), "(none has rounds at this concurrency)", "0", "-", "-", "-", "-")
        t.add_section()
    Console(width=max(120, Console().width)).print(t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
