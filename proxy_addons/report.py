"""`hoptrace report PATH`: any dump (session folder, flows.jsonl, .mitm, .har) → runs → diagnosis
→ a terminal table, one run's timeline, the JSON contract (docs/report-format.md) or one offline
HTML file. This module loads and dispatches; rendering lives in report_text.py / report_html.py.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from proxy_addons.diagnosis import Diagnosis, Summary, diagnose, summarize
from proxy_addons.dumpio import ReadReport, read_records, resolve
from proxy_addons.lineage import LINEAGES, Lineage, PingPongLineage
from proxy_addons.report_parallel import WorkerError, placed, stream_placed
from proxy_addons.runs import SKEW, Run, iter_runs, reconstruct
from proxy_addons.sink import jsonl

FORMATS = ("text", "json", "html")
DEFAULT_LINEAGE = "pingpong"  # the gateway's default: its placement is what the fast path reads


class ReportError(Exception):
    """A problem the user must fix (unknown run, unreadable path): one clear line, exit 2."""


@dataclass(slots=True)
class Report:
    """Everything a renderer needs: the diagnosed runs, in kick order, and what the reader
    could not use."""

    diagnoses: list[Diagnosis]
    read: ReadReport
    stats: dict | None = None  # `--stats`: proxy_addons/stats.py

    @property
    def summary(self) -> dict:
        return summarize(self.diagnoses)

    def to_json(self) -> dict:
        out = {
            "source": self.read.source,
            "read": {"records": self.read.read, "skipped": list(self.read.skipped)},
            "runs": [d.to_json() for d in self.diagnoses],
            "summary": self.summary,
        }
        if self.stats is not None:
            out["stats"] = self.stats
        return out

    def find(self, ref: str) -> Diagnosis:
        """The run whose id is ``ref`` or starts with it; a clear error when none or several."""
        exact = [d for d in self.diagnoses if d.run.run_id == ref]
        hits = exact or [d for d in self.diagnoses if d.run.run_id.startswith(ref)]
        if not ref or not hits:
            raise ReportError(f"no run {ref!r} in {self.read.source} ({len(self.diagnoses)} runs)")
        if len(hits) > 1:
            ids = ", ".join(d.run.run_id for d in hits[:8]) + (" …" if len(hits) > 8 else "")
            raise ReportError(f"run {ref!r} is ambiguous: {len(hits)} runs start with it ({ids})")
        return hits[0]


def service_of(rec: dict) -> str | None:
    """A record's service; for a capture made without our addons (plain ``mitmdump -w``), the
    first segment of its path, as for a HAR (``/b/`` → ``b``). The gateway's own answers
    (unknown path) stay outside every run."""
    if rec.get("service") is not None or rec.get("origin") == "gateway":
        return rec.get("service")
    path = str(rec.get("path") or "").split("?", 1)[0]
    return path.strip("/").split("/")[0] or None


def _counted(records: Iterable[dict], progress: Progress | None) -> Iterator[dict]:
    task = progress.add_task("reading", total=None, n=0) if progress else None
    for n, rec in enumerate(records, 1):
        if progress is not None and n % 500 == 0:
            progress.update(task, n=n)
        if isinstance(rec, dict) and rec.get("service") is None:
            rec = {**rec, "service": service_of(rec)}
        yield rec


def _bar(progress: bool) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description} {task.fields[n]} records"),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=True,
                    disable=not progress)


@contextmanager
def _bytes_bar(progress: bool, total: int) -> Iterator:
    """A bar of the bytes read, for the fast report (report_parallel: all its readers); yields
    what to tell the bytes read so far, or None without a bar."""
    with Progress(TextColumn("reading"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True, disable=not progress) as bar:
        task = bar.add_task("reading", total=total)
        yield (lambda n: bar.update(task, completed=n)) if progress else None


def build(path: str | Path, lineage: Lineage | None = None, progress: bool = False) -> Report:
    """Read a dump, rebuild its runs and diagnose each one. ``progress``: a spinner with the
    record count on stderr (the caller decides: only on a tty)."""
    lin = lineage or PingPongLineage()
    read = ReadReport()
    with _bar(progress) as bar:
        runs = reconstruct(_counted(read_records(path, read), bar if progress else None), lin)
    return Report([diagnose(r, lin) for r in runs], read)


def stream_json(path: str | Path, out, lineage: Lineage | None = None, progress: bool = False,
                reconstruct: bool = False) -> tuple[int, ReadReport]:
    """The JSON contract written run by run as each run finishes, holding only the open runs:
    memory stays flat however large the dump. Runs come in the order they ended (``build``
    sorts them by kick); ``source``, ``read``, ``placement`` and ``summary`` follow ``runs``.
    ``out`` is binary. A flows.jsonl written by our gateway carries each hop's placement: the
    runs are then taken from it, on every core (report_parallel.py), unless ``reconstruct``."""
    if not reconstruct and placed(path):
        with _bytes_bar(progress, resolve(path).stat().st_size) as told:
            return stream_placed(path, out, lineage, progress=told)
    lin = lineage or PingPongLineage()
    read, summary, n = ReadReport(), Summary(), 0
    late = _LateHops()
    out.write(b'{"runs": [')

    def write(runs: Iterable[Run]) -> None:
        nonlocal n
        for run in runs:
            d = diagnose(run, lin)
            summary.add(d)
            out.write((b",\n" if n else b"\n") + d.to_bytes())
            n += 1

    with _bar(progress) as bar:
        for run in iter_runs(late.watch(_counted(read_records(path, read), bar if progress else None)), lin):
            late.add(run)
            write(late.due())
        write(late.rest())
    tail = {"source": read.source, "read": {"records": read.read, "skipped": list(read.skipped)},
            "placement": "engine", "summary": summary.to_json()}
    out.write(b"\n], " + jsonl(tail)[1:])
    return n, read


class _LateHops:
    """The engine hands a run out when its kick ends; a *late* hop (under a partner that timed
    out) joins it afterwards, in place. A run waits here until the reading is past its kick's end
    + 1.5 × the kick's duration + ``SKEW`` (the fast path's horizon, runs_fast.py) + the engine's
    own look-ahead (``iter_runs``: 1.5 × the longest exchange + ``SKEW``), so its JSON has them."""

    def __init__(self) -> None:
        self.held: list = []
        self.newest, self.longest, self.i = -math.inf, 0.0, 0

    def watch(self, records: Iterable[dict]) -> Iterator[dict]:
        for rec in records:
            started, ended = rec.get("started"), rec.get("ended")
            if type(ended) is float and type(started) is float:
                self.newest, self.longest = max(self.newest, ended), max(self.longest, ended - started)
            yield rec

    def add(self, run: Run) -> None:
        kick, self.i = run.kick.exchange, self.i + 1
        at = math.inf if kick.ended is None else kick.ended + 1.5 * (kick.ended - kick.started) + SKEW
        heapq.heappush(self.held, (at, self.i, run))

    def due(self) -> Iterator[Run]:
        now = self.newest - (1.5 * self.longest + SKEW)
        while self.held and self.held[0][0] < now:
            yield heapq.heappop(self.held)[2]

    def rest(self) -> Iterator[Run]:
        while self.held:
            yield heapq.heappop(self.held)[2]


def render(report: Report, fmt: str, run: str | None = None) -> str:
    """The report as text in ``fmt`` (text: rich output captured without colour)."""
    if fmt == "json":
        data = report.find(run).to_json() if run else report.to_json()
        return json.dumps(data, ensure_ascii=False, default=str) + "\n"
    if fmt == "html":
        from proxy_addons.report_html import html_report

        return html_report(report, run=report.find(run) if run else None)
    from proxy_addons.report_text import print_report, print_run

    console = Console(record=True, width=160, file=_Null(), color_system=None)
    if run:
        print_run(console, report.find(run), report.read)
    else:
        print_report(console, report)
    return console.export_text()


class _Null:
    def write(self, _: str) -> int:
        return 0

    def flush(self) -> None:
        pass


def cmd_report(args: argparse.Namespace) -> int:
    """CLI glue: build, then print to the terminal (text) or write JSON/HTML to stdout or -o."""
    err = Console(stderr=True, soft_wrap=True)
    if args.format == "json" and not args.run and not args.stats:
        return _cmd_stream_json(args, err)
    try:
        report = build(args.path, LINEAGES[args.lineage](), progress=sys.stderr.isatty())
        if args.stats:
            from proxy_addons.stats import report_stats

            report.stats = report_stats(report.diagnoses, args.path, args.fail_rate)
        if args.format == "text" and args.output is None:
            from proxy_addons.report_text import print_report, print_run

            out = Console(soft_wrap=False)
            if args.run:
                print_run(out, report.find(args.run), report.read)
            else:
                print_report(out, report)
            return 0
        text = render(report, args.format, args.run)
    except (ReportError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        err.print(f"[bold red]hoptrace report:[/] {exc}", highlight=False, markup=True)
        return 2
    if args.output is None:
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        err.print(f"wrote {args.output} ({len(report.diagnoses)} runs)", highlight=False)
    if report.read.skipped and args.format != "text":
        err.print(f"[yellow]warning:[/] skipped {len(report.read.skipped)} unreadable part(s) of "
                  f"{report.read.source}; see \"read\".\"skipped\"", highlight=False)
    return 0


def _cmd_stream_json(args: argparse.Namespace, err: Console) -> int:
    """``--format json`` over the whole dump: streamed (a million hops in bounded memory)."""
    try:
        resolve(args.path)  # a bad path fails before any output
        out = open(args.output, "wb") if args.output else sys.stdout.buffer
        try:
            n, read = stream_json(args.path, out, LINEAGES[args.lineage](), sys.stderr.isatty(),
                                  reconstruct=args.reconstruct or args.lineage != DEFAULT_LINEAGE)
        finally:
            if args.output:
                out.close()
            else:
                out.flush()
    except (FileNotFoundError, IsADirectoryError, PermissionError, WorkerError) as exc:
        err.print(f"[bold red]hoptrace report:[/] {exc}", highlight=False, markup=True)
        return 2
    if args.output:
        err.print(f"wrote {args.output} ({n} runs)", highlight=False)
    if read.skipped:
        err.print(f"[yellow]warning:[/] skipped {len(read.skipped)} unreadable part(s) of "
                  f"{read.source}; see \"read\".\"skipped\"", highlight=False)
    return 0


def add_parser(sub) -> None:
    """The ``report`` subcommand (cli.py calls this)."""
    r = sub.add_parser("report", help="diagnose every run of a dump: table, one run, JSON or HTML")
    r.add_argument("path", type=Path, help="a session folder, flows.jsonl, .mitm or .har")
    r.add_argument("--run", default=None, metavar="R", help="one run's timeline (id or unique prefix)")
    r.add_argument("--format", choices=FORMATS, default="text", help="text (default), json or html")
    r.add_argument("-o", "--output", type=Path, default=None, help="write to FILE instead of stdout")
    r.add_argument("--lineage", choices=sorted(LINEAGES), default=DEFAULT_LINEAGE,
                   help="how a service's output follows its input (any = nesting and timing only); "
                        "another than the default rebuilds the runs (as --reconstruct)")
    r.add_argument("--reconstruct", action="store_true",
                   help="--format json: rebuild every run with the run engine instead of taking the "
                        "placement the gateway wrote into flows.jsonl (slower, one core)")
    r.add_argument("--stats", action="store_true",
                   help="break rate per service and iteration with Wilson intervals, run lengths")
    r.add_argument("--fail-rate", type=float, default=None, metavar="R",
                   help="the services' FAIL_RATE to compare with (default: the session's services.json)")
    r.set_defaults(func=cmd_report)
