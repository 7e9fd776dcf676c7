"""Report speed: ``hoptrace report --format json`` over a synthetic 1,000,000-hop flows.jsonl.

``python -m bench.report_speed`` writes the dump once (bench/synth_dump.py: with the run fields and
placement records the live gateway writes; kept in ``bench/.cache/`` for the next time), then runs,
each as its own child process, timed by wall clock and CPU time (children included; on a shared
machine the CPU time is the steadier figure), its peak RSS the largest single process's (its own
high-water mark, ``VmHWM``) and the whole process tree's (its processes' RSS summed), both sampled
every 50 ms:
  report       the real command, its JSON to /dev/null: the gateway's placement, every core
  reconstruct  the same with ``--reconstruct``: every run rebuilt by the run engine, one core
  engine       (only with ``--only engine``) the engine alone, streaming: dumpio.read_records →
               runs.iter_runs → diagnose → one JSON line per run to /dev/null
Each is bounded by ``--time-limit`` (killed past it) and ``--mem-limit`` (address space, per process).
``report`` runs ``--repeat`` times (3 by default; the VM's speed moves ±20 % within minutes): its
result is the run of median wall time, with the largest peak RSS of all, and every run is printed
and kept in the JSON (``runs``).
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.machine import machine, progress, write_json
from bench.synth_dump import cached_dump, dump_path


def timed(cmd: list[str], limit: float, mem_mb: int) -> dict:
    """Run ``cmd`` with its output discarded: wall seconds, peak RSS (MB), exit status. Its
    address space is capped at ``mem_mb`` (the machine is shared: a runaway report fails alone)."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mem_mb << 20, mem_mb << 20))

    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                         preexec_fn=cap)
    deadline = t0 + limit
    tree = largest = 0
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            os.killpg(p.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(p.pid, 0)
            break
        now, peak = group_rss(p.pid)
        tree, largest = max(tree, now), max(largest, peak)
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")[-500:] if p.stderr else ""
    return {"cmd": " ".join(cmd[1:]), "seconds": round(wall, 2),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2), "peak_rss_mb": round(largest / 2**20, 1),
            "peak_tree_rss_mb": round(tree / 2**20, 1),
            "exit": os.waitstatus_to_exitcode(status), "timed_out": wall > limit, "stderr_tail": err}


