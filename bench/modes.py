"""The four set-ups the gateway benchmark compares, each its own A/B pair on free loopback ports:

  direct        A and B call each other, no proxy (the physical limit)
  bare          mitmdump with only the routing addon (proxy_addons/gateway_bare.py)
  hoptrace      mitmdump with the full gateway (proxy_addons/gateway.py), every dump on
  hoptrace-web  the same under mitmweb

Services run with FAIL_RATE=0 and a fixed MAX_HOPS, so every run is exactly MAX_HOPS hops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from proxy_addons import stack as stk

MODES = ("direct", "bare", "hoptrace", "hoptrace-web")
BARE_SCRIPT = Path(stk.__file__).with_name("gateway_bare.py")


@dataclass
class Setup:
    """One running mode: its processes, the kick URL and, for hoptrace, the session folder."""

    mode: str
    url: str
    procs: list[stk.Proc] = field(default_factory=list)
    session: Path | None = None

    @property
    def gateway_pid(self) -> int | None:
        return self.procs[-1].pid if self.mode != "direct" else None

    @property
    def service_pids(self) -> list[int]:
        """B's and A's uvicorn processes (started first, in every mode)."""
        return [p.pid for p in self.procs[:2]]

    def stop(self) -> None:
        for p in reversed(self.procs):  # the gateway first, then the services
            p.stop()


def start_service(name: str, port: int, partner: str, logs: Path, max_hops: int) -> stk.Proc:
    """A service in uvicorn with a long keep-alive: the pauses while other modes are measured
    must not let the services close idle connections under a gateway without our FreshUpstream
    addon (mitmproxy would answer 502 on that race: proxy_addons/upstream.py)."""
    env = {"PORT": str(port), "HOST": "127.0.0.1", "PARTNER_URL": partner, "FAIL_RATE": "0",
           "MAX_HOPS": str(max_hops)}
    return stk.start_uvicorn(f"service-{name}", f"services.{name}:make_app", port, env, logs,
                             uvicorn_args=["--factory", "--timeout-keep-alive", "600"])


def start_mode(mode: str, workdir: Path, max_hops: int) -> Setup:
    """Start one mode's processes; on any failure stop what was started."""
    ap, bp, gp, wp = stk.free_ports(4)  # distinct: the gateway's and mitmweb's are bound last
    logs = workdir / mode / "logs"
    via = f"http://127.0.0.1:{gp}"
    partner = {"a": f"{via}/b/", "b": f"{via}/a/"}
    if mode == "direct":
        partner = {"a": f"http://127.0.0.1:{bp}/b/", "b": f"http://127.0.0.1:{ap}/a/"}
    setup = Setup(mode, f"http://127.0.0.1:{ap if mode == 'direct' else gp}/a/")
    try:
        setup.procs.append(start_service("b", bp, partner["b"], logs, max_hops))
        setup.procs.append(start_service("a", ap, partner["a"], logs, max_hops))
        if mode == "direct":
            return setup
        routes = {"/a/": f"http://127.0.0.1:{ap}", "/b/": f"http://127.0.0.1:{bp}"}
        kw: dict = {"sets": {"hoptrace_har": "false"}}
        if mode == "bare":
            kw = {"script": BARE_SCRIPT}
        else:
            setup.session = workdir / mode / "session"
            kw["session"] = setup.session
        if mode == "hoptrace-web":
            kw.update(web=True, web_port=wp, web_password="bench")
        setup.procs.append(stk.start_gateway(gp, routes, logs, **kw))
        return setup
    except BaseException:
        setup.stop()
        raise


def start_all(modes: list[str], workdir: Path, max_hops: int) -> dict[str, Setup]:
    started: dict[str, Setup] = {}
    try:
        for m in modes:
            started[m] = start_mode(m, workdir, max_hops)
        return started
    except BaseException:
        for s in started.values():
            s.stop()
        raise
