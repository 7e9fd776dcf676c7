"""Measure the keep-alive race: does the gateway itself break runs when the services close idle
connections quickly?

``python -m proxy_addons.race --keep-alive 1 --idle-ms 500`` runs A and B under uvicorn with
``--timeout-keep-alive 1`` (an aggressive upstream: uvicorn's default is 5 s) behind the recording
gateway, then drives (1) long nested runs at concurrency and (2) a sweep of keep-alive clients
that reuse their connection after an idle time right around the services' timeout, and counts the
5xx the gateway made. ``--idle-ms 0`` disables nothing: it means "never reuse"; use a large value
(e.g. ``--idle-ms 3600000``) for the bare mitmproxy behaviour.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from proxy_addons import load
from proxy_addons import stack as stk
from proxy_addons.kick import SEED_KICK

BARE_MS = 3_600_000  # an idle bound nobody reaches: mitmproxy's own reuse-anything behaviour


def start_idle_stack(workdir: Path, keep_alive: float, idle_ms: int, started: list[stk.Proc],
                     **settings) -> stk.Stack:
    """A and B under ``uvicorn --timeout-keep-alive`` behind the gateway; every started process
    is appended to ``started`` (the caller stops them)."""
    gp, ap, bp = stk.free_ports(3)
    gw, args = f"http://127.0.0.1:{gp}", ["--factory", "--timeout-keep-alive", f"{keep_alive:g}"]
    for name, port, partner in (("b", bp, "a"), ("a", ap, "b")):
        env = {"PARTNER_URL": f"{gw}/{partner}/", **{k.upper(): str(v) for k, v in settings.items()}}
        started.append(stk.start_uvicorn(f"service-{name}", f"services.{name}:make_app", port, env,
                                         workdir / "logs", uvicorn_args=args))
    a, b = started[-1], started[-2]
    g = stk.start_gateway(gp, {"/a/": a.meta["url"], "/b/": b.meta["url"]}, workdir / "logs",
                          session=workdir / "session",
                          sets={"hoptrace_upstream_idle_ms": idle_ms, "hoptrace_har": "false"},
                          script=load.pin_addon_script(workdir))
    started.append(g)
    return stk.Stack(a, b, g, workdir / "session")


async def sweep(url: str, clients: int, requests: int, gap: tuple[float, float]) -> Counter:
    """``clients`` keep-alive connections, each sending ``requests`` kicks with an idle gap drawn
    from ``gap`` seconds in between: reuse right around the upstream's idle timeout."""
    statuses: Counter = Counter()

    async def one() -> None:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1), trust_env=False,
                                     timeout=60) as client:
            for _ in range(requests):
                try:
                    r = await client.post(url, content=SEED_KICK, headers={"content-type": "application/json"})
                    statuses[r.status_code] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                await asyncio.sleep(random.uniform(*gap))

    await asyncio.gather(*(one() for _ in range(clients)))
    return statuses


def gateway_5xx(session: Path) -> tuple[list[str], int]:
    """(the gateway-made 5xx, flows that got a fresh upstream connection) in a session."""
    books = load.count(session, load.Books())
    return [f for f in books.fivexx if f.startswith("gateway")], books.reconnects


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m proxy_addons.race", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keep-alive", type=float, default=1.0, help="services' uvicorn --timeout-keep-alive")
    p.add_argument("--idle-ms", type=int, default=500, help=f"gateway hoptrace_upstream_idle_ms ({BARE_MS}: bare)")
    p.add_argument("--runs", type=int, default=2000, help="nested runs (FAIL_RATE 0.05, MAX_HOPS 20)")
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--clients", type=int, default=50, help="sweep: keep-alive clients")
    p.add_argument("--requests", type=int, default=15, help="sweep: kicks per client")
    p.add_argument("--time-limit", type=float, default=300)
    a = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="hoptrace-race-"))
    started: list[stk.Proc] = []
    try:
        st = start_idle_stack(workdir, a.keep_alive, a.idle_ms, started, fail_rate=0.05, max_hops=20)
        t0 = time.monotonic()
        kicks = asyncio.run(load.drive(st.url + "/a/", a.runs, a.concurrency, a.time_limit))
        nested = gateway_5xx(st.session)
        print(f"nested runs: {len(kicks)} runs in {time.monotonic() - t0:.0f} s, "
              f"{len(nested[0])} gateway-made 5xx, {nested[1]} fresh upstream connections")
        ka = a.keep_alive
        statuses = asyncio.run(sweep(st.url + "/a/", a.clients, a.requests, (ka * 0.98, ka * 1.03)))
        total = gateway_5xx(st.session)
        print(f"sweep: {sum(statuses.values())} kicks {dict(statuses)}, "
              f"{len(total[0]) - len(nested[0])} gateway-made 5xx")
        for line in total[0][:5]:
            print("  ", line)
        if load.script_reloads(st.gateway):
            print("INVALID: the gateway reloaded its addon script mid-run (gateway.py was edited)")
    finally:
        for proc in reversed(started):
            proc.stop()
    print(f"dumps {workdir / 'session'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
