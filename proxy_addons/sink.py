"""The session files, written straight from the proxy's event loop.

``write`` encodes a record and hands it to the OS with one ``os.write`` per file before it
returns, so a hook that calls it releases its response only once the record is in the OS' page
cache, which survives a ``kill -9`` of the gateway ("answered means recorded"). A write of a few
KiB into the page cache takes microseconds; a writer thread cost more (two thread wake-ups and a
GIL hand-off per record, measured in docs/performance.md), and no ``fsync`` is ever done on the
loop. ``defer`` is for what no client waits on (a finished run's line, the flows of a run that
just ended): it is encoded and written on the next loop iteration, after the response has left.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import orjson

log = logging.getLogger(__name__)
Encoder = Callable[[object], bytes]


def open_private(path: Path) -> int:
    """Open for append, creating the file 0600 (dumps may hold payloads and headers)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


class Sink:
    """Append-only files. ``encoders`` maps file name → function(item part) → bytes."""

    def __init__(self, folder: Path, encoders: dict[str, Encoder]) -> None:
        self.fds = {name: open_private(folder / name) for name in encoders}
        self.encoders = encoders
        self.later: list[dict[str, object]] = []
        self.written = 0
        self.failed = 0

    def write(self, parts: dict[str, object]) -> None:
        """Encode and write one item (file name → object) now; raises when it could not be."""
        try:
            for name, obj in parts.items():
                _write_all(self.fds[name], self.encoders[name](obj))
            self.written += 1
        except Exception as exc:  # disk full, closed file …: say so loudly, never silently
            self.failed += 1
            log.error("hoptrace: a record could not be written: %s", exc)
            raise

    def defer(self, parts: dict[str, object]) -> None:
        """Write on the next loop iteration (now when no loop runs, e.g. at shutdown)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.later.append(parts)
            self.drain()
            return
        if not self.later:
            loop.call_soon(self.drain)
        self.later.append(parts)

    def drain(self) -> None:
        """Write what was deferred: encoded item by item (one that fails is logged and skipped),
        then one ``os.write`` per file for the lot."""
        later, self.later = self.later, []
        batches: dict[str, list[bytes]] = {}
        for parts in later:
            try:
                encoded = [(name, self.encoders[name](obj)) for name, obj in parts.items()]
            except Exception as exc:
                self.failed += 1
                log.error("hoptrace: a record could not be encoded: %s", exc)
                continue
            for name, data in encoded:
                batches.setdefault(name, []).append(data)
            self.written += 1
        for name, chunks in batches.items():
            try:
                _write_all(self.fds[name], b"".join(chunks))
            except Exception as exc:  # disk full, closed file …: say so loudly, never silently
                self.failed += len(chunks)
                log.error("hoptrace: %d deferred record(s) could not be written to %s: %s",
                          len(chunks), name, exc)

    def close(self) -> None:
        self.drain()
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def jsonl(obj: object) -> bytes:
    """One JSON line; orjson when it can (fast), the stdlib for what orjson refuses (huge ints)."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return (json.dumps(obj, ensure_ascii=False, default=str) + "\n").encode()
