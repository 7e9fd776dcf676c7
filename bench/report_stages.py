"""Where the fast report's CPU goes, stage by stage, in one process (no worker, no other core).

``python -m bench.report_stages`` runs ``report_fast.scan`` over a placed synthetic dump
(default: 100,000 hops, written once into ``bench/.cache/`` as bench/report_speed.py does;
``--dump``: another placed dump) with the later stages stubbed out, each stage in a fresh child
process, best of ``--repeat``:
  read      read + decode the lines, group records into runs (runs handed out, not assembled)
  assemble  + assemble each run from its records' run fields
  diagnose  + diagnose each run
  summary   + add it to the summary
  full      + its JSON encoded and written (/dev/null): the real report of one range
Each figure is CPU seconds (``time.process_time``) and µs per hop; the differences between
stages are what each stage costs. On a shared VM, CPU time in one process is the steadiest
measure there is, and ``full`` × hops / 2 cores is about the wall time of the 2-core report.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the children import bench/ and proxy_addons/ from here
STAGES = ("read", "assemble", "diagnose", "summary", "full")


def child(path: str, stage: str) -> None:
    """One stage over ``path``; prints CPU seconds and the hops read."""
    import proxy_addons.report_fast as rf
    from proxy_addons.diagnosis import diagnose
    from proxy_addons.lineage import PingPongLineage
    from proxy_addons.report import service_of

    if stage == "read":
        rf.FastRuns.emit = lambda self, rid, items, pos, hold=False: []
    elif stage != "full":
        def write(self, outs, own=None):
            for run, _pos, _note in outs:
                if stage != "assemble":
                    d = diagnose(run, self.lineage)
                    if stage == "summary":
                        self.part.summary.add(d)
        rf.Writer.write = write
    t = time.process_time()
    with open("/dev/null", "wb") as out:
        part = rf.scan(path, 0, None, PingPongLineage(), out, service_of)
    print(time.process_time() - t, part.read)


def main(argv: list[str] | None = None) -> int:
    from bench.synth_dump import cached_dump

    p = argparse.ArgumentParser(prog="python -m bench.report_stages", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--hops", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=3, help="runs per stage; the best counts")
    p.add_argument("--dump", type=Path, help="a placed flows.jsonl to read instead of the cached one")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        child(*a.child)
        return 0
    dump = (a.dump if a.dump is not None else cached_dump(a.hops)[0]).resolve()
    print(f"{dump}: best of {a.repeat}, CPU seconds in one process")
    before = 0.0
    for stage in STAGES:
        runs = []
        for _ in range(a.repeat):
            out = subprocess.run([sys.executable, "-m", "bench.report_stages", "--child", str(dump), stage],
                                 capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()
            runs.append((float(out[0]), int(out[1])))
        best, hops = min(runs)
        print(f"{stage:<9} {best:6.2f} s  {best / hops * 1e6:5.1f} µs/hop  (this stage {best - before:+.2f} s, "
              f"{hops} hops)")
        before = best
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
