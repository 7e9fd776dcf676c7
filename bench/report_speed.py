"""Report speed: ``hoptrace report --format json`` over a synthetic 1,000,000-hop flows.jsonl.

``python -m bench.report_speed`` writes the dump once (bench/synth_dump.py; kept in
``bench/.cache/`` for the next time), then runs, each as its own child process, timed by wall clock
with its peak RSS taken from ``os.wait4``:
  report   the real command, its JSON to /dev/null
           (wall clock and CPU time: on a shared machine the CPU time is the steadier figure)
  engine   the offline path alone, streaming: dumpio.read_records → runs.iter_runs → diagnose
           → one JSON line per run to /dev/null (what a streaming report costs at least)
Each is bounded by ``--time-limit`` (killed past it) and ``--mem-limit`` (address space).
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

from bench.machine import machine, write_json
from bench.synth_dump import write_dump

CACHE = Path("bench/.cache")


def timed(cmd: list[str], limit: float, mem_mb: int) -> dict:
    """Run ``cmd`` with its output discarded: wall seconds, peak RSS (MB), exit status. Its
    address space is capped at ``mem_mb`` (the machine is shared: a runaway report fails alone)."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mem_mb << 20, mem_mb << 20))

    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                         preexec_fn=cap)
    deadline = t0 + limit
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            os.killpg(p.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(p.pid, 0)
            break
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")[-500:] if p.stderr else ""
    return {"cmd": " ".join(cmd[1:]), "seconds": round(wall, 2),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "exit": os.waitstatus_to_exitcode(status), "timed_out": wall > limit, "stderr_tail": err}


def engine(path: str) -> None:
    """The offline path, streamed (the ``engine`` measurement runs this in a child)."""
    import orjson

    from proxy_addons.diagnosis import diagnose
    from proxy_addons.dumpio import read_records
    from proxy_addons.runs import iter_runs

    out = sys.stdout.buffer
    for run in iter_runs(read_records(path)):
        out.write(orjson.dumps(diagnose(run).to_json(), default=str, option=orjson.OPT_APPEND_NEWLINE))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--hops", type=int, default=1_000_000)
    p.add_argument("--time-limit", type=float, default=600, help="seconds per measurement at most")
    p.add_argument("--mem-limit", type=int, default=6000, help="MB of address space per child")
    p.add_argument("--json", type=Path, default=Path("bench/results/report.json"))
    p.add_argument("--only", choices=["report", "engine"], help="one of the two measurements")
    p.add_argument("--engine-child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.engine_child:
        engine(a.engine_child)
        return 0
    CACHE.mkdir(parents=True, exist_ok=True)
    dump = CACHE / f"flows-{a.hops}.jsonl"
    if not dump.exists():
        t0 = time.perf_counter()
        n = write_dump(dump.with_suffix(".tmp"), a.hops)
        dump.with_suffix(".tmp").rename(dump)
        print(f"wrote {n} records to {dump} in {time.perf_counter() - t0:.0f} s")
    records = sum(1 for _ in open(dump, "rb"))
    before = machine()
    hoptrace = str(Path(sys.executable).with_name("hoptrace"))
    cmds = {"report": [hoptrace, "report", "--format", "json", str(dump)],
            "engine": [sys.executable, "-m", "bench.report_speed", "--engine-child", str(dump)]}
    results = {name: timed(cmd, a.time_limit, a.mem_limit) for name, cmd in cmds.items()
               if a.only in (None, name)}
    result = {"dump": {"path": str(dump), "records": records, "mb": round(dump.stat().st_size / 1e6)},
              "results": results, "targets": {"seconds": 10, "peak_rss_mb": 300},
              "machine": {**before, "loadavg_after": machine()["loadavg"]}}
    for name, r in results.items():
        state = "TIMED OUT" if r["timed_out"] else f"exit {r['exit']}"
        print(f"{name:<7} {r['seconds']:7.1f} s (CPU {r['cpu_seconds']:.1f} s)  peak RSS {r['peak_rss_mb']:7.0f} MB  ({state})  {r['cmd']}")
    print(f"over {records} hops ({result['dump']['mb']} MB); targets: ≤ 10 s, ≤ 300 MB")
    write_json(a.json, result)
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
