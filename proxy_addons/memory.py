"""Is the gateway's memory flat? Its RSS while 100,000 flows go through the real stack.

``python -m proxy_addons.memory --flows 100000 --tool mitmdump`` (and ``--tool mitmweb``, with
the retention addon's ``hoptrace_view_max``) starts A, B and the gateway, kicks runs until the
services have served that many hops (or the time limit), samples the gateway process' RSS from
/proc, and compares the largest RSS after warm-up with the RSS at the end of warm-up (warm-up:
the first ``--warmup`` share of the flows, enough to fill the view). The budget is +50 MB for
mitmdump, +100 MB for mitmweb.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from proxy_addons import load
from proxy_addons import stack as stk

BUDGET_MB = {"mitmdump": 50, "mitmweb": 100}


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Samples:
    points: list[tuple[float, int, float]] = field(default_factory=list)  # (seconds, flows, RSS MB)

    def growth(self, warmup_flows: int) -> tuple[float, float, float]:
        """(RSS at the end of warm-up, peak RSS after it, the difference), in MB."""
        after = [p for p in self.points if p[1] >= warmup_flows]
        if not after:
            raise RuntimeError("the run ended before warm-up did: raise --flows or --time-limit")
        base = after[0][2]
        peak = max(p[2] for p in after)
        return base, peak, peak - base


def sample(st: stk.Stack, out: Samples, stop: threading.Event, every: float) -> None:
    t0 = time.monotonic()
    while not stop.wait(every):
        try:
            flows = sum(load.served_counts(st).values())
            out.points.append((time.monotonic() - t0, flows, rss_mb(st.gateway.pid)))
        except Exception:  # a sample lost under load is not worth stopping the measurement for
            continue


def measure(tool: str, flows: int, view_max: int, time_limit: float, concurrency: int,
            workdir: Path, warmup: float, **settings) -> tuple[Samples, int]:
    web = tool == "mitmweb"
    sets = {"hoptrace_har": "false", "hoptrace_view_max": view_max}
    st = stk.start_stack(session=workdir / tool, log_dir=workdir / f"logs-{tool}", web=web,
                         script=load.pin_addon_script(workdir),
                         web_password=secrets.token_urlsafe(12), gateway_sets=sets, **settings)
    samples, stop = Samples(), threading.Event()
    sampler = threading.Thread(target=sample, args=(st, samples, stop, 1.0), daemon=True)
    sampler.start()
    deadline = time.monotonic() + time_limit
    try:
        served = 0
        while served < flows and time.monotonic() < deadline:
            asyncio.run(load.drive(st.url + "/a/", 500, concurrency, deadline - time.monotonic()))
            served = sum(load.served_counts(st).values())
        stop.set()
        sampler.join(10)
        samples.points.append((samples.points[-1][0] if samples.points else 0, served, rss_mb(st.gateway.pid)))
        if load.script_reloads(st.gateway):
            raise RuntimeError("the gateway reloaded its addon script mid-run (gateway.py was edited)")
        return samples, served
    finally:
        stop.set()
        st.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m proxy_addons.memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tool", choices=sorted(BUDGET_MB), default="mitmdump")
    p.add_argument("--flows", type=int, default=100_000, help="hops to send through (default 100000)")
    p.add_argument("--view-max", type=int, default=5000, help="hoptrace_view_max (mitmweb; 0 keeps all)")
    p.add_argument("--warmup", type=float, default=0.2, help="share of the flows that is warm-up")
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--time-limit", type=float, default=1200)
    p.add_argument("--workdir", type=Path, default=None)
    a = p.parse_args(argv)
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="hoptrace-memory-"))
    # mostly clean runs of up to 20 hops, a few broken ones: what retention has to choose between
    samples, served = measure(a.tool, a.flows, a.view_max, a.time_limit, a.concurrency, workdir,
                              a.warmup, fail_rate=0.05, max_hops=20)
    base, peak, grew = samples.growth(int(served * a.warmup))
    step = max(1, len(samples.points) // 10)
    for t, n, mb in samples.points[::step] + samples.points[-1:]:
        print(f"  {t:6.0f} s  {n:7d} flows  RSS {mb:7.1f} MB")
    budget = BUDGET_MB[a.tool]
    ok = grew <= budget
    print(f"{a.tool} (view max {a.view_max}): {served} flows; RSS {base:.0f} MB after warm-up, peak "
          f"{peak:.0f} MB: +{grew:.0f} MB (budget +{budget} MB) {'OK' if ok else 'OVER BUDGET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
