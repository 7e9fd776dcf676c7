"""A group-committing writer thread for the session files.

The proxy's event loop never touches the disk: a hook hands over a record and awaits a future
that resolves once the record is written and flushed to the OS. So "answered means recorded"
holds (the response is released only after its record is in the OS' page cache, which survives a
``kill -9`` of the gateway), while many concurrent hooks share one write+flush per batch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import orjson

log = logging.getLogger(__name__)
Encoder = Callable[[object], bytes]


def open_private(path: Path, mode: str = "ab"):
    """Open for append, creating the file 0600 (dumps may hold payloads and headers)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, mode)


class Sink:
    """Files fed by one thread. ``encoders`` maps file name → function(item part) → bytes."""

    def __init__(self, folder: Path, encoders: dict[str, Encoder]) -> None:
        self.files = {name: open_private(folder / name) for name in encoders}
        self.encoders = encoders
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self.written = 0
        self.failed = 0
        self.thread = threading.Thread(target=self._run, name="hoptrace-sink", daemon=True)
        self.thread.start()

    async def write(self, parts: dict[str, object]) -> None:
        """Queue one item (file name → object to encode) and wait until it is flushed."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.q.put((parts, loop, fut))
        await fut

    def write_nowait(self, parts: dict[str, object]) -> None:
        self.q.put((parts, None, None))

    def close(self) -> None:
        self.q.put(None)
        self.thread.join(timeout=30)
        for f in self.files.values():
            f.close()

    def _run(self) -> None:
        while True:
            batch = [self.q.get()]
            while True:
                try:
                    batch.append(self.q.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            items = [b for b in batch if b is not None]
            error = self._write(items)
            for _, loop, fut in items:
                if fut is not None:
                    loop.call_soon_threadsafe(_settle, fut, error)
            if stop:
                return

    def _write(self, items) -> Exception | None:
        try:
            for parts, _, _ in items:
                for name, obj in parts.items():
                    self.files[name].write(self.encoders[name](obj))
            for f in self.files.values():
                f.flush()
            self.written += len(items)
            return None
        except Exception as exc:  # disk full, closed file …: say so loudly, never silently
            self.failed += len(items)
            log.error("hoptrace: %d record(s) could not be written: %s", len(items), exc)
            return exc


def _settle(fut: asyncio.Future, error: Exception | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)


def jsonl(obj: object) -> bytes:
    """One JSON line; orjson when it can (fast), the stdlib for what orjson refuses (huge ints)."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return (json.dumps(obj, ensure_ascii=False, default=str) + "\n").encode()
