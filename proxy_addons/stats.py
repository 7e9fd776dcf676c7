"""PURE: do breaks happen more often than they should? Break rates with Wilson intervals, compared
with the services' configured FAIL_RATE, and the distribution of run lengths.

Per service, a *trial* is a hop where the service decided: it rejected (a 4xx it answered, or one
the gateway injected in its place), answered, or forwarded (the hop has a child). Hops the service
never saw (gateway 502, in flight without a child) are not trials. ``observed`` counts every
break, ``real`` leaves the injected hops out: with fault injection on, ``observed`` shows what the
pipeline went through and ``real`` still estimates the services' own FAIL_RATE.

Per iteration *I* (hops 2I−1 and 2I), a trial is a run that reached iteration I; a break, a run
whose rejection is in iteration I. Expected: 1 − Π(1 − FAIL_RATE of each service seen in I).

A flag (``above`` / ``below``) says the configured rate lies outside the interval. The intervals
of one table hold together (Bonferroni: each of m rows at 1 − (1 − confidence)/m), so with many
iterations a flag is still a finding, not the one row in twenty that misses by chance.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from pathlib import Path

from proxy_addons.diagnosis import Diagnosis, rejected

DEFAULT_CONFIDENCE = 0.95
SERVICES_FILE = "services.json"  # written by `hoptrace up` into the session folder


def wilson(k: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials ((0, 1) when n is 0)."""
    if n == 0:
        return 0.0, 1.0
    z = statistics.NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(k: int, n: int, expected: float | None, confidence: float) -> dict:
    """``{trials, breaks, rate, ci, expected, flag}``; flag when expected is outside the interval."""
    lo, hi = wilson(k, n, confidence)
    flag = None
    if expected is not None and n:
        flag = "above" if expected < lo else "below" if expected > hi else None
    return {"trials": n, "breaks": k, "rate": k / n if n else None, "ci": [lo, hi],
            "expected": expected, "flag": flag}


def _trials(diags: list[Diagnosis]):
    """(service, iteration, run index, broken here, injected) per decided hop."""
    for i, d in enumerate(diags):
        parents = {h.parent for h in d.run.hops}
        for h in d.run.hops:
            ex = h.exchange
            broke = rejected(h)
            decided = broke or h.flow_id in parents or (ex.origin == "upstream" and ex.status is not None)
            if decided and h.to is not None:
                yield h.to, h.iteration, i, broke, ex.injected is not None


def break_stats(diags: list[Diagnosis], fail_rate: dict[str, float] | float | None = None,
                confidence: float = DEFAULT_CONFIDENCE, source: str | None = None) -> dict:
    """The ``stats`` object of the report (docs/report-format.md). ``fail_rate``: per service,
    or one rate for every service, or None (nothing to compare with)."""
    per: dict[str, Counter] = {}
    reached: dict[int, set[int]] = {}
    broke_in: dict[int, set[int]] = {}
    seen_in: dict[int, set[str]] = {}
    for svc, it, run, broke, injected in _trials(diags):
        c = per.setdefault(svc, Counter())
        c["n"] += 1
        c["k"] += broke
        c["inj_n"] += injected
        c["inj_k"] += broke and injected
        if it is not None:
            reached.setdefault(it, set()).add(run)
            seen_in.setdefault(it, set()).add(svc)
            if broke:
                broke_in.setdefault(it, set()).add(run)
    if isinstance(fail_rate, int | float):
        fail_rate = {svc: float(fail_rate) for svc in per}
    fail_rate = fail_rate or {}
    services = {}
    each = 1 - (1 - confidence) / max(len(per), 1)
    for svc, c in sorted(per.items()):
        exp = fail_rate.get(svc)
        services[svc] = {**rate(c["k"], c["n"], exp, each), "injected": c["inj_k"],
                         "real": rate(c["k"] - c["inj_k"], c["n"] - c["inj_n"], exp, each)}
    iterations = []
    each = 1 - (1 - confidence) / max(len(reached), 1)
    for it in sorted(reached):
        rates = [fail_rate.get(s) for s in sorted(seen_in[it])]
        exp = None if None in rates else 1 - math.prod(1 - r for r in rates)
        iterations.append({"iteration": it, **rate(len(broke_in.get(it, ())), len(reached[it]), exp, each)})
    lengths = [len(d.run.hops) for d in diags]
    return {
        "confidence": confidence,
        "adjustment": "bonferroni",
        "fail_rate": fail_rate or None,
        "fail_rate_source": source if fail_rate else None,
        "services": services,
        "iterations": iterations,
        "run_length": {
            "counts": {str(k): v for k, v in sorted(Counter(lengths).items())},
            "mean": statistics.fmean(lengths) if lengths else None,
            "median": statistics.median(lengths) if lengths else None,
            "max": max(lengths, default=None),
        },
        "flagged": sorted({f"service {s}" for s, v in services.items() if v["flag"]} |
                          {f"iteration {r['iteration']}" for r in iterations if r["flag"]}),
    }


def session_fail_rates(path: str | Path) -> dict[str, float] | None:
    """The services' FAIL_RATE as `hoptrace up` recorded it next to the dump, if it did."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    try:
        data = json.loads((folder / SERVICES_FILE).read_text())
        return {svc: float(v["fail_rate"]) for svc, v in data.items() if v.get("fail_rate") is not None}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def report_stats(diags: list[Diagnosis], path: str | Path, fail_rate: float | None = None,
                 confidence: float = DEFAULT_CONFIDENCE) -> dict:
    """Stats for `hoptrace report --stats`: the rate given on the command line, else the one the
    session recorded, else no comparison."""
    if fail_rate is not None:
        return break_stats(diags, fail_rate, confidence, "--fail-rate")
    return break_stats(diags, session_fail_rates(path), confidence, SERVICES_FILE)


def write_services(folder: Path, settings: dict) -> None:
    """`hoptrace up` records what it started A and B with (defaults filled in), so that
    `report --stats` can compare the observed break rate with the configured FAIL_RATE."""
    from proxy_addons.session import write_json
    from services.settings import Settings

    fields = Settings.model_fields
    resolved = {k: v if v is not None else fields[k].default for k, v in settings.items()}
    write_json(Path(folder) / SERVICES_FILE, {"a": resolved, "b": resolved})
