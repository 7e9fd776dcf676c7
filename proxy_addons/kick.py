"""`hoptrace kick`: the seed's curl kick as a command, N times at concurrency C."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:  # httpx is imported where a kick is sent: other commands start without it
    import httpx

# The seed's kick body, byte for byte (its stray "d;5Digits" field included).
SEED_KICK = '{"name": "payload", "d;5Digits": [], "avg": null, "max": null, "min": null}'


@dataclass(slots=True)
class KickResult:
    status: int | None
    body: object
    seconds: float
    error: str | None = None

    def ending(self) -> str:
        """How the run ended, in a few words, from the kick's answer alone."""
        if self.error:
            return f"error ({self.error})"
        b = self.body if isinstance(self.body, dict) else {}
        if self.status == 200 and b.get("outcome") == "rejected":
            return f"rejected by {b.get('stopped_by')} ({b.get('status')})"
        if self.status == 200 and b.get("outcome") == "max_hops":
            return "max_hops"
        if self.status is not None and 400 <= self.status < 500:
            return f"rejected by {b.get('service', '?')} ({self.status})"
        return f"HTTP {self.status}"


async def kick_once(client: httpx.AsyncClient, url: str, body: str) -> KickResult:
    import httpx

    t0 = time.perf_counter()
    try:
        resp = await client.post(url, content=body, headers={"Content-Type": "application/json"})
    except httpx.HTTPError as exc:
        return KickResult(None, None, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}")
    try:
        parsed = resp.json()
    except ValueError:
        parsed = resp.text
    return KickResult(resp.status_code, parsed, time.perf_counter() - t0)


async def kick_many(url: str, n: int, concurrency: int, body: str = SEED_KICK,
                    timeout: float = 120.0, progress: bool = True) -> list[KickResult]:
    """Send ``n`` kicks, at most ``concurrency`` at a time, over one shared client."""
    import httpx

    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    results: list[KickResult] = []
    with Progress(TextColumn("kicks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=not progress, transient=True) as bar:
        task = bar.add_task("kick", total=n)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:
            async def one() -> None:
                async with sem:
                    results.append(await kick_once(client, url, body))
                bar.advance(task)
            await asyncio.gather(*(one() for _ in range(n)))
    return results


def summary_line(results: list[KickResult]) -> str:
    counts = Counter(r.ending() for r in results)
    times = sorted(r.seconds for r in results)
    p50 = times[len(times) // 2] * 1000 if times else 0.0
    parts = ", ".join(f"{c} {k}" for k, c in counts.most_common())
    return f"{len(results)} runs: {parts}; median kick {p50:.1f} ms"


def validate_body(body: str) -> str:
    try:
        json.loads(body)
    except ValueError as exc:
        raise SystemExit(f"--body is not JSON: {exc}") from None
    return body
