"""Load through the real stack, then balance the books.

``python -m proxy_addons.load -n 10000 -c 50 --time-limit 900`` starts A, B and the recording
gateway on free loopback ports, sends N kicks at concurrency C (it stops by itself: at N, or when
the wall-time limit is reached, whatever comes first), then counts the same hops three ways —
what the services say they served, the records in flows.jsonl, the flows in flows.mitm — and
every 5xx by who made it. Exit status 0 only when nothing was lost and nothing broke.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from proxy_addons import stack as stk
from proxy_addons.dumpio import ReadReport, read_records
from proxy_addons.kick import SEED_KICK, KickResult

KICK_HEADER = "x-hoptrace-load"  # the kick's number, so a dump can be matched to what the client saw


@dataclass
class Kick(KickResult):
    number: int = 0
    answered_at: float = 0.0  # unix time the whole answer had arrived (0: no answer)


async def drive(url: str, n: int, concurrency: int, time_limit: float, body: str = SEED_KICK,
                on_answer: Callable[[Kick], None] | None = None) -> list[Kick]:
    """Send up to ``n`` kicks, ``concurrency`` at a time; start no new one after ``time_limit``
    seconds. Each kick carries its number in the ``x-hoptrace-load`` header."""
    deadline = time.monotonic() + time_limit
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    numbers = iter(range(n))
    kicks: list[Kick] = []

    async def worker(client: httpx.AsyncClient) -> None:
        for i in numbers:
            if time.monotonic() >= deadline:
                return
            t0 = time.perf_counter()
            headers = {"content-type": "application/json", KICK_HEADER: str(i)}
            try:
                resp = await client.post(url, content=body, headers=headers)
                try:
                    parsed = resp.json()
                except ValueError:
                    parsed = resp.text
                kick = Kick(resp.status_code, parsed, time.perf_counter() - t0, None, i, time.time())
            except httpx.HTTPError as exc:
                kick = Kick(None, None, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}", i)
            kicks.append(kick)
            if on_answer is not None:
                on_answer(kick)

    timeout = httpx.Timeout(max(time_limit, 1.0) + 60)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return kicks


@dataclass
class Books:
    """The same hops counted three ways, and every 5xx by who made it."""

    kicks: int = 0
    answered: int = 0
    seconds: float = 0.0
    endings: dict[str, int] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)
    served_source: str = ""
    counters: dict[str, int] = field(default_factory=dict)  # the services' /health counters
    jsonl: int = 0
    mitm: int = 0
    skipped: list[str] = field(default_factory=list)
    ids_differ: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    fivexx: list[str] = field(default_factory=list)  # "origin status service: message"
    reconnects: int = 0  # requests the gateway gave a fresh upstream connection (upstream.py)
    abandoned: int = 0  # hops whose caller hung up first (its timeout): no 5xx reached anyone
    reloads: int = 0  # times mitmproxy reloaded the addon script mid-run (its file was edited)

    @property
    def hops_served(self) -> int:
        return sum(self.served.values())

    def problems(self) -> list[str]:
        out = []
        if self.counters and self.counters != self.served:
            out.append(f"the services' logs ({self.served}) and counters ({self.counters}) disagree")
        if not self.hops_served == self.jsonl == self.mitm:
            out.append(f"lost hops: served {self.hops_served}, flows.jsonl {self.jsonl}, flows.mitm {self.mitm}")
        if self.ids_differ:
            out.append(f"{self.ids_differ} flow ids are in only one of flows.jsonl / flows.mitm")
        if self.skipped:
            out.append(f"unreadable dump parts: {self.skipped[:3]}")
        if self.answered != self.kicks:
            out.append(f"{self.kicks - self.answered} kicks got no answer")
        if self.fivexx:
            out.append(f"{len(self.fivexx)} 5xx nobody injected: {self.fivexx[:3]}")
        if self.abandoned:
            out.append(f"{self.abandoned} hops abandoned by their caller (a timeout: overloaded?)")
        if self.reloads:
            out.append(f"the gateway reloaded its addon script {self.reloads}x mid-run: measure again")
        return out

    def summary(self) -> str:
        rate = self.kicks / self.seconds if self.seconds else 0.0
        lines = [
            f"runs      {self.kicks} kicked, {self.answered} answered in {self.seconds:.1f} s ({rate:.0f} runs/s)",
            f"endings   {', '.join(f'{v} {k}' for k, v in sorted(self.endings.items(), key=lambda kv: -kv[1]))}",
            f"hops      served {self.hops_served} ({self.served_source}: {self.served}) · "
            f"flows.jsonl {self.jsonl} · flows.mitm {self.mitm}",
            f"statuses  {dict(sorted(self.statuses.items()))} · 5xx {len(self.fivexx)} · "
            f"abandoned {self.abandoned} · fresh upstream connections {self.reconnects}",
        ]
        problems = self.problems()
        lines.append("verdict   " + ("OK: zero loss, no unexplained 5xx" if not problems else "; ".join(problems)))
        return "\n".join(lines)


def served_counts(st: stk.Stack) -> dict[str, int]:
    """Hops each service says it handled (its own counter, GET /health)."""
    out = {}
    for name, proc in (("a", st.a), ("b", st.b)):
        out[name] = httpx.get(proc.meta["url"] + "/health", timeout=10, trust_env=False).json()["served"]
    return out


def script_reloads(gateway: stk.Proc) -> int:
    """mitmproxy reloads ``-s`` scripts whose file changes; a run measured across a reload (or a
    failed one, which leaves the gateway without addons) measures something else."""
    if not gateway.log_path or not gateway.log_path.exists():
        return 0
    text = gateway.log_path.read_text(errors="replace")
    return max(text.count("Loading script") - 1, 0) + text.count("error in script")


def served_from_logs(st: stk.Stack) -> dict[str, int] | None:
    """Hops each service served, from its own structured log: the JSON ``access`` lines of
    ``POST /a/`` (``/b/``), which uvicorn writes as the answer starts. None without such logs."""
    out = {}
    for name, proc in (("a", st.a), ("b", st.b)):
        if not proc.log_path or not proc.log_path.exists():
            return None
        seen, n = False, 0
        with open(proc.log_path, errors="replace") as f:
            for line in f:
                if '"access"' not in line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("event") == "access":
                    seen = True
                    n += rec.get("method") == "POST" and rec.get("path") == f"/{name}/"
        if not seen:
            return None
        out[name] = n
    return out


def count(session: Path, books: Books) -> Books:
    """Fill ``books`` from the session's flows.jsonl and flows.mitm."""
    jr, mr = ReadReport(), ReadReport()
    statuses: Counter[int] = Counter()
    jsonl_ids = set()
    for rec in read_records(session / "flows.jsonl", jr):
        jsonl_ids.add(rec["flow_id"])
        statuses[rec["status"]] += 1
        if rec.get("upstream_reconnect"):
            books.reconnects += 1
        msg = (rec.get("error") or {}).get("message") or (rec.get("response") or {}).get("reason")
        if (rec.get("error") or {}).get("abandoned"):  # the caller hung up: nobody got a 5xx
            books.abandoned += 1
        elif (rec["status"] or 0) >= 500:
            books.fivexx.append(f"{rec.get('origin')} {rec['status']} {rec.get('service')}: {msg}")
    mitm_ids = {rec["flow_id"] for rec in read_records(session / "flows.mitm", mr)}
    books.jsonl, books.mitm = len(jsonl_ids), len(mitm_ids)
    books.ids_differ = len(jsonl_ids ^ mitm_ids)
    books.skipped = [f"flows.jsonl {s}" for s in jr.skipped] + [f"flows.mitm {s}" for s in mr.skipped]
    books.statuses = dict(statuses)
    return books


