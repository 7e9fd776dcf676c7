"""The gateway never makes a break the services did not: with services that close idle keep-alive
connections after 1 s (uvicorn --timeout-keep-alive 1) and clients that come back right around
that moment, bare mitmproxy reuses a connection the service is closing and answers
`502 server closed connection`; with hoptrace_upstream_idle_ms=300 it never does."""

from __future__ import annotations

import asyncio

import pytest

from proxy_addons import race
from proxy_addons.dumpio import read_records

pytestmark = pytest.mark.e2e


def test_idle_bound_removes_the_keep_alive_race_bare_mitmproxy_has(procs, tmp_path):
    settings = {"fail_rate": 0.05, "max_hops": 4}
    bare = race.start_idle_stack(tmp_path / "bare", 1.0, race.BARE_MS, procs, **settings)
    fixed = race.start_idle_stack(tmp_path / "fixed", 1.0, 300, procs, **settings)

    async def both():
        return await asyncio.gather(*(race.sweep(st.url + "/a/", 40, 6, (0.98, 1.03)) for st in (bare, fixed)))

    bare_statuses, fixed_statuses = asyncio.run(both())
    bare_5xx, _ = race.gateway_5xx(bare.session)
    for _ in range(2):  # the race is a matter of timing: on a loaded machine one sweep may miss it
        if bare_5xx:
            break
        bare_statuses += asyncio.run(race.sweep(bare.url + "/a/", 40, 6, (0.98, 1.03)))
        bare_5xx, _ = race.gateway_5xx(bare.session)
    fixed_5xx, reconnects = race.gateway_5xx(fixed.session)
    print(f"\nbare: {dict(bare_statuses)} gateway-made 5xx {len(bare_5xx)}; "
          f"idle bound 300 ms: {dict(fixed_statuses)} gateway-made 5xx {len(fixed_5xx)}, "
          f"{reconnects} fresh upstream connections")
    assert bare_5xx and all("server closed connection" in f for f in bare_5xx)  # the race is real
    raced = [r for r in read_records(bare.session) if r["error"]]
    assert all(r["upstream_reused_idle_s"] > 0.5 for r in raced)  # on a connection idle ~1 s
    assert fixed_5xx == [], [r for r in read_records(fixed.session) if r["error"]]
    assert fixed_statuses.keys() <= {200, 400}
    assert sum(fixed_statuses.values()) == 240
    assert reconnects > 0
    reconnected = [r for r in read_records(fixed.session) if r.get("upstream_reconnect")]
    # idle longer than the bound; the record rounds to the millisecond, so 0.3002 s reads 0.3
    assert all(r["upstream_reconnect"]["idle_s"] >= r["upstream_reconnect"]["idle_max_s"] == 0.3
               and r["upstream_reconnect"]["reason"] == "idle" for r in reconnected)
