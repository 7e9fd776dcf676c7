"""Shared fixtures: real processes on free loopback ports, always stopped by PID."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy_addons import stack as stk

ROOT = Path(__file__).resolve().parent.parent
SEED_KICK = '{"name": "payload", "d;5Digits": [], "avg": null, "max": null, "min": null}'


@pytest.fixture
def procs():
    """Register every started process here; all are stopped by PID at teardown."""
    started: list[stk.Proc] = []
    yield started
    for p in reversed(started):
        p.stop()
    assert all(not p.alive() for p in started)


@pytest.fixture
def start_stack(procs, tmp_path):
    """``start_stack(**settings)`` → a running A+B+gateway Stack recording into a fresh folder."""

    def start(**kw) -> stk.Stack:
        n = len([p for p in procs if p.name == "gateway"])
        kw.setdefault("session", tmp_path / f"session{n}")
        kw.setdefault("log_dir", tmp_path / f"logs{n}")
        st = stk.start_stack(**kw)
        procs.extend(st.procs())
        return st

    return start


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def flow_records(path: Path) -> list[dict]:
    """A flows.jsonl's flow records, without the ``placement`` lines the gateway appends when it
    corrects a hop's run (identical concurrent kicks: docs/dump-format.md)."""
    return [r for r in read_jsonl(path) if r.get("type", "flow") == "flow"]


def served(proc: stk.Proc) -> int:
    import httpx

    return httpx.get(proc.meta["url"] + "/health", timeout=5).json()["served"]
