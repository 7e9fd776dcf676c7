"""CPU per hop of the gateway's addons, in one process, without the network.

``python -m bench.addons_cpu`` loads an addon script's ``addons`` into a mitmproxy master
(``mitmproxy.test.taddons``) and drives runs of MAX_HOPS nested hops through mitmproxy's own
hook dispatch (``request`` hooks down the nest, ``response`` hooks back up), with the bodies and
headers the real services exchange. It reports CPU µs per hop for the bare script (routing only)
and the full gateway: their difference is what recording and live diagnosis cost the proxy's
event loop. On a shared machine this is steadier than wall-clock figures: it counts process CPU
time (``time.process_time``), not the time other processes take.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import statistics
import tempfile
import time

from mitmproxy import hooks
from mitmproxy.proxy.layers.http import HttpRequestHook, HttpResponseHook
from mitmproxy.test import taddons, tflow, tutils

from services.payload import Payload

HEADERS = [("host", "127.0.0.1:8000"), ("accept", "*/*"), ("accept-encoding", "gzip, deflate"),
           ("connection", "keep-alive"), ("user-agent", "python-httpx/0.28.1"),
           ("content-type", "application/json")]


def payloads(max_hops: int) -> list[dict]:
    """The payload each hop of a ``max_hops`` run receives (A appends a digit, B sets avg/max/min)."""
    p = {"name": "payload", "digits": [], "avg": None, "max": None, "min": None}
    out = []
    for hop in range(1, max_hops + 1):
        out.append(json.loads(json.dumps(p)))
        if hop % 2:
            p["digits"].append(hop * 7 % 101)
        else:
            d = p["digits"]
            p.update(avg=sum(d) / len(d), max=max(d), min=min(d))
    return out


def make_flow(path: str, body: dict, t0: float, conns: dict | None = None, key=None):
    """A flow as the gateway sees it; ``conns`` keeps one client/server connection per path and
    nesting level across runs, as keep-alive does."""
    raw = json.dumps(body).encode()
    req = tutils.treq(method=b"POST", path=path.encode(), host="127.0.0.1", port=8000,
                      headers=[(k.encode(), v.encode()) for k, v in HEADERS] + [(b"content-length", str(len(raw)).encode())],
                      content=raw, timestamp_start=t0, timestamp_end=t0)
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
                                       (b"content-type", b"application/json")])


async def drive(script: str, runs: int, max_hops: int, workdir: str) -> float:
    mod = importlib.import_module(script)
    importlib.reload(mod)  # fresh addon instances
    states = payloads(max_hops)
    final = {"outcome": "max_hops", "stopped_by": "a" if max_hops % 2 else "b", "status": 200,
             "hops": max_hops, "iteration": (max_hops + 1) // 2, "reason": f"MAX_HOPS={max_hops} reached",
             "payload": Payload.model_validate(states[-1]).dump()}
    with taddons.context(*mod.addons) as tctx:
        opts = {"routes": "/a/=http://127.0.0.1:8001,/b/=http://127.0.0.1:8002"}
        if "hoptrace_dumps" in tctx.options:
            opts.update(hoptrace_dumps=workdir, hoptrace_har=False)
        tctx.options.update(**opts)
        tctx.master.addons.trigger(hooks.RunningHook())
        am = tctx.master.addons
        conns: dict = {}
        cpu0 = time.process_time()
        t = time.time()
        for _ in range(runs):
            nest = []
            for hop, body in enumerate(states, 1):
                f = make_flow("/a/" if hop % 2 else "/b/", body, t, conns, hop)
                t += 0.0001
                await am.handle_lifecycle(HttpRequestHook(f))
                nest.append(f)
            for f in reversed(nest):
                answer(f, final, t)
                t += 0.0001
                await am.handle_lifecycle(HttpResponseHook(f))
            await asyncio.sleep(0)  # what the addons deferred to the next loop iteration
        cpu = time.process_time() - cpu0
        tctx.master.addons.trigger(hooks.DoneHook())
    return cpu / (runs * max_hops) * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.addons_cpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--max-hops", type=int, default=10)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args(argv)
    # the flow set-up (tflow) is counted in both scripts alike and cancels out in the difference
    res: dict[str, list[float]] = {"proxy_addons.gateway_bare": [], "proxy_addons.gateway": []}
    for _ in range(a.repeat):
        for script in res:
            with tempfile.TemporaryDirectory() as tmp:
                res[script].append(asyncio.run(drive(script, a.runs, a.max_hops, tmp)))
    bare, full = (statistics.median(v) for v in res.values())
    print(f"CPU per hop (median of {a.repeat}): bare {bare:.0f} µs, hoptrace {full:.0f} µs, "
          f"hoptrace adds {full - bare:.0f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
