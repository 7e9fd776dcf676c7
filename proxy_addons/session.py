"""The session folder: one per gateway start, never reused."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def new_session_dir(parent: str | Path, now: float | None = None) -> Path:
    """Create ``parent/<UTC timestamp>`` (0700); add ``-2``, ``-3`` … rather than reuse a folder."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    for n in range(1, 10_000):
        path = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
        return path
    raise RuntimeError(f"could not create a new session folder in {parent}")


def open_session_dir(path: str | Path) -> Path:
    """An explicitly chosen folder: created if missing (0700); an existing one is reused only if
    it holds no dump yet, so an earlier session is never overwritten."""
    path = Path(path)
    if path.exists() and any((path / n).exists() for n in ("flows.jsonl", "flows.mitm")):
        raise FileExistsError(f"{path} already holds a session; choose another folder")
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_json(path: Path, data: dict) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
