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
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
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
