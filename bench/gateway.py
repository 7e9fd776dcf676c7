"""Gateway benchmark: direct vs bare mitmproxy vs hoptrace (mitmdump, mitmweb), interleaved.

``python -m bench.gateway`` (what ``make bench`` runs first) starts every mode's processes once
(bench/modes.py), warms each up, then measures one concurrency after the other, each in rounds:
in each round every mode in turn (the order rotates per round), so a noisy neighbour hits all
modes alike. Each measurement is preceded by a few untimed runs at its own concurrency
(``--settle`` per client: the first run after a pause took up to 40× a hop's time). The
concurrencies are not mixed within a round: a mode's concurrency-16 burst slows its next
concurrency-1 measurement by 20–40 %, even one or two measurements later, and not by the same
amount for every mode, so a rotation did not cancel it (docs/performance-log.md, fifth stop). The
default numbers of rounds (24 at concurrency 1, 8 at the others) are multiples of the number of
modes (4, and 2 for ``--modes bare hoptrace``): every mode takes every place equally often. A
concurrency-1 round takes seconds, and its ratio needs the rounds: one round's hoptrace/bare
spreads ±15 % and more on a shared VM, so 8 rounds told it only to about ±0.05 (bench/ratios.py).

Figures per mode and concurrency:
  hops/s        hops answered per wall second (median over rounds)
  hop p50/p99   per-hop latency: a run's latency seen by the client / MAX_HOPS, percentiles over
                every run of every round
  paired        hoptrace/bare within each round (the two measured seconds apart), their geometric
                mean over the rounds, with the lowest and highest: steadier than the ratio of the
                two medians when the machine drifts; and a 95 % bootstrap interval of that mean
                (the rounds resampled), which says whether the rounds could tell the ratio from
                the 0.95 target at all: on this VM single rounds spread ±15 % (bench/ratios.py);
                the same for the added p50 (hoptrace's median hop minus bare's, per round)
Every run must end ``max_hops`` with exactly MAX_HOPS hops, or it is counted as failed; the
hoptrace modes' flows.jsonl must hold one record per hop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.machine import console as bench_console
from bench.machine import machine, progress, write_json
from bench.modes import MODES, Setup, start_all
from bench.ratios import added_p50, cpu_model, paired, verdict, verdict_at_most
from proxy_addons.load import drive


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no data."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_once(setup: Setup, runs: int, concurrency: int, max_hops: int, time_limit: float) -> dict:
    """Kick ``runs`` runs at ``concurrency``; the figures of this one measurement, with the
    gateway's own CPU time per hop (steadier than wall clock on a shared machine) and the two
    services' (the same work in every mode: what they spend more under one gateway than under
    another is what that gateway costs them, e.g. in the caches the 2 cores share)."""
    gw, services = setup.gateway_pid, setup.service_pids
    cpu0 = cpu_seconds(gw) if gw else 0.0
    svc0 = sum(map(cpu_seconds, services))
    t0 = time.perf_counter()
    kicks = asyncio.run(drive(setup.url, runs, concurrency, time_limit))
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(gw) - cpu0 if gw else None
    svc = sum(map(cpu_seconds, services)) - svc0
    ok = [k for k in kicks if k.status == 200 and isinstance(k.body, dict)
          and k.body.get("outcome") == "max_hops" and k.body.get("hops") == max_hops]
    failures = Counter(f"{k.ending()} hops={k.body.get('hops') if isinstance(k.body, dict) else None}"
                       for k in kicks if k not in ok)
    return {"runs": len(kicks), "ok": len(ok), "wall_s": wall, "failures": dict(failures),
            "hops_per_s": len(ok) * max_hops / wall if wall else 0.0,
            "gateway_cpu_ms_per_hop": cpu * 1000 / (len(ok) * max_hops) if cpu is not None and ok else None,
            "services_cpu_ms_per_hop": svc * 1000 / (len(ok) * max_hops) if ok else None,
            "hop_ms": [k.seconds * 1000 / max_hops for k in ok]}


def run_bench(a: argparse.Namespace, workdir: Path) -> dict:
    setups = start_all(list(a.modes), workdir, a.max_hops)
    rounds: list[dict] = []
    hops_sent = {m: 0 for m in a.modes}
    try:
        progress(f"gateway: {', '.join(a.modes)} up; warming up ({a.warmup} runs each)")
        for m in a.modes:  # warm-up: connections, imports, JITless caches
            hops_sent[m] += measure_once(setups[m], a.warmup, 4, a.max_hops, a.time_limit)["ok"] * a.max_hops
        for c in a.concurrency:  # one concurrency's rounds, then the next: see the module doc
            of = a.rounds_at[c]
            for r in range(of):
                if r:
                    _round_done(rounds, a.modes, c, r - 1, of)
                order = list(a.modes[r % len(a.modes):]) + list(a.modes[:r % len(a.modes)])
                for m in order:
                    n = a.runs * c if c > 1 else a.runs
                    if a.settle:  # untimed: the first runs after a pause carry its after-effects
                        settle = measure_once(setups[m], a.settle * c, c, a.max_hops, a.time_limit)
                        hops_sent[m] += settle["ok"] * a.max_hops
                    res = measure_once(setups[m], n, c, a.max_hops, a.time_limit)
                    hops_sent[m] += res["ok"] * a.max_hops
                    rounds.append({"round": r, "mode": m, "concurrency": c, **res})
                    if a.verbose:
                        print(f"round {r} c={c:<2} {m:<13} {res['hops_per_s']:8.0f} hops/s "
                              f"({res['ok']}/{res['runs']} ok) {res['failures'] or ''}", flush=True)
            _round_done(rounds, a.modes, c, of - 1, of)
        recorded = {m: _records(s.session) for m, s in setups.items() if s.session}
    finally:
        for s in setups.values():
            s.stop()
    return {"rounds": rounds, "summary": summarize(rounds, a.modes, a.concurrency),
            "records": {m: {"flows.jsonl": n, "hops_answered": hops_sent[m]} for m, n in recorded.items()}}


def _round_done(rounds: list[dict], modes, c: int, r: int, of: int) -> None:
    rate = {x["mode"]: x["hops_per_s"] for x in rounds if x["concurrency"] == c and x["round"] == r}
    said = " ".join(f"{m} {rate[m]:.0f}" for m in modes if m in rate)
    progress(f"gateway: concurrency {c}, round {r + 1}/{of} done (hops/s: {said})")


def _records(session: Path) -> int:
    """Flow records in flows.jsonl (``placement`` lines correct a run placement: not flows)."""
    with open(session / "flows.jsonl", "rb") as f:
        return sum(1 for line in f if not line.startswith(b'{"type":"placement"'))


def _median(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(rounds: list[dict], modes, concurrencies) -> dict:
    out: dict = {}
    for c in concurrencies:
        row: dict = {}
        for m in modes:
            rs = [r for r in rounds if r["mode"] == m and r["concurrency"] == c]
            lat = [x for r in rs for x in r["hop_ms"]]
            row[m] = {
                "hops_per_s": statistics.median(r["hops_per_s"] for r in rs) if rs else 0.0,
                "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
                "failed_runs": sum(r["runs"] - r["ok"] for r in rs),
                "gateway_cpu_ms_per_hop": _median([r["gateway_cpu_ms_per_hop"] for r in rs]),
                "services_cpu_ms_per_hop": _median([r.get("services_cpu_ms_per_hop") for r in rs]),
            }
        ht, bare, direct = row.get("hoptrace"), row.get("bare"), row.get("direct")
        if ht and bare and bare["hops_per_s"]:
            row["hoptrace/bare"] = ht["hops_per_s"] / bare["hops_per_s"]
            row["added_p50_ms_over_bare"] = ht["p50_ms"] - bare["p50_ms"]
            row["hoptrace/bare paired"] = paired(rounds, c)
            row["added p50 paired"] = added_p50(rounds, c)
        if ht and direct and direct["hops_per_s"]:
            row["hoptrace/direct"] = ht["hops_per_s"] / direct["hops_per_s"]
        if c == 1 and ht and bare and bare["hops_per_s"] and None not in (
                ht["gateway_cpu_ms_per_hop"], bare["gateway_cpu_ms_per_hop"]):
            row["hoptrace/bare from CPU"] = cpu_model(
                1000 / bare["hops_per_s"], ht["gateway_cpu_ms_per_hop"] - bare["gateway_cpu_ms_per_hop"])
        out[str(c)] = row
    return out


def print_table(result: dict) -> None:
    from rich.table import Table

    at = result["params"].get("rounds_at") or {}
    rounds = ", ".join(f"{n} at concurrency {c}" for c, n in at.items()) or str(result["params"]["rounds"])
    t = Table(title=f"gateway: MAX_HOPS={result['params']['max_hops']}, interleaved rounds: {rounds} "
                    "(hops/s: median of rounds)")
    for col in ("conc.", "mode", "hops/s", "hop p50 ms", "hop p99 ms", "gateway CPU ms/hop", "services CPU ms/hop",
                "failed runs"):
        t.add_column(col, justify="right" if col != "mode" else "left", no_wrap=True,
                     min_width=12 if col == "mode" else None)
    for c, row in result["summary"].items():
        for m in result["params"]["modes"]:
            f = row[m]
            cpu, svc = f["gateway_cpu_ms_per_hop"], f.get("services_cpu_ms_per_hop")
            t.add_row(c, m, f"{f['hops_per_s']:.0f}", f"{f['p50_ms']:.2f}", f"{f['p99_ms']:.2f}",
                      "-" if cpu is None else f"{cpu:.2f}", "-" if svc is None else f"{svc:.2f}",
                      str(f["failed_runs"]))
        t.add_section()
    console = bench_console()
    console.print(t)
    for c, row in result["summary"].items():
        notes = []
        if "hoptrace/bare" in row:
            notes.append(f"hoptrace/bare {row['hoptrace/bare']:.3f} (target ≥ 0.95), "
                         f"added p50 {row['added_p50_ms_over_bare']:+.2f} ms/hop (target ≤ 0.2)")
            if pr := row.get("hoptrace/bare paired"):
                ci = pr.get("interval95")
                notes.append(f"paired per round {pr['geomean']:.3f} ({pr['min']:.2f}–{pr['max']:.2f} "
                             f"over {pr['rounds']}" + (f"; 95 % interval {ci[0]:.3f}–{ci[1]:.3f}, "
                                                       f"target: {verdict(ci)})" if ci else ")"))
            if (ap := row.get("added p50 paired")) and (ci := ap.get("interval95")):
                notes.append(f"added p50 paired per round {ap['mean_ms']:+.2f} ms (95 % interval "
                             f"{ci[0]:+.2f}–{ci[1]:+.2f}, target: {verdict_at_most(ci)})")
        if m := row.get("hoptrace/bare from CPU"):
            notes.append(f"from the CPU: added {m['added_cpu_ms']:.2f} ms/hop (0.95 needs ≤ "
                         f"{m['added_cpu_budget_ms']:.2f}), T / (T + ΔCPU) {m['ratio']:.3f}")
        if "hoptrace/direct" in row:
            notes.append(f"hoptrace/direct {row['hoptrace/direct']:.3f}")
        if notes:
            console.print(f"concurrency {c}: " + "; ".join(notes))
    for m, rec in result.get("records", {}).items():
        print(f"{m}: flows.jsonl {rec['flows.jsonl']} records for {rec['hops_answered']} hops answered")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, nargs="+", default=None,
                   help="rounds: one number for every concurrency, or one per --concurrency (default: "
                        f"{DEFAULT_ROUNDS_C1} at concurrency 1, {DEFAULT_ROUNDS} at the others); a multiple "
                        "of the number of modes puts each mode in each place of the order equally often "
                        "(the place changes the figures)")
    p.add_argument("--max-hops", type=int, default=10, help="services' MAX_HOPS: hops per run")
    p.add_argument("--runs", type=int, default=15, help="runs per measurement at concurrency 1; "
                   "×C at concurrency C")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--warmup", type=int, default=20, help="runs per mode before measuring")
    p.add_argument("--settle", type=int, default=2,
                   help="untimed runs per client right before each measurement (0: none)")
    p.add_argument("--time-limit", type=float, default=60, help="seconds per measurement at most")
    p.add_argument("--json", type=Path, default=Path("bench/results/gateway.json"))
    p.add_argument("-v", "--verbose", action="store_true")
    return p


DEFAULT_ROUNDS_C1, DEFAULT_ROUNDS = 24, 8


def rounds_at(rounds: list[int] | None, concurrencies: list[int]) -> dict[int, int]:
    """Rounds per concurrency from ``--rounds`` (none, one for all, or one per concurrency)."""
    if rounds is None:
        return {c: DEFAULT_ROUNDS_C1 if c == 1 else DEFAULT_ROUNDS for c in concurrencies}
    if len(rounds) == 1:
        return dict.fromkeys(concurrencies, rounds[0])
    if len(rounds) != len(concurrencies):
        raise ValueError(f"--rounds: give one number, or one per concurrency ({len(concurrencies)}), "
                         f"not {len(rounds)}")
    return dict(zip(concurrencies, rounds, strict=True))


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    if min(a.max_hops, a.runs, *a.concurrency, *(a.rounds or [1])) < 1:
        parser().error("--rounds, --max-hops, --runs and --concurrency must be >= 1")
    if len(set(a.concurrency)) != len(a.concurrency):
        parser().error("--concurrency: each value once")
    try:
        a.rounds_at = rounds_at(a.rounds, a.concurrency)
    except ValueError as exc:
        parser().error(str(exc))
    if a.settle < 0:
        parser().error("--settle must be >= 0")
    before = machine()
    with tempfile.TemporaryDirectory(prefix="hoptrace-bench-") as tmp:
        result = run_bench(a, Path(tmp))
    result["params"] = {k: v for k, v in vars(a).items() if k != "json"}
    result["machine"] = {**before, "loadavg_after": machine()["loadavg"]}
    print_table(result)
    write_json(a.json, result)
    print(f"wrote {a.json}")
    failed = sum(r["runs"] - r["ok"] for r in result["rounds"])
    lost = any(v["flows.jsonl"] != v["hops_answered"] for v in result["records"].values())
    return 1 if failed or lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
