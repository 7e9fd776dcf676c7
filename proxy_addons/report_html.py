"""The HTML report: ONE self-contained file that opens offline — inline CSS, inline SVG, no script,
no external URL (a Content-Security-Policy of ``default-src 'none'`` enforces it). The runs table,
then for each broken (or failed) run a sequence diagram client → gateway → services with the
breaking hop highlighted and the state at break shown. Every value is escaped: payloads are
untrusted."""

from __future__ import annotations

import html
import time

from proxy_addons.diagnosis import OUTCOMES, Diagnosis
from proxy_addons.report_cells import COLUMNS, change_text, compact, hop_label, name, row, skipped_line

MAX_DIAGRAMS = 200  # broken runs drawn in one file; `--run R` draws any one of the others
HEAD_HOPS, TAIL_HOPS = 4, 30  # a long run is drawn as its first and last hops around a gap
COL_W, ROW_H, TOP = 150, 34, 46

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.5em 0 .4em}h3{font-size:1em;margin:.6em 0 .2em}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right}
.warning{background:#fff4d6;border:1px solid #e0b300;padding:.4em .6em}
.outcome-broken{color:#b00020;font-weight:bold}.outcome-error{color:#8a2be2;font-weight:bold}
.outcome-completed{color:#1b7f2a}.outcome-in_flight{color:#a06000}
tr.broken td{background:#fff0f0}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.5em;white-space:pre-wrap;overflow-wrap:anywhere;margin:0}
.run{border-top:2px solid #ddd;margin-top:1.2em}.diagram{display:flex;gap:1.5em;flex-wrap:wrap;align-items:flex-start}
.state{flex:1;min-width:22em}.state-at-break pre{border-color:#b00020;background:#fff0f0}
svg text{font:12px system-ui,sans-serif}svg .life{stroke:#999;stroke-dasharray:4 3}
svg .arrow{stroke:#444;fill:none;marker-end:url(#head)}svg .break-hop .arrow{stroke:#b00020;stroke-width:2.5;marker-end:url(#head-red)}
svg .break-hop rect.band{fill:#ffd6d6}svg .break-hop text{fill:#b00020;font-weight:bold}
svg .actor rect{fill:#eef;stroke:#668}svg .gap text{fill:#888}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def html_report(report, run: Diagnosis | None = None) -> str:
    """The whole report (or, with ``run``, that run alone) as one HTML document."""
    chosen = [run] if run is not None else report.diagnoses
    broken = [d for d in chosen if d.outcome in ("broken", "error") or (d.brk and run is not None)]
    drawn = broken[:MAX_DIAGRAMS]
    parts = [
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>hoptrace report \u00b7 {esc(report.read.source)}</title><style>{CSS}</style></head><body>",
        "<h1>hoptrace report</h1>",
        f"<p class='source'>{esc(report.read.source)} \u00b7 {len(report.diagnoses)} runs \u00b7 "
        f"{report.read.read} records \u00b7 made {esc(time.strftime('%Y-%m-%d %H:%M:%S %Z'))}</p>",
    ]
    line = skipped_line(report.read)
    if line:
        parts.append(f"<p class='warning' id='skipped'>warning: {esc(line)}</p>")
    if run is None:
        parts.append(_summary(report.summary))
    if run is None and report.stats:
        from proxy_addons.stats_view import stats_html

        parts.append(stats_html(report.stats))
    parts.append(_runs_table(chosen, {d.run.run_id for d in drawn}))
    if len(broken) > len(drawn):
        parts.append(f"<p class='warning'>diagrams for the first {len(drawn)} of {len(broken)} broken "
                     "runs; <code>hoptrace report PATH --run R --format html</code> draws any other.</p>")
    parts += [_run_section(d) for d in drawn]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _summary(s: dict) -> str:
    out = ["<section id='summary'><h2>Summary</h2><table class='outcomes'><tr>"]
    out += [f"<th>{esc(o)}</th>" for o in OUTCOMES] + ["</tr><tr>"]
    out += [f"<td class='num outcome-{esc(o)}'>{s['outcomes'][o]}</td>" for o in OUTCOMES]
    out.append("</tr></table><table class='services'><tr><th>service</th><th>received</th>"
               "<th>breaks</th><th>break rate</th><th>errors</th></tr>")
    for svc, v in s["services"].items():
        out.append(f"<tr><td>{esc(name(svc))}</td><td class='num'>{v['received']}</td>"
                   f"<td class='num'>{v['breaks']}</td><td class='num'>{v['break_rate']:.1%}</td>"
                   f"<td class='num'>{v['errors']}</td></tr>")
    out.append(f"</table><p>{s['runs']} runs, {s['hops']} hops</p></section>")
    return "".join(out)


def _runs_table(diags: list[Diagnosis], drawn: set[str]) -> str:
    out = ["<section id='runs'><h2>Runs</h2><table class='runs'><tr>"]
    out += [f"<th>{esc(c)}</th>" for c in COLUMNS] + ["</tr>"]
    for d in diags:
        cells = row(d)
        rid = esc(d.run.run_id)
        out.append(f"<tr class='{esc(d.outcome)}' data-run='{rid}'>")
        for c in COLUMNS:
            text = esc(cells[c])
            if c == "run" and d.run.run_id in drawn:
                text = f"<a href='#run-{rid}'>{text}</a>"
            cls = f" class='outcome-{esc(d.outcome)}'" if c == "outcome" else ""
            out.append(f"<td{cls}>{text}</td>")
        out.append("</tr>")
    out.append("</table></section>")
    return "".join(out)


def _run_section(d: Diagnosis) -> str:
    b = d.brk or {}
    rid = esc(d.run.run_id)
    title = (f"run {rid} \u00b7 {esc(d.outcome)} at hop {esc(b.get('hop'))} \u00b7 iteration "
             f"{esc(b.get('iteration'))} \u00b7 {esc(name(b.get('service')))} {esc(b.get('status'))}")
    boxes = [("state-at-break", "state at break", compact(b.get("state"), None, "null")),
             ("last-good-state", "last good state", compact(b.get("last_good_state"), None, "null")),
             ("change", "what the last good service changed", change_text(b.get("change"))),
             ("detail", "error body", compact(b.get("detail"), None, "null"))]
    state = "".join(f"<div class='{c}'><h3>{esc(t)}</h3><pre>{esc(v)}</pre></div>" for c, t, v in boxes)
    return (f"<section class='run {esc(d.outcome)}' id='run-{rid}'><h2>{title}</h2>"
            f"<div class='diagram'>{sequence_svg(d)}<div class='state'>{state}</div></div></section>")


def _shown_hops(hops: list) -> list:
    """All hops, or for a long run the first few, a gap (None) and the last ones."""
    if len(hops) <= HEAD_HOPS + TAIL_HOPS + 1:
        return list(hops)
    return [*hops[:HEAD_HOPS], None, *hops[-TAIL_HOPS:]]


def sequence_svg(d: Diagnosis) -> str:
    """client → gateway → service for each hop, top to bottom; the breaking hop in red, with the
    state at break written under it."""
    hops = d.run.hops
    actors = ["client", "gateway"] + list(dict.fromkeys(h.to or "?" for h in hops))
    x = {a: 70 + i * COL_W for i, a in enumerate(actors)}
    shown = _shown_hops(hops)
    brk_fid = (d.brk or {}).get("flow_id")
    width = max(70 * 2 + COL_W * (len(actors) - 1), 700)
    height = TOP + ROW_H * (len(shown) + 2) + 30
    out = [f"<svg class='sequence' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
           f"viewBox='0 0 {width} {height}' role='img' aria-label='sequence of run {esc(d.run.run_id)}'>",
           "<defs>" + "".join(
               f"<marker id='{mid}' markerUnits='userSpaceOnUse' markerWidth='9' markerHeight='9' "
               f"refX='8' refY='4.5' orient='auto'><path d='M0,0 L9,4.5 L0,9 z' fill='{color}'/></marker>"
               for mid, color in (("head", "#444"), ("head-red", "#b00020"))) + "</defs>"]
    for a in actors:
        label = esc(name(a) if a != "gateway" else "gateway")
        out.append(f"<g class='actor'><rect x='{x[a] - 45}' y='6' width='90' height='24' rx='4'/>"
                   f"<text x='{x[a]}' y='23' text-anchor='middle'>{label}</text>"
                   f"<line class='life' x1='{x[a]}' y1='30' x2='{x[a]}' y2='{height - 10}'/></g>")
    y = TOP + 16 - ROW_H
    for h in shown:
        y += ROW_H
        if h is None:
            out.append(f"<g class='gap'><text x='{x['gateway']}' y='{y}' text-anchor='middle'>"
                       f"\u22ee {len(hops) - HEAD_HOPS - TAIL_HOPS} hops not drawn \u22ee</text></g>")
            continue
        out.append(_hop_row(h, x, y, width, h.flow_id == brk_fid))
        if h.flow_id == brk_fid:
            state = esc(compact((d.brk or {}).get("state"), 80, "null"))
            out.append(f"<g class='break-hop break-state'><text x='10' y='{y + ROW_H - 4}'>"
                       f"state at break: {state}</text></g>")
            y += ROW_H
    out.append("</svg>")
    return "".join(out)


def _hop_row(h, x: dict, y: int, width: int, is_break: bool) -> str:
    ex = h.exchange
    status = "open" if ex.ended is None else (ex.status if ex.status is not None else "error")
    src, gw, dst = x.get(h.sender, x["client"]), x["gateway"], x.get(h.to or "?", x["gateway"])
    cls = "hop break-hop" if is_break else "hop"
    band = f"<rect class='band' x='0' y='{y - 16}' width='{width}' height='{ROW_H * 2 - 6}'/>" if is_break else ""
    mark = " \u2716 break" if is_break else ""
    tip = esc(f"hop {h.hop} {hop_label(h)} {ex.method} {ex.path} \u2192 {status}; request {compact(ex.request, 300)}")
    return (f"<g class='{cls}' data-hop='{h.hop}'><title>{tip}</title>{band}"
            f"<line class='arrow' x1='{src}' y1='{y + 5}' x2='{gw}' y2='{y + 5}'/>"
            f"<line class='arrow' x1='{gw}' y1='{y + 13}' x2='{dst}' y2='{y + 13}'/>"
            f"<text x='{gw + 6}' y='{y}'>hop {h.hop} \u00b7 {esc(hop_label(h))} \u00b7 "
            f"{esc(ex.method)} {esc(ex.path)} \u00b7 {esc(status)}{mark}</text></g>")
