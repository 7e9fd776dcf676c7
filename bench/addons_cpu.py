"""CPU per hop of the gateway's addons, in one process, without the network.

``python -m bench.addons_cpu`` loads an addon script's ``addons`` into a master with mitmdump's
addon chain and drives runs of MAX_HOPS nested hops through mitmproxy's own hook dispatch (each
hop's four events, ``requestheaders`` and ``request`` down the nest, ``responseheaders`` and
``response`` back up, each followed by the ``update`` mitmproxy sends), with the bodies and
headers the real services exchange (since the sixth stop also their W3C trace headers and the
payload's ``sequence``: the gateway then places every hop past the second by its trace, as it
does live; before, every hop went through the lineage path). It reports CPU µs per hop for the
bare script (routing only) and the full gateway: their difference is what recording and live
diagnosis cost the proxy's event loop. On a shared machine this is steadier than wall-clock
figures: it counts process CPU time (``time.process_time``), not the time other processes take.

It also splits that time by where it runs: inside the ``request`` hooks and the ``response``
hooks of the inner hops and of the kick (a hop's answer waits on these), and on the loop
iterations after them (``deferred``: what the addons scheduled with ``call_soon``, which the
real gateway runs between network events, while the services work). The harness lets the loop
run once after every hook, as the proxy does between two events.

``--concurrency N`` keeps N runs in flight, each on its own connections, their requests and then
their answers interleaved hop by hop; their kicks are identical (the seed's payload), so the
gateway tells the twins apart by their answers, as it does under concurrent clients.

Until the twelfth stop the master held only mitmproxy's ``Core`` and the script, and sent only
``request`` and ``response``: it missed what mitmproxy's dispatch costs per addon of a script on
each of a hop's eight events (four of them ``update``), which a profile of the real gateway
pointed at (docs/performance-log.md, "Twelfth stop").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import statistics
import tempfile
import time

from mitmproxy import hooks, options
from mitmproxy.addons.termlog import TermLog
from mitmproxy.proxy.layers.http import (
    HttpRequestHeadersHook,
    HttpRequestHook,
    HttpResponseHeadersHook,
    HttpResponseHook,
)
from mitmproxy.test import tflow, tutils
from mitmproxy.tools.dump import DumpMaster
from rich.table import Table

from bench.machine import console
from services.payload import Payload


class Script:
    """An addon script as mitmdump holds it: the module nested under mitmproxy's script loader,
    its addons under the module (ScriptLoader → Script → module → ``addons``), so mitmproxy walks
    down to them on every event and dispatches each hook through one ``safecall``, as in the
    real gateway."""

    def __init__(self) -> None:
        self.addons: list = []


@contextlib.contextmanager
def mitmdump_master(module):
    """A master with mitmdump's addon chain (``DumpMaster``: every default addon, the dumper, …),
    configured as mitmdump starts (its CA from mitmproxy's usual ``~/.mitmproxy``, made there on
    first use as the real gateway makes it), and the script ``module`` loaded where ``-s`` puts
    it, the way mitmproxy's script loader loads one. Nothing listens: the running hook goes to
    the script alone (the proxy server would open its port on it). Log lines go to a TermLog
    writing to /dev/null, as the real one writes them to its terminal, with the log levels
    mitmdump sets (the root logger at DEBUG: every record reaches mitmproxy's handlers)."""
    root, before = logging.getLogger(), logging.getLogger().level
    with open(os.devnull, "w") as sink:
        root.setLevel(logging.DEBUG)  # as mitmproxy.tools.main does
        master = DumpMaster(options.Options(), loop=asyncio.get_running_loop(), with_termlog=False)
        term = TermLog(out=sink)
        master.addons.add(term)
        master.addons.trigger(hooks.ConfigureHook(set(master.options.keys())))
        script = Script()
        master.addons.register(script)
        master.addons.get("scriptloader").addons.append(script)
        master.addons.register(module)
        script.addons.append(module)
        master.addons.invoke_addon_sync(module, hooks.ConfigureHook(set(master.options.keys())))
        try:
            yield master
            master.addons.invoke_addon_sync(module, hooks.DoneHook())
        finally:
            term.uninstall()
            master._legacy_log_events.uninstall()  # as Master.run does at its end
            root.setLevel(before)


SPLIT = ("request", "response", "kick response", "deferred")  # where a hop's CPU is spent
HEADERS = [("host", "127.0.0.1:8000"), ("accept", "*/*"), ("accept-encoding", "gzip, deflate"),
           ("connection", "keep-alive"), ("user-agent", "python-httpx/0.28.1"),
           ("content-type", "application/json")]


def payloads(max_hops: int, salt: int = 0) -> list[dict]:
    """The payload each hop of a ``max_hops`` run receives, as the services send it: the seed's
    kick (with its unknown key), then A appends a digit, B sets avg/max/min, and each records
    itself in ``sequence`` (services/payload.py, on by default). ``salt`` varies the digits from
    run to run (A draws them at random), so concurrent runs are twins only by their kick."""
    p: dict = {"name": "payload", "d;5Digits": [], "avg": None, "max": None, "min": None}
    out = [json.loads(json.dumps(p))]
    p = {"name": "payload", "digits": [], "avg": None, "max": None, "min": None, "sequence": {}, "d;5Digits": []}
    for hop in range(1, max_hops):
        iteration, service = (hop + 1) // 2, "a" if hop % 2 else "b"
        if service == "a":
            p["digits"].append((hop * 7 + salt * 13) % 101)
        else:
            d = p["digits"]
            p.update(avg=sum(d) / len(d), max=max(d), min=min(d))
        p["sequence"][str(iteration)] = service
        out.append(json.loads(json.dumps(p)))
    return out


def make_flow(path: str, body: dict, t0: float, conns: dict | None = None, key=None,
              trace: str | None = None):
    """A flow as the gateway sees it; ``conns`` keeps one client/server connection per path and
    nesting level across runs, as keep-alive does; ``trace``: the W3C ``traceparent`` the
    services' OpenTelemetry client sends on every inner hop (services/tracing.py)."""
    raw = json.dumps(body).encode()
    headers = [(k.encode(), v.encode()) for k, v in HEADERS] + [(b"content-length", str(len(raw)).encode())]
    if trace is not None:
        headers.append((b"traceparent", trace.encode()))
    req = tutils.treq(method=b"POST", path=path.encode(), host="127.0.0.1", port=8000,
                      headers=headers, content=raw, timestamp_start=t0, timestamp_end=t0)
    f = tflow.tflow(req=req)
    f.client_conn.peername = ("127.0.0.1", 40000 + int(t0 * 1000) % 20000)
    if conns is not None:
        f.client_conn, f.server_conn = conns.setdefault(key, (f.client_conn, f.server_conn))
    return f


def answer(f, body: dict, t1: float) -> None:
    raw = json.dumps(body).encode()
    f.response = tutils.tresp(status_code=200, reason=b"OK", content=raw, timestamp_start=t1, timestamp_end=t1,
                              headers=[(b"date", b"Thu, 26 Nov 2026 07:00:00 GMT"), (b"server", b"uvicorn"),
                                       (b"content-length", str(len(raw)).encode()),
                                       (b"content-type", b"application/json"),
                                       (b"traceresponse", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-03"),
                                       (b"access-control-expose-headers", b"traceresponse")])


async def drive(script: str, runs: int, max_hops: int, workdir: str, concurrency: int = 1) -> dict:
    """Drive ``runs`` runs through the script's addons, ``concurrency`` at a time: each wave's
    requests go down hop by hop, one run after the other, then the answers come back up the
    same way, each run on its own connections (as concurrent clients have). Their kicks are
    identical (the seed's payload), so concurrent runs are twins the gateway places by answers."""
    mod = importlib.import_module(script)
    importlib.reload(mod)  # fresh addon instances
    with mitmdump_master(mod) as master:
        opts = {"routes": "/a/=http://127.0.0.1:8001,/b/=http://127.0.0.1:8002", "flow_detail": 0}
        if "hoptrace_dumps" in master.options:
            opts.update(hoptrace_dumps=workdir, hoptrace_har=False)
        master.options.update(**opts)
        master.addons.invoke_addon_sync(mod, hooks.RunningHook())
        am = master.addons
        conns: dict = {}
        split = dict.fromkeys(SPLIT, 0.0)
        clock = time.process_time
        cpu0 = clock()
        t = time.time()
        for first in range(0, runs, concurrency):
            wave = range(first, min(first + concurrency, runs))
            states = {run: payloads(max_hops, run) for run in wave}
            answers = {run: final_answer(states[run], max_hops) for run in wave}
            nests: dict[int, list] = {run: [] for run in wave}
            for hop in range(1, max_hops + 1):
                for run in wave:
                    trace = f"00-{run + 1:032x}-{hop:016x}-03" if hop > 1 else None  # not all zeros
                    f = make_flow("/a/" if hop % 2 else "/b/", states[run][hop - 1], t, conns,
                                  (run - first, hop), trace)
                    t += 0.0001
                    c0 = clock()
                    await am.handle_lifecycle(HttpRequestHeadersHook(f))
                    await am.handle_lifecycle(HttpRequestHook(f))
                    c1 = clock()
                    await asyncio.sleep(0)  # what the hooks deferred to the next loop iteration
                    split["request"] += c1 - c0
                    split["deferred"] += clock() - c1
                    nests[run].append(f)
            for depth in reversed(range(max_hops)):
                for run in wave:
                    f = nests[run][depth]
                    answer(f, answers[run], t)
                    t += 0.0001
                    c0 = clock()
                    await am.handle_lifecycle(HttpResponseHeadersHook(f))
                    await am.handle_lifecycle(HttpResponseHook(f))
                    c1 = clock()
                    await asyncio.sleep(0)
                    split["kick response" if depth == 0 else "response"] += c1 - c0
                    split["deferred"] += clock() - c1
        cpu = clock() - cpu0
    hops = runs * max_hops
    return {"total": cpu / hops * 1e6, **{k: v / hops * 1e6 for k, v in split.items()}}


def final_answer(states: list[dict], max_hops: int) -> dict:
    """What every hop of a run that reached MAX_HOPS answers (each passes its partner's up)."""
    return {"outcome": "max_hops", "stopped_by": "a" if max_hops % 2 else "b", "status": 200,
            "hops": max_hops, "iteration": (max_hops + 1) // 2, "reason": f"MAX_HOPS={max_hops} reached",
            "payload": Payload.model_validate(states[-1]).dump()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.addons_cpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--max-hops", type=int, default=10)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=1,
                   help="runs in flight at once (identical kicks: twins the gateway tells apart by answers)")
    p.add_argument("--one", metavar="SCRIPT",
                   help="drive only this script module (e.g. proxy_addons.gateway), once after a warm-up "
                        "of 20 runs, and print its CPU a hop: for instruction counts under valgrind")
    a = p.parse_args(argv)
    if a.concurrency < 1 or a.runs < 1 or a.max_hops < 1:
        p.error("--runs, --max-hops and --concurrency must be at least 1")
    if a.one:
        return one(a.one, a.runs, a.max_hops, a.concurrency)
    # the flow set-up (tflow) is counted in both scripts alike and cancels out in the difference
    res: dict[str, list[dict]] = {"proxy_addons.gateway_bare": [], "proxy_addons.gateway": []}
    for _ in range(a.repeat):
        for script, got in res.items():
            with tempfile.TemporaryDirectory() as tmp:
                got.append(asyncio.run(drive(script, a.runs, a.max_hops, tmp, a.concurrency)))
    bare, full = ({k: statistics.median(r[k] for r in v) for k in ("total", *SPLIT)} for v in res.values())
    print(f"CPU per hop (median of {a.repeat}, concurrency {a.concurrency}): bare {bare['total']:.0f} µs, hoptrace {full['total']:.0f} µs, "
          f"hoptrace adds {full['total'] - bare['total']:.0f} µs")
    table = Table("µs per hop", "bare", "hoptrace", "added", title="CPU by where it runs")
    for k in SPLIT:
        table.add_row(k, f"{bare[k]:.0f}", f"{full[k]:.0f}", f"{full[k] - bare[k]:+.0f}")
    waited = sum(full[k] - bare[k] for k in SPLIT if k != "deferred")
    console().print(table)
    print(f"added inside the hooks (a hop's answer waits on it): {waited:.0f} µs per hop; "
          f"deferred: {full['deferred'] - bare['deferred']:.0f} µs per hop")
    return 0


def one(script: str, runs: int, max_hops: int, concurrency: int) -> int:
    """``--one``: under ``valgrind --tool=callgrind``, the difference between the instructions of
    two such processes (e.g. 150 and 50 runs) is what the runs between cost, without the start."""
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(drive(script, 20, max_hops, os.path.join(tmp, "warm-up"), concurrency))
        got = asyncio.run(drive(script, runs, max_hops, tmp, concurrency))
    print(f"{script}: {got['total']:.0f} µs CPU a hop over {runs} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
