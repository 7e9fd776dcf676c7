"""`hoptrace report --stats` drawn: rich tables for the terminal, an HTML section with two small
inline-SVG charts (break rate per iteration with its interval and the expected rate; the run
lengths). Input: the ``stats`` object of proxy_addons/stats.py."""

from __future__ import annotations

import html

from rich.console import Console
from rich.table import Table
from rich.text import Text

def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _ci(row: dict) -> str:
    return f"{row['ci'][0] * 100:.1f}\u2013{row['ci'][1]:.1%}"


def _flag(row: dict) -> str:
    return {"above": "\u25b2 above", "below": "\u25bc below"}.get(row["flag"], "")


def headline(st: dict) -> str:
    src = f"FAIL_RATE from {st['fail_rate_source']}" if st["fail_rate"] else \
        "no FAIL_RATE known (give --fail-rate, or start with `hoptrace up`): nothing to compare with"
    return (f"{st['confidence']:.0%} Wilson intervals, held together per table (Bonferroni); {src}")


def print_stats(console: Console, st: dict) -> None:
    console.print(Text("break statistics \u00b7 " + headline(st), style="bold"))
    svc = Table(title="break rate per service (a trial: a hop the service decided)", title_justify="left")
    for col in ("svc", "trials", "breaks", "inj.", "rate", "interval", "expected", "flag", "w/o inj."):
        svc.add_column(col, justify="left" if col in ("svc", "flag") else "right", no_wrap=True)
    for name, v in st["services"].items():
        svc.add_row(Text(name.upper()), str(v["trials"]), str(v["breaks"]), str(v["injected"]),
                    _pct(v["rate"]), _ci(v), _pct(v["expected"]), Text(_flag(v), style="bold red"),
                    f"{_pct(v['real']['rate'])} {_flag(v['real'])}".strip())
    it = Table(title="break rate per iteration (a trial: a run that reached it)", title_justify="left")
    for col in ("iteration", "runs", "broken", "rate", "interval", "expected", "flag"):
        it.add_column(col, justify="left" if col == "flag" else "right", no_wrap=True)
    for r in st["iterations"]:
        it.add_row(str(r["iteration"]), str(r["trials"]), str(r["breaks"]), _pct(r["rate"]), _ci(r),
                   _pct(r["expected"]), Text(_flag(r), style="bold red"))
    console.print(svc)
    console.print(it)
    rl = st["run_length"]
    if rl["max"] is not None:
        console.print(Text(f"run length: mean {rl['mean']:.1f}, median {rl['median']:g}, max {rl['max']} hops"))
        top = max(rl["counts"].values())
        for length, n in rl["counts"].items():
            console.print(Text(f"{length:>5} hops {'#' * max(1, round(40 * n / top)):<40} {n}"))
    if st["flagged"]:
        console.print(Text("flagged: " + ", ".join(st["flagged"]), style="bold red"))


# --- HTML -------------------------------------------------------------------------------------
def esc(v: object) -> str:
    return html.escape(str(v), quote=True)


def _table(head: list[str], rows: list[list[str]], cls: str) -> str:
    out = [f"<table class='{cls}'><tr>", *(f"<th>{esc(h)}</th>" for h in head), "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td class='num'>{esc(c)}</td>" for c in r) + "</tr>")
    return "".join(out) + "</table>"