def median_run(runs: list[dict]) -> dict:
    """The run of median wall time (the slower middle one of an even number), with the largest
    peak RSS of all the runs; a failed or timed-out run counts as the slowest."""
    def key(r: dict) -> float:
        return float("inf") if r["exit"] != 0 or r["timed_out"] else r["seconds"]

    return {**sorted(runs, key=key)[len(runs) // 2],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "peak_tree_rss_mb": max(r["peak_tree_rss_mb"] for r in runs)}


def group_rss(pgid: int) -> tuple[int, int]:
    """(bytes resident now in all the processes of the group ``pgid``, a report and its workers;
    the largest peak of one of them so far). The peak is each process's own high-water mark
    (``VmHWM``, since its exec), not ``wait4``'s ``ru_maxrss``: Linux carries that one over from the
    pre-exec copy of the parent, so a large benchmark process would show as the report's peak.
    The group leader's process tree is read where Linux lists children (≈ 0.1 ms a sample, against
    ≈ 1 ms for a scan of every process, which would take CPU from the report it measures)."""
    total = peak = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for pid in _tree(pgid) or _group(pgid):
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * page
            with open(f"/proc/{pid}/status", "rb") as f:
                hwm = next(line for line in f if line.startswith(b"VmHWM:"))
            peak = max(peak, int(hwm.split()[1]) << 10)  # kB
        except (OSError, IndexError, ValueError, StopIteration):
            continue
    return total, peak


def _tree(root: int) -> list[int] | None:
    """``root`` and its descendants (``/proc/PID/task/TID/children``); None where Linux does
    not list children, or ``root`` is gone."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
            for task in tasks:
                with open(f"/proc/{pid}/task/{task}/children", "rb") as f:
                    todo.extend(int(c) for c in f.read().split())
        except FileNotFoundError:
            if pid == root:
                return None
            continue  # ended meanwhile
        pids.append(pid)
    return pids


def _group(pgid: int) -> list[int]:
    """Every process of the group ``pgid``: a scan of /proc."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # after the name: state, ppid, pgrp
            pids.append(int(entry))
    return pids


def engine(path: str) -> None:
    """The offline path, streamed (the ``engine`` measurement runs this in a child)."""
    from proxy_addons.diagnosis import diagnose
    from proxy_addons.dumpio import read_records
    from proxy_addons.runs import iter_runs

    out = sys.stdout.buffer
    for run in iter_runs(read_records(path)):
        out.write(diagnose(run).to_bytes() + b"\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--hops", type=int, default=1_000_000)
    p.add_argument("--time-limit", type=float, default=600, help="seconds per measurement at most")
    p.add_argument("--mem-limit", type=int, default=6000, help="MB of address space per child")
    p.add_argument("--json", type=Path, default=Path("bench/results/report.json"))
    p.add_argument("--only", choices=["report", "reconstruct", "engine"], help="one measurement only")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of `report` (default 3; the others run once): the median is the result")
    p.add_argument("--engine-child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.repeat < 1:
        p.error("--repeat must be at least 1")
    if a.engine_child:
        engine(a.engine_child)
        return 0
    if not dump_path(a.hops).exists():
        progress(f"report: writing the synthetic dump of {a.hops:,} hops (≈ 100 s per million; cached after)")
    dump, took = cached_dump(a.hops)
    if took is not None:
        print(f"wrote {dump} in {took:.0f} s")
    lines = records = 0
    with open(dump, "rb") as f:
        for line in f:
            lines += 1
            records += not line.startswith(b'{"type":"placement"')
    before = machine()
    hoptrace = str(Path(sys.executable).with_name("hoptrace"))
    cmds = {"report": [hoptrace, "report", "--format", "json", str(dump)],
            "reconstruct": [hoptrace, "report", "--format", "json", "--reconstruct", str(dump)],
            "engine": [sys.executable, "-m", "bench.report_speed", "--engine-child", str(dump)]}
    wanted = [a.only] if a.only else ["report", "reconstruct"]
    results, repeats = {}, {}
    for name in wanted:
        runs = []
        for i in range(a.repeat if name == "report" else 1):
            progress(f"report: timing {name} ({' '.join(cmds[name][1:])})"
                     + (f", run {i + 1} of {a.repeat}" if name == "report" and a.repeat > 1 else ""))
            runs.append(timed(cmds[name], a.time_limit, a.mem_limit))
        results[name] = median_run(runs)
        if len(runs) > 1:
            repeats[name] = runs
    result = {"dump": {"path": str(dump), "records": records, "placements": lines - records,
                       "mb": round(dump.stat().st_size / 1e6)},
              "results": results, "runs": repeats, "targets": {"seconds": 10, "peak_rss_mb": 300},
              "machine": {**before, "loadavg_after": machine()["loadavg"]}}
    for name, r in results.items():
        state = "TIMED OUT" if r["timed_out"] else f"exit {r['exit']}"
        print(f"{name:<11} {r['seconds']:7.1f} s (CPU {r['cpu_seconds']:.1f} s)  peak RSS {r['peak_rss_mb']:5.0f} MB"
              f" (all processes {r['peak_tree_rss_mb']:5.0f} MB)  ({state})  {r['cmd']}")
        if name in repeats:
            each = ", ".join(f"{x['seconds']:.1f} s (CPU {x['cpu_seconds']:.1f})" for x in repeats[name])
            print(f"{'':<11} the median of {len(repeats[name])} runs: {each}")
    print(f"over {records} hops ({result['dump']['mb']} MB); targets: ≤ 10 s, ≤ 300 MB")
    write_json(a.json, result)
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
