"""The terminal report (rich): one row per run, counts by outcome and break rate per service; or
one run's timeline with per-hop diffs. Every untrusted value goes in as ``Text`` (never markup)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from proxy_addons.diagnosis import OUTCOMES, Diagnosis
from proxy_addons.report_cells import COLUMNS, change_text, compact, hop_label, name, row, skipped_line

HEADERS = {"break hop": "break\nhop", "iteration": "iter"}  # narrow terminals
STYLE = {"broken": "bold red", "error": "bold magenta", "completed": "green", "in_flight": "yellow"}


def _warn(console: Console, read) -> None:
    line = skipped_line(read)
    if line:
        console.print(Text("warning: ", style="bold yellow") + Text(line))


def print_report(console: Console, report) -> None:
    """The runs table, then the summary tables."""
    _warn(console, report.read)
    table = Table(title=Text(f"{len(report.diagnoses)} runs \u00b7 {report.read.source}"),
                  title_justify="left")
    rows = [row(d) for d in report.diagnoses]
    for col in COLUMNS:  # every column as wide as its widest cell; the state takes what is left
        head = HEADERS.get(col, col)
        fit = max([len(r[col]) for r in rows] + [len(w) for w in head.split()])
        table.add_column(head, no_wrap=col != "state at break", overflow="ellipsis",
                         min_width=None if col == "state at break" else fit,
                         justify="right" if col in ("hops", "break hop", "iteration", "status") else "left")
    for d, cells in zip(report.diagnoses, rows, strict=True):
        table.add_row(*(Text(cells[c], style=STYLE.get(d.outcome, "") if c == "outcome" else "",
                             no_wrap=c == "state at break", overflow="ellipsis") for c in COLUMNS))
    console.print(table)
    print_summary(console, report.summary)
    if report.stats:
        from proxy_addons.stats_view import print_stats

        print_stats(console, report.stats)


def print_summary(console: Console, s: dict) -> None:
    outcomes = Table(title="outcomes", title_justify="left")
    for o in OUTCOMES:
        outcomes.add_column(o, justify="right")
    outcomes.add_row(*(str(s["outcomes"][o]) for o in OUTCOMES))
    services = Table(title="per service", title_justify="left")
    for col in ("service", "received", "breaks", "break rate", "errors"):
        services.add_column(col, justify="left" if col == "service" else "right")
    for svc, v in s["services"].items():
        services.add_row(Text(name(svc)), str(v["received"]), str(v["breaks"]),
                         f"{v['break_rate']:.1%}", str(v["errors"]))
    console.print(outcomes)
    console.print(services)
    console.print(Text(f"{s['runs']} runs, {s['hops']} hops"))


def print_run(console: Console, d: Diagnosis, read=None) -> None:
    """One run: a line per hop (who, status, time, evidence, what the service changed), then the
    break with the state at break, the last good state and the error body."""
    if read is not None:
        _warn(console, read)
    run = d.run
    head = Text(f"run {run.run_id} ", style="bold") + Text(d.outcome, style=STYLE.get(d.outcome, ""))
    head += Text(f" \u00b7 {len(run.hops)} hops" + (" \u00b7 partial" if run.partial else ""))
    console.print(head)
    brk_fid = (d.brk or {}).get("flow_id")
    t = Table(show_lines=False)
    for col in ("hop", "iter", "who", "path", "status", "ms", "evidence", "what the service changed"):
        t.add_column(col, justify="right" if col in ("hop", "iter", "status", "ms") else "left",
                     no_wrap=not col.startswith("what"))
    for h, change in zip(run.hops, d.changes, strict=True):
        ex = h.exchange
        ms = "-" if ex.duration_ms is None else f"{ex.duration_ms:.1f}"
        status = "open" if ex.ended is None else str(ex.status if ex.status is not None else "error")
        style = "bold red" if h.flow_id == brk_fid else ""
        t.add_row(*(Text(v, style=style) for v in (
            str(h.hop), "-" if h.iteration is None else str(h.iteration), hop_label(h), ex.path, status,
            ms, h.evidence, change_text(change))))
    console.print(t)
    b = d.brk
    if b is None:
        console.print(Text("no break", style="green") + Text(f" \u00b7 answer {compact(run.kick.exchange.response, 200)}"))
        return
    where = f"break at hop {b.get('hop')} \u00b7 iteration {b.get('iteration')} \u00b7 {name(b.get('service'))}"
    where += f" \u00b7 status {b.get('status')} \u00b7 {b.get('reason') or ''}"
    if b.get("from_answer"):
        where += " (read from the kick's answer: the breaking hop is not in the dump)"
    console.print(Text(where, style="bold red"))
    for label, text in (("state at break", compact(b.get("state"), None, "null")),
                        ("last good state", compact(b.get("last_good_state"), None, "null")),
                        ("change", change_text(b.get("change"))),
                        ("detail", compact(b.get("detail"), None, "null"))):
        console.print(Text(f"{label}: ", style="bold") + Text(text))
