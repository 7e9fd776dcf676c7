"""`hoptrace replay PATH --run R [--from-hop H] [--gateway URL]`: send again the payload hop H of
run R carried (default: the kick) to the same service path, through the gateway.

The request carries ``x-hoptrace-replay-of: R/H``; the gateway puts ``replay_of`` into the
replayed hop's record and the diagnosis into the new run (runs.jsonl, the report), so the new run
is linked to the original. The services do not forward the header: only the replayed request has
it. With the services on the same ``SEED``, the replay of a kick reproduces the original run hop
for hop, and the replay of a break hop shows whether the rejection repeats.
"""

from __future__ import annotations

import argparse
import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from proxy_addons.dumpio import read_records
from proxy_addons.report import ReportError, build
from proxy_addons.runs_model import REPLAY_HEADER

DEFAULT_GATEWAY = "http://127.0.0.1:8000"


@dataclass(slots=True)
class Target:
    """What to send again, and what the original answered."""

    run: str
    hop: int
    service: str | None
    method: str
    path: str
    content_type: str | None
    body: bytes
    status: int | None
    answer: Any


def recorded_bytes(body: dict | None) -> bytes:
    """A recorded BODY (docs/dump-format.md) → the bytes to send; a cut body cannot be replayed."""
    body = body or {}
    if body.get("truncated"):
        raise ReportError(f"the recorded body was cut at {body.get('size')} bytes (hoptrace_max_body): "
                          "it cannot be replayed exactly")
    kind, value = body.get("kind"), body.get("value")
    if kind == "json":
        return json.dumps(value, ensure_ascii=False).encode()
    if kind == "text":
        return str(value).encode()
    if kind == "base64":
        return base64.b64decode(value or "")
    return b""


def find_target(path: str | Path, run: str, hop: int = 1) -> Target:
    """Run ``run`` (id or unique prefix) of the dump, its hop ``hop``: the request to send again."""
    d = build(path).find(run)
    h = next((x for x in d.run.hops if x.hop == hop), None)
    if h is None:
        raise ReportError(f"run {d.run.run_id} has no hop {hop} (it has {len(d.run.hops)})")
    rec = next((r for r in read_records(path) if r.get("flow_id") == h.flow_id), None)
    if rec is None:
        raise ReportError(f"run {d.run.run_id} hop {hop}: its record is not in {path}")
    req = rec.get("request") or {}
    ctype = next((v for k, v in req.get("headers") or () if str(k).lower() == "content-type"), None)
    ex = h.exchange
    return Target(d.run.run_id, hop, h.to, ex.method, ex.path, ctype, recorded_bytes(req.get("body")),
                  ex.status, ex.response)


def send(target: Target, gateway: str, timeout: float = 120.0) -> dict:
    """Send the request through the gateway; the outcome compared with the original answer."""
    headers = {REPLAY_HEADER: f"{target.run}/{target.hop}"}
    if target.content_type:
        headers["content-type"] = target.content_type
    import httpx  # here, not at the top: every `hoptrace` command imports this module

    url = gateway.rstrip("/") + target.path
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        resp = client.request(target.method, url, content=target.body, headers=headers)
    try:
        answer: Any = resp.json()
    except ValueError:
        answer = resp.text
    return {
        "replay_of": {"run": target.run, "hop": target.hop}, "url": url, "method": target.method,
        "service": target.service, "status": resp.status_code, "answer": answer,
        "original_status": target.status, "original_answer": target.answer,
        "same": resp.status_code == target.status and answer == target.answer,
    }


def cmd_replay(args: argparse.Namespace) -> int:
    import httpx

    err = Console(stderr=True, soft_wrap=True, highlight=False)
    try:
        target = find_target(args.path, args.run, args.from_hop)
        result = send(target, args.gateway, args.timeout)
    except (ReportError, FileNotFoundError) as exc:
        err.print(f"[bold red]hoptrace replay:[/] {exc}")
        return 2
    except httpx.HTTPError as exc:
        err.print(f"[bold red]hoptrace replay:[/] {args.gateway}: {type(exc).__name__}: {exc}")
        return 1
    if args.json:
        print(json.dumps(result, ensure_ascii=False, default=str))
        return 0
    print(f"replayed run {target.run} hop {target.hop} ({target.method} {target.path}) through {args.gateway}")
    print(f"  answer    {result['status']} {json.dumps(result['answer'], ensure_ascii=False)[:300]}")
    print(f"  original  {target.status} {json.dumps(target.answer, ensure_ascii=False)[:300]}")
    if result["same"]:
        print("  the same answer as the original" +
              (": the rejection repeats" if target.status and 400 <= target.status < 500 else ""))
    else:
        print("  a different answer (services without the same SEED, or a changed service)")
    return 0


def add_parser(sub) -> None:
    """The ``replay`` subcommand (cli.py calls this)."""
    r = sub.add_parser("replay", help="send again the payload a hop of a recorded run carried")
    r.add_argument("path", type=Path, help="a session folder, flows.jsonl, .mitm or .har")
    r.add_argument("--run", required=True, metavar="R", help="the run (id or unique prefix)")
    r.add_argument("--from-hop", type=int, default=1, metavar="H",
                   help="the hop whose payload to send again (default 1: the kick)")
    r.add_argument("--gateway", default=DEFAULT_GATEWAY, metavar="URL",
                   help=f"the gateway to send it through (default {DEFAULT_GATEWAY})")
    r.add_argument("--timeout", type=float, default=120.0)
    r.add_argument("--json", action="store_true", help="print the result as one JSON object")
    r.set_defaults(func=cmd_replay)