def books_of(kicks: list[Kick], seconds: float) -> Books:
    return Books(kicks=len(kicks), answered=sum(k.error is None for k in kicks), seconds=seconds,
                 endings=dict(Counter(k.ending() for k in kicks)))


def pin_addon_script(workdir: Path) -> Path:
    """A copy of gateway.py in ``workdir``, for a gateway to load (``script=``): mitmproxy reloads
    an ``-s`` script whose file changes, and an edit to the working tree mid-measurement (a failed
    reload leaves the gateway without addons) would spoil a long run."""
    workdir.mkdir(parents=True, exist_ok=True)
    copy = workdir / "gateway.py"
    copy.write_bytes(stk.ADDON_SCRIPT.read_bytes())
    return copy


def run_load(n: int, concurrency: int, time_limit: float, workdir: Path,
             gateway_sets: dict | None = None, **settings) -> Books:
    """Start the stack in ``workdir``, drive it, count, stop it."""
    st = stk.start_stack(session=workdir / "session", log_dir=workdir / "logs",
                         script=pin_addon_script(workdir),
                         gateway_sets={"hoptrace_har": "false", **(gateway_sets or {})}, **settings)
    try:
        return measure(st, n, concurrency, time_limit)
    finally:
        st.stop()


def measure(st: stk.Stack, n: int, concurrency: int, time_limit: float) -> Books:
    """Drive a running stack, then count. Every answered hop was flushed before its answer left,
    so once the last kick is answered the files are complete: no need to stop the gateway."""
    t0 = time.monotonic()
    kicks = asyncio.run(drive(st.url + "/a/", n, concurrency, time_limit))
    books = books_of(kicks, time.monotonic() - t0)
    books.counters = served_counts(st)
    logged = served_from_logs(st)
    if logged is None:
        books.served, books.served_source = books.counters, "services' /health counters"
    else:
        books.served, books.served_source = logged, "services' access logs, = their counters"
    books.reloads = script_reloads(st.gateway)
    return count(st.session, books)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m proxy_addons.load", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--runs", type=int, default=1000, help="runs to kick (default 1000)")
    p.add_argument("-c", "--concurrency", type=int, default=50, help="kicks in flight (default 50)")
    p.add_argument("--time-limit", type=float, default=300, help="start no kick after this many seconds")
    p.add_argument("--workdir", type=Path, default=None, help="where the session goes (default: a temp dir)")
    p.add_argument("--max-hops", type=int, default=None, help="services' MAX_HOPS")
    p.add_argument("--fail-rate", type=float, default=None, help="services' FAIL_RATE")
    p.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE", help="gateway option")
    p.add_argument("--json", action="store_true", help="print the books as JSON")
    a = p.parse_args(argv)
    if a.runs < 1 or a.concurrency < 1 or a.time_limit <= 0:
        p.error("--runs and --concurrency must be >= 1, --time-limit > 0")
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="hoptrace-load-"))
    books = run_load(a.runs, a.concurrency, a.time_limit, workdir,
                     gateway_sets=dict(s.split("=", 1) for s in a.set),
                     max_hops=a.max_hops, fail_rate=a.fail_rate)
    print(json.dumps(asdict(books), indent=2) if a.json else books.summary())
    print(f"dumps     {workdir / 'session'}")
    return 1 if books.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
