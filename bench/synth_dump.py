"""A synthetic flows.jsonl of N hops, fast: ``python -m bench.synth_dump -n 1000000 OUT``.

Bodies come from the services' own code: ``tests/unit/synth.py`` simulates a pool of whole runs
(FAIL_RATE 4/11, MAX_HOPS 100, as shipped). Those runs are then stamped out with fresh flow ids
and clocks on ``--lanes`` concurrent clients, each kicking run after run, so runs interleave as
under ``hoptrace kick -c LANES``; the records are merged into end order, as the gateway writes
them. Headers are the ones httpx and uvicorn send.

Each record carries the ``run`` field the live gateway would have written, and placement records
follow the corrections, as the gateway writes them (tests/unit/synth_placement.py: every exchange
goes through the run engine as start/end events in time order, never the ground truth). That
engine pass is most of the cost: about two minutes for a million records, once (cached).
"""

from __future__ import annotations

import argparse
import heapq
import random
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from proxy_addons.kick import SEED_KICK
from proxy_addons.runs_model import Exchange, placement
from tests.unit.synth import Synth
from tests.unit.synth_placement import gateway_order

REQ_HEADERS = [["host", "127.0.0.1:8000"], ["accept", "*/*"], ["accept-encoding", "gzip, deflate"],
               ["connection", "keep-alive"], ["user-agent", "python-httpx/0.28.1"]]


Piece = tuple[Exchange, bytes]  # the exchange (clock from 0) and the record's JSON after ``client``


def template_runs(pool: int, seed: int) -> list[list[Piece]]:
    """``pool`` simulated runs, each a list of record pieces in end order, clocks from 0."""
    s = Synth(seed=seed)
    for _ in range(pool):
        s.kick(0.0, orjson.loads(SEED_KICK))
    by_kick: dict[str, list[dict]] = {}
    owner = {h.flow_id: k for k, run in s.runs.items() for h in run.hops}
    for rec in s.records:
        req, resp = rec["request"], rec["response"]
        req["headers"] = [*REQ_HEADERS, ["content-length", str(req["body"]["size"])],
                          ["content-type", "application/json"]]
        if resp is not None:
            resp.update(reason="OK" if resp["status"] == 200 else "Bad Request", headers=[
                ["date", "Thu, 26 Nov 2026 07:00:00 GMT"], ["server", "uvicorn"],
                ["content-length", str(resp["body"]["size"])], ["content-type", "application/json"]])
        by_kick.setdefault(owner[rec["flow_id"]], []).append(rec)
    return [[_pieces(r) for r in sorted(recs, key=lambda r: r["ended"])] for recs in by_kick.values()]


def _pieces(rec: dict) -> Piece:
    """(the exchange, the record's JSON after its ``client`` field): only the flow id, the clock
    and the client port change from copy to copy."""
    keys = list(rec)
    rest = {k: rec[k] for k in keys[keys.index("client") + 1:]}
    tail = orjson.dumps(rest, option=orjson.OPT_APPEND_NEWLINE)[1:]
    return Exchange.from_record(rec), b'"duration_ms":%r,' % rec["duration_ms"] + tail


def lane(templates: list[list[Piece]], rng: random.Random, t0: float, hops: int
         ) -> Iterator[tuple[float, Exchange, bytes, bytes]]:
    """One client kicking runs back to back until ``hops`` hops: (ended, exchange, the line
    before its ``run`` field, the line after it) in end order."""
    t, done = t0, 0
    while done < hops:
        recs = templates[rng.randrange(len(templates))]
        end = t
        for x, tail in recs:
            h = "%032x" % rng.getrandbits(128)
            fid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
            started, ended = t + x.started, t + x.ended
            end = max(end, ended)
            client = "127.0.0.1:%d" % rng.randint(30000, 60000)
            ex = Exchange(fid, started, x.service, x.method, x.path, x.request, x.headers, client, ended,
                          x.status, x.response, x.response_exact, x.error, x.origin, x.injected)
            head = b'{"type":"flow","v":1,"flow_id":"%s","started":%r,"ended":%r,"client":"%s",' % (
                fid.encode(), started, ended, client.encode())
            yield ended, ex, head, tail
        done += len(recs)
        t = end + rng.uniform(0.0001, 0.002)


CACHE = Path("bench/.cache")
# In a cached dump's name: bump it when what a dump holds changes (e.g. the gateway's placement
# rules: 2 = a record names where the hop is when written, left runs write placements).
VERSION = 2


def dump_path(hops: int) -> Path:
    return CACHE / f"flows-placed{VERSION}-{hops}.jsonl"  # "placed": with the gateway's run fields


def cached_dump(hops: int) -> tuple[Path, float | None]:
    """The dump of ``hops`` hops in ``CACHE``, written first if missing: (its path, the seconds
    writing it took, or None when it was there)."""
    dump = dump_path(hops)
    if dump.exists():
        return dump, None
    CACHE.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    write_dump(dump.with_suffix(".tmp"), hops)
    dump.with_suffix(".tmp").rename(dump)
    return dump, time.perf_counter() - t0


def write_dump(out: Path, hops: int, lanes: int = 50, pool: int = 4000, seed: int = 1) -> int:
    """Write about ``hops`` hops (whole runs) to ``out``; returns the flow records written."""
    templates = template_runs(pool, seed)
    rng = random.Random(seed)
    t0 = 1_790_000_000.0
    per_lane = -(-hops // lanes)
    gens = [lane(templates, random.Random(rng.getrandbits(64)), t0 + rng.uniform(0, 0.01), per_lane)
            for _ in range(lanes)]
    merged = ((ex, (head, tail)) for _, ex, head, tail in heapq.merge(*gens, key=lambda e: e[0]))
    n = 0
    with open(out, "wb", buffering=1 << 20) as f:
        for kind, what, fields in gateway_order(merged):
            if kind == "flow":
                head, tail = what
                f.write(head + b'"run":' + orjson.dumps(fields) + b"," + tail)
                n += 1
            else:
                f.write(orjson.dumps(placement(what, fields), option=orjson.OPT_APPEND_NEWLINE))
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.synth_dump", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("-n", "--hops", type=int, default=1_000_000)
    p.add_argument("--lanes", type=int, default=50, help="concurrent clients (default 50)")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    n = write_dump(a.out, a.hops, a.lanes, seed=a.seed)
    print(f"wrote {n} records ({a.out.stat().st_size / 1e6:.0f} MB) to {a.out} "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
