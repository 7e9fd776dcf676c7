"""PURE: how a diagnosed run's values read in one table cell, shared by the terminal and the
HTML report so both say the same thing. Plain strings, never markup: payloads are untrusted and
each renderer escapes them its own way."""

from __future__ import annotations

import json
from typing import Any

from proxy_addons.diagnosis import Diagnosis


def compact(value: Any, limit: int | None = 120, none: str = "-") -> str:
    """One-line JSON (``none`` for None), cut to ``limit`` characters with an ellipsis."""
    if value is None:
        return none
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str,
                                                           separators=(", ", ": "))
    text = " ".join(text.split())
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "\u2026"


def pretty(value: Any) -> str:
    """Indented JSON for a detail view."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def name(service: str | None) -> str:
    return "client" if service == "client" else (service or "?").upper()


def change_text(change: dict | None) -> str:
    """A per-hop diff in a few words: ``digits +[42]; avg 3 → 4.5``."""
    if change is None:
        return "-"
    if not change:
        return "no change"
    parts = [f"{k} +{compact(v, 40, 'null')}" for k, v in change.get("appended", {}).items()]
    parts += [f"{k or 'body'} {compact(o, 30, 'null')} \u2192 {compact(n, 30, 'null')}"
              for k, (o, n) in change.get("changed", {}).items()]
    parts += [f"+{k}={compact(v, 30, 'null')}" for k, v in change.get("added", {}).items()]
    parts += [f"-{k}" for k in change.get("removed", {})]
    return "; ".join(parts)


def row(d: Diagnosis) -> dict[str, str]:
    """The runs table's cells for one run (``-`` where a column does not apply)."""
    b = d.brk or {}
    dash = lambda v: "-" if v is None else str(v)  # noqa: E731
    return {
        "run": d.run.run_id + (" (partial)" if d.run.partial else "") + _replay(d),
        "hops": str(len(d.run.hops)),
        "outcome": d.outcome + (" (injected)" if b.get("injected") else ""),
        "break hop": dash(b.get("hop")),
        "iteration": dash(b.get("iteration")),
        "service": name(b["service"]) if b.get("service") else "-",
        "status": dash(b.get("status") if b else d.run.kick.exchange.status),
        "state at break": compact(b.get("state"), 80) if b else "-",
    }


def _replay(d: Diagnosis) -> str:
    r = d.run.kick.exchange.replay_of
    return f" (replay of {r['run']}/{r['hop']})" if r else ""


COLUMNS = ("run", "hops", "outcome", "break hop", "iteration", "service", "status", "state at break")


def skipped_line(read) -> str | None:
    """The warning about what the reader could not use, or None."""
    if not read.skipped:
        return None
    shown = "; ".join(read.skipped[:3]) + (f"; … {len(read.skipped) - 3} more" if len(read.skipped) > 3 else "")
    return f"skipped {len(read.skipped)} unreadable part(s) of {read.source}: {shown}"


def hop_label(h) -> str:
    """``client→A``, ``A→B``: who sent the hop to whom."""
    return f"{name(h.sender)}\u2192{name(h.to)}"
