"""`hoptrace report --format json` over one byte range of a flows.jsonl that carries the live
gateway's placement (``run`` fields, ``placement`` records): records → runs (runs_fast.py) →
diagnosis → the runs' JSON, without the run engine. ``report_parallel`` runs one ``scan`` per
core and joins them; a small dump is one ``scan`` over the whole file.

A range reader starts at its first line and reads past its last one until every run whose kick
lies in its range has been handed out; the records and placements it could not use (runs that
began before its range, or end after it stopped) go back to the caller in ``Part.left``. Its
counts (``read``, skipped lines) cover its own range only, so no line is counted twice.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from proxy_addons.diagnosis import Summary, diagnose
from proxy_addons.dumpio import _loads
from proxy_addons.lineage import Lineage
from proxy_addons.records_typed import BAD, decode_placement, decode_record
from proxy_addons.run_json import run_bytes_into
from proxy_addons.runs_assemble import Item
from proxy_addons.runs_fast import FastRuns, Out
from proxy_addons.runs_model import Exchange

CUT = "cut last line (the writer stopped mid-record)"
STEP = 4 << 20  # bytes read between two progress reports
PLACEMENT = b'{"type":"placement"'  # how the gateway (orjson) writes one: no flow to decode


@dataclass
class Part:
    """What one range reader found. ``skipped``: (line number within the range, why)."""

    start: int
    end: int
    runs: int = 0
    read: int = 0
    lines: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)
    left: list[Item] = field(default_factory=list)
    orphans: list[tuple[int, str, dict]] = field(default_factory=list)
    claimed: list[str] = field(default_factory=list)  # flows of the next range in runs written here


class Writer:
    """Diagnose runs and write their JSON, comma-separated, counting them in ``part``. The runs
    are encoded into one buffer, written out every ``CHUNK`` bytes and at ``flush``."""

    CHUNK = 1 << 16  # larger costs more: encode_into resizes the buffer per run (1 MB: 2× slower)

    def __init__(self, out, part: Part, lineage: Lineage) -> None:
        self.out, self.part, self.lineage = out, part, lineage
        self.buf = bytearray()

    def write(self, outs: list[Out], own=None) -> None:
        part, buf = self.part, self.buf
        for run, pos, note in outs:
            if own is not None and not own(pos):
                continue
            d = diagnose(run, self.lineage)
            part.summary.add(d)
            if part.runs:
                buf += b",\n"
            run_bytes_into(d, buf)
            part.runs += 1
            if note:
                part.notes.append(note)
        if len(buf) >= self.CHUNK:
            self.flush()

    def flush(self) -> None:
        self.out.write(self.buf)
        self.buf.clear()


def scan(path: str, start: int, end: int | None, lineage: Lineage, out, service_of,
         progress: Callable[[int], None] | None = None) -> Part:
    """Read ``path`` from byte ``start`` (a line start); own the lines before ``end`` (None: to
    the end of the file, which also closes every run still open). ``progress`` is told the bytes
    of its own range read so far, every ``STEP`` bytes and once at the end."""
    whole = start == 0 and end is None
    own_end = end if end is not None else float("inf")
    part = Part(start, end if end is not None else -1)
    fr = FastRuns(lineage, first=None if start == 0 else start, own_end=own_end)
    writer = Writer(out, part, lineage)
    gc_was = gc.isenabled()
    gc.disable()  # a record makes ~100 objects and no cycles: collections would cost 4× the parse
    try:
        _read(path, start, own_end, fr, writer, service_of, progress)
        if whole:
            writer.write(fr.close())
        else:
            left, engine_runs = fr.stop()
            writer.write(engine_runs, lambda p: start <= p < own_end)
            part.left = [it for it in left if it.pos < own_end]
            part.orphans = [o for o in fr.orphans if o[0] < own_end]
            part.claimed = fr.claimed
        writer.flush()
    finally:
        if gc_was:
            gc.enable()
    return part


def _read(path: str, start: int, own_end: float, fr: FastRuns, writer: Writer, service_of,
          progress: Callable[[int], None] | None) -> None:
    """The dumpio rules (blank lines ignored; broken lines and other record types skipped and
    said, in the reader's own range only), records fed to ``fr`` as they come."""
    part, write, typed, place = writer.part, writer.write, fr.record, fr.placement
    own_pos = lambda p: start <= p < own_end  # noqa: E731
    own_runs = None if start == 0 and own_end == float("inf") else own_pos  # None: all ours
    read = 0
    tick = start + STEP if progress is not None else math.inf
    with open(path, "rb", buffering=1 << 20) as f:  # 2-3× cheaper lines than the default 8 KB
        f.seek(start)
        pos, n = start, 0
        for line in f:
            here = pos
            pos += len(line)
            if pos >= tick:
                progress(min(pos, own_end) - start)
                tick = pos + STEP
            if here < own_end:
                n += 1
            elif fr.owned_due == 0:
                break  # every run whose kick is ours has been handed out
            if line.startswith(PLACEMENT):
                try:
                    p = decode_placement(line)
                except BAD:
                    p = None
                if p is not None and p.type == "placement":
                    place(p.flow_id, p.run, here)
                    continue
            else:
                try:
                    r = decode_record(line)
                except BAD:
                    r = None
                if r is not None and r.type == "flow" and r.service is not None:
                    if here < own_end:
                        read += 1
                    outs = typed(r, here)
                    if outs:
                        write(outs, own_runs)
                    continue
            _other(line, here, n, fr, writer, service_of, own_pos)
        part.lines = n
        part.read += read
    if progress is not None:
        progress(min(pos, own_end) - start)


def _other(line: bytes, here: int, n: int, fr: FastRuns, writer: Writer, service_of, own_pos) -> None:
    """A line the typed decoder did not take: read as dumpio reads it."""
    part = writer.part
    own = own_pos(here)
    if not line.strip():
        return
    try:
        rec = _loads(line)
    except ValueError:
        if own:
            part.skipped.append((n, CUT if not line.endswith(b"\n") else "not JSON"))
        return
    kind = rec.get("type", "flow") if type(rec) is dict else None
    if kind == "placement":
        fr.placement(rec.get("flow_id"), rec.get("run"), here)
        return
    if kind != "flow":
        if own:
            what = rec.get("type") if type(rec) is dict else type(rec).__name__
            part.skipped.append((n, f"not a flow record ({what!r})"))
        return
    if own:
        part.read += 1
    if rec.get("service") is None:
        rec["service"] = service_of(rec)
    try:
        ex = Exchange.from_record(rec)
    except (KeyError, TypeError, ValueError):
        return  # the engine skips it too (counted as read)
    outs = fr.flow(ex, rec.get("run"), here)
    if outs:
        writer.write(outs, own_pos)
