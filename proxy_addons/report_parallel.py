"""The fast `hoptrace report --format json` on every core: a flows.jsonl with the gateway's
placement is cut into one byte range per core, at line starts; each range is read by its own
process (report_fast.scan) writing its runs' JSON to a temporary file; this process then writes
``{"runs": [...], "source", "read", "placement", "summary"}`` (docs/report-format.md) from those
files in range order, the runs no single reader could finish (report_fast.Part.left) last, with
the readers' counts summed. A dump under ``MIN_BYTES`` is read here, in one pass. Progress: each
reader writes the bytes of its range read so far into shared memory; this process polls their sum.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from proxy_addons.diagnosis import Summary
from proxy_addons.dumpio import ReadReport, resolve
from proxy_addons.lineage import Lineage, PingPongLineage
from proxy_addons.report_fast import Part, Writer, scan
from proxy_addons.runs_assemble import valid_fields
from proxy_addons.runs_fast import join
from proxy_addons.sink import jsonl

MIN_BYTES = 50 << 20  # below: one process (starting workers costs more than it saves)
MAX_WORKERS = 8
SNIFF = 200  # flow records looked at to decide whether a dump carries the gateway's placement
POLL = 0.2  # seconds between two looks at the readers' progress

Progress = Callable[[int], None]  # told the bytes of the dump read so far (all readers)
_read_so_far = None  # in a reader process: the shared counters (``_share``)


class WorkerError(RuntimeError):
    """A range reader died (killed, out of memory): the report is incomplete, say so."""


def placed(path: str | Path) -> bool:
    """Does this dump carry the live gateway's placement? A flows.jsonl whose first flow records
    (of a service) have ``run`` fields; never a .mitm or .har (their records are rebuilt)."""
    p = resolve(path)
    if p.suffix in (".har", ".mitm", ".flows", ".dump"):
        return False
    import orjson

    seen = 0
    with open(p, "rb") as f:
        head = f.read(16)
        if head[:1].isdigit():  # a tnetstring (.mitm under another name)
            return False
        f.seek(0)
        for line in f:
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if type(rec) is not dict or rec.get("type", "flow") != "flow" or rec.get("service") is None:
                continue
            if valid_fields(rec.get("run")):
                return True
            seen += 1
            if seen >= SNIFF:
                return False
    return False


def ranges(path: Path, n: int) -> list[tuple[int, int | None]]:
    """``n`` byte ranges of about equal size, each starting at a line start."""
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as f:
        for i in range(1, n):
            f.seek(size * i // n)
            f.readline()
            at = f.tell()
            if cuts[-1] < at < size:
                cuts.append(at)
    return [(a, b) for a, b in zip(cuts, [*cuts[1:], None], strict=True)]


def _work(path: str, start: int, end: int | None, lineage: Lineage, target: str | int,
          progress: Progress | None = None) -> Part:
    """Read one range, its runs' JSON into ``target``: a temporary file, or the output's file
    descriptor (the first range: what it writes comes first)."""
    from proxy_addons.report import service_of

    # the Writer hands over whole chunks: a buffer no larger lets them through without a copy
    with open(os.dup(target) if isinstance(target, int) else target, "wb", buffering=Writer.CHUNK) as out:
        return scan(path, start, end, lineage, out, service_of, progress)


def _fileno(out) -> int | None:
    """The file descriptor behind ``out``, or None (an in-memory buffer)."""
    try:
        return out.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation: OSError, ValueError
        return None


def _share(counters) -> None:
    """A reader process's initializer: the counters it writes its progress into (inherited)."""
    global _read_so_far
    _read_so_far = counters


def _work_counted(path: str, start: int, end: int | None, lineage: Lineage, target: str | int,
                  slot: int) -> Part:
    def progress(n: int) -> None:
        _read_so_far[slot] = n

    return _work(path, start, end, lineage, target, progress if _read_so_far is not None else None)


def stream_placed(path: str | Path, out, lineage: Lineage | None = None, workers: int | None = None,
                  min_bytes: int = MIN_BYTES, progress: Progress | None = None) -> tuple[int, ReadReport]:
    """The JSON contract from the gateway's placement; ``out`` is binary. ``workers``: how many
    ranges (default: the cores, at most ``MAX_WORKERS``; one below ``min_bytes``). ``progress``
    is told the bytes read so far, about every ``POLL`` seconds, and the dump's size at the end."""
    lin = lineage or PingPongLineage()
    p = resolve(path)
    n = workers or min(os.cpu_count() or 1, MAX_WORKERS)
    if p.stat().st_size < min_bytes and workers is None:
        n = 1
    cuts = ranges(p, n)
    out.write(b'{"runs": [\n')
    fd = _fileno(out)
    with tempfile.TemporaryDirectory(prefix="hoptrace-report-") as tmp:
        targets: list[str | int] = [os.path.join(tmp, f"{i}.json") for i in range(len(cuts))]
        if fd is not None:  # the first range's reader writes into the output itself: no copy
            out.flush()  # of its runs (a third of the report's system time went on the copies)
            targets[0] = fd
        parts = _run(str(p), cuts, lin, targets, progress)
        total = parts[0].runs if fd is not None else 0
        for i, part in enumerate(parts):
            if part.runs and (i or fd is None):
                out.write(b",\n" if total else b"")
                with open(targets[i], "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
                total += part.runs
    rest = Part(0, -1, runs=total)
    claimed = {fid for pt in parts for fid in pt.claimed}
    writer = Writer(out, rest, lin)
    writer.write(join([it for pt in parts for it in pt.left if it.flow_id not in claimed],
                      [o for pt in parts for o in pt.orphans], lin))
    writer.flush()
    summary, read = Summary(), ReadReport(source=str(p))
    lines = 0
    for part in parts:
        summary.merge(part.summary)
        read.read += part.read
        read.skipped.extend(f"line {lines + k}: {why}" for k, why in part.skipped)
        lines += part.lines
    summary.merge(rest.summary)
    notes = [note for part in (*parts, rest) for note in part.notes]
    tail = {"source": read.source, "read": {"records": read.read, "skipped": list(read.skipped)},
            "placement": "gateway", "summary": summary.to_json()}
    if notes:
        tail["read"]["notes"] = notes
    out.write(b"\n], " + jsonl(tail)[1:])
    return rest.runs, read


def _run(path: str, cuts: list[tuple[int, int | None]], lin: Lineage, files: list[str | int],
         progress: Progress | None = None) -> list[Part]:
    """Every range read, in order, range ``i``'s runs into ``files[i]``; a single range is read
    in this process."""
    if len(cuts) == 1:
        return [_work(path, 0, None, lin, files[0], progress)]
    ctx = multiprocessing.get_context("fork")
    counters = ctx.RawArray("q", len(cuts)) if progress is not None else None
    try:
        with ProcessPoolExecutor(len(cuts), mp_context=ctx, initializer=_share, initargs=(counters,)) as pool:
            futures = [pool.submit(_work_counted, path, a, b, lin, f, i)
                       for i, ((a, b), f) in enumerate(zip(cuts, files, strict=True))]
            while wait(futures, POLL).not_done:  # a dead reader: every future fails at once
                if counters is not None:
                    progress(sum(counters))
            parts = [fut.result() for fut in futures]
            if counters is not None:
                progress(sum(counters))
            return parts
    except BrokenProcessPool as exc:
        raise WorkerError(f"a report worker died before it finished ({exc}); the report is incomplete "
                          "— run again, or use --reconstruct (one process)") from None
