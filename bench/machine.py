"""What the benchmark ran on (noisy shared machines make this part of every result)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path


def machine() -> dict:
    import mitmproxy.version

    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(), "cpu": cpu, "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0], "mitmproxy": mitmproxy.version.VERSION,
        "platform": platform.platform(),
    }


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


_T0 = time.monotonic()


def progress(msg: str) -> None:
    """One line on stderr with the minutes:seconds since the benchmark started: `make bench`
    runs for ~15 minutes, and its tables come only at the end."""
    took = int(time.monotonic() - _T0)
    print(f"[{took // 60:d}:{took % 60:02d}] {msg}", file=sys.stderr, flush=True)


LOG_WIDTH = 160  # columns of a table written to a file or a pipe (`make bench > bench.log`)


def console():
    """A rich console for the benchmarks' tables: the terminal's width on a terminal; written to a
    file or a pipe, where rich would assume 80 columns and cut every figure to "…", a wide one."""
    from rich.console import Console

    c = Console()
    return c if c.is_terminal else Console(width=LOG_WIDTH)