def rate_svg(rows: list[dict], label: str, width: int = 520, height: int = 170) -> str:
    """Observed rate (dot), its interval (whisker) and the expected rate (red tick) per row."""
    if not rows:
        return ""
    left, bottom, top = 40, 24, 10
    step = (width - left - 10) / len(rows)
    y = lambda v: top + (1 - v) * (height - top - bottom)  # noqa: E731
    parts = [f"<svg class='stats-chart' role='img' aria-label='{esc(label)}' width='{width}' height='{height}' "
             f"viewBox='0 0 {width} {height}' xmlns='http://www.w3.org/2000/svg'>"]
    for t in (0, 0.5, 1):
        parts.append(f"<line x1='{left}' x2='{width - 10}' y1='{y(t):.1f}' y2='{y(t):.1f}' stroke='#ddd'/>"
                     f"<text x='2' y='{y(t) + 4:.1f}'>{t:.0%}</text>")
    for i, r in enumerate(rows):
        x = left + step * (i + 0.5)
        lo, hi = r["ci"]
        colour = "#b00020" if r["flag"] else "#335"
        parts.append(f"<g class='row' data-flag='{esc(r['flag'] or '')}'><line x1='{x:.1f}' x2='{x:.1f}' "
                     f"y1='{y(lo):.1f}' y2='{y(hi):.1f}' stroke='{colour}' stroke-width='2'/>")
        if r["rate"] is not None:
            parts.append(f"<circle cx='{x:.1f}' cy='{y(r['rate']):.1f}' r='3.5' fill='{colour}'/>")
        if r["expected"] is not None:
            parts.append(f"<line class='expected' x1='{x - 8:.1f}' x2='{x + 8:.1f}' y1='{y(r['expected']):.1f}' "
                         f"y2='{y(r['expected']):.1f}' stroke='#e07000' stroke-width='2'/>")
        parts.append(f"<text x='{x:.1f}' y='{height - 6}' text-anchor='middle'>{esc(r['key'])}</text></g>")
    return "".join(parts) + "</svg>"


def length_svg(counts: dict[str, int], width: int = 520, height: int = 150) -> str:
    """Bars: how many runs had each length (hops)."""
    if not counts:
        return ""
    left, bottom, top = 30, 22, 8
    step = (width - left - 10) / len(counts)
    peak = max(counts.values())
    parts = [f"<svg class='stats-chart' role='img' aria-label='run lengths' width='{width}' height='{height}' "
             f"viewBox='0 0 {width} {height}' xmlns='http://www.w3.org/2000/svg'>"]
    for i, (length, n) in enumerate(counts.items()):
        h = (height - top - bottom) * n / peak
        x = left + step * i
        parts.append(f"<g class='bar'><rect x='{x + 1:.1f}' y='{height - bottom - h:.1f}' width='{max(step - 2, 1):.1f}' "
                     f"height='{h:.1f}' fill='#6a8caf'><title>{esc(length)} hops: {n} runs</title></rect>"
                     f"<text x='{x + step / 2:.1f}' y='{height - 6}' text-anchor='middle'>{esc(length)}</text></g>")
    return "".join(parts) + "</svg>"


def stats_html(st: dict) -> str:
    """The statistics section of the HTML report."""
    svc_rows = [[n.upper(), v["trials"], v["breaks"], v["injected"], _pct(v["rate"]), _ci(v),
                 _pct(v["expected"]), _flag(v), _pct(v["real"]["rate"])] for n, v in st["services"].items()]
    it_rows = [[r["iteration"], r["trials"], r["breaks"], _pct(r["rate"]), _ci(r), _pct(r["expected"]), _flag(r)]
               for r in st["iterations"]]
    rl = st["run_length"]
    out = ["<section id='stats'><h2>Break statistics</h2>", f"<p>{esc(headline(st))}</p>"]
    if st["flagged"]:
        out.append(f"<p class='warning' id='flagged'>flagged: {esc(', '.join(st['flagged']))}</p>")
    out.append(_table(["service", "trials", "breaks", "injected", "rate", "interval", "FAIL_RATE", "flag",
                       "rate w/o injected"], svc_rows, "stats-services"))
    out.append(_table(["iteration", "runs", "broken", "rate", "interval", "expected", "flag"], it_rows,
                      "stats-iterations"))
    out.append("<h3>Break rate per iteration (dot: observed, bar: interval, orange: expected)</h3>")
    out.append(rate_svg([{**r, "key": r["iteration"]} for r in st["iterations"]], "break rate per iteration"))
    if rl["max"] is not None:
        out.append(f"<h3>Run lengths (mean {rl['mean']:.1f}, median {rl['median']:g}, max {rl['max']} hops)</h3>")
        out.append(length_svg(rl["counts"]))
    return "".join(out) + "</section>"
