"""Start and stop the real processes (services A/B, the gateway): one place for `hoptrace up`,
the tests, the load and benchmark scripts. Every process is started on loopback, waited for by
polling, and stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ADDON_SCRIPT = Path(__file__).with_name("gateway.py")


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def free_ports(n: int, host: str = "127.0.0.1", avoid: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """``n`` distinct ports free now, none in ``avoid``. They are all held while chosen: calling
    ``free_port`` once per port may hand the same port out twice (a stack's A and its gateway
    got one port once, and the gateway's readiness probe found A listening there)."""
    socks: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < n:
            s = socket.socket()
            socks.append(s)
            s.bind((host, 0))
            if (port := s.getsockname()[1]) not in avoid:
                ports.append(port)
        return ports
    finally:
        for s in socks:
            s.close()


def probe_host(host: str) -> str:
    """Where to look for a listener on ``host``: loopback for the wildcard addresses."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


class PortInUse(RuntimeError):
    """Another process already listens on a port a process of ours is to listen on (``what``:
    "gateway", "mitmweb", "service a" …; None for ports given twice)."""

    def __init__(self, message: str, what: str | None = None) -> None:
        super().__init__(message)
        self.what = what


def ensure_free(host: str, port: int, what: str) -> None:
    """Refuse to start ``what`` on a port something already listens on: its readiness probe
    would find that listener and call ours ready before ours has even tried to bind (mitmproxy
    then exits with "address already in use" about a second later)."""
    try:
        taken = port_open(host, port)
    except OSError:
        return
    if taken:
        raise PortInUse(f"{what}: port {port} on {host} is already in use by another process; "
                        "stop it or choose another port", what)


@dataclass
class Proc:
    """A child process with its output in a log file."""

    name: str
    popen: subprocess.Popen
    log_path: Path | None = None
    meta: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, n: int = 30) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Ask politely (SIGTERM: mitmproxy then writes its HAR), then SIGKILL by PID."""
        if self.alive():
            try:
                os.kill(self.pid, sig)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(5)
            except ProcessLookupError:
                pass
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL at once (crash tests)."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(5)


def spawn(name: str, cmd: list[str], env: dict | None = None, log_dir: Path | None = None) -> Proc:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{name}.log"
        out = open(log_path, "ab")
    else:
        log_path, out = None, None
    popen = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT if out else None,
                             stdin=subprocess.DEVNULL, start_new_session=True)
    if out is not None:
        out.close()
    return Proc(name, popen, log_path)


def wait_until(check, proc: Proc | None, timeout: float, what: str) -> None:
    """Poll ``check()`` until true; fail early (with the log tail) if the process died."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode} before {what}:\n{proc.log_tail()}")
        try:
            if check():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
    tail = proc.log_tail() if proc else ""
    raise TimeoutError(f"{what}: not ready after {timeout:g} s\n{tail}")


def port_open(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=0.5):
        return True


def service_cmd(name: str) -> list[str]:
    return [sys.executable, "-m", "services", name]


def start_uvicorn(name: str, app: str, port: int, env: dict | None = None,
                  log_dir: Path | None = None, timeout: float = 30.0, ready_path: str = "/health",
                  uvicorn_args: list[str] | tuple[str, ...] = ()) -> Proc:
    """Any ASGI app (``module:attr``) in its own uvicorn process, e.g. a pipeline under test;
    ``uvicorn_args`` are passed on (e.g. ``["--factory", "--timeout-keep-alive", "1"]``)."""
    cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", *uvicorn_args]
    ensure_free("127.0.0.1", port, name)
    proc = spawn(name, cmd, env, log_dir)
    proc.meta.update(port=port, url=f"http://127.0.0.1:{port}")
    wait_until(lambda: port_open("127.0.0.1", port), proc, timeout, f"{name} on port {port}")
    return proc


def start_service(name: str, port: int, partner_url: str, log_dir: Path | None = None,
                  timeout: float = 30.0, **settings) -> Proc:
    """Start service ``a`` or ``b``; ``settings`` become env vars (fail_rate=0 → FAIL_RATE=0)."""
    env = {"PORT": str(port), "HOST": "127.0.0.1", "PARTNER_URL": partner_url}
    env.update({k.upper(): str(v) for k, v in settings.items() if v is not None})
    ensure_free("127.0.0.1", port, f"service {name}")
    proc = spawn(f"service-{name}", service_cmd(name), env, log_dir)
    proc.meta.update(port=port, url=f"http://127.0.0.1:{port}")
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200,
               proc, timeout, f"service {name} on port {port}")
    return proc


def gateway_args(listen: int, routes: dict[str, str], *, session: Path | None = None,
                 dumps: Path | None = None, web: bool = False, web_port: int = 8081,
                 web_password: str | None = None, host: str = "127.0.0.1",
                 sets: dict[str, object] | None = None, quiet: bool = True,
                 script: Path | str = ADDON_SCRIPT) -> list[str]:
    """mitmdump/mitmweb arguments for a recording reverse-proxy gateway (``script``: another
    addon script, e.g. the routing-only one the benchmark compares against)."""
    if not routes:
        raise ValueError("at least one route is needed")
    first = next(iter(routes.values()))
    args = ["--mode", f"reverse:{first}@{host}:{listen}", "-s", str(script),
            "--set", "routes=" + ",".join(f"{p}={u}" for p, u in routes.items()),
            "--set", "connection_strategy=lazy"]
    if session is not None:
        args += ["--set", f"hoptrace_session={session}"]
    if dumps is not None:
        args += ["--set", f"hoptrace_dumps={dumps}"]
    if quiet:
        args += ["--set", "flow_detail=0"]
    if web:
        args += ["--set", f"web_port={web_port}", "--set", "web_host=127.0.0.1",
                 "--set", "web_open_browser=false"]
        if web_password:
            args += ["--set", f"web_password={web_password}"]
    for k, v in (sets or {}).items():
        args += ["--set", f"{k}={v}"]
    return args


def gateway_cmd(args: list[str], web: bool = False) -> list[str]:
    tool = "mitmweb" if web else "mitmdump"
    return [sys.executable, "-c", f"import sys; from mitmproxy.tools.main import {tool}; sys.exit({tool}())", *args]


def start_gateway(listen: int, routes: dict[str, str], log_dir: Path | None = None,
                  timeout: float = 30.0, **kw) -> Proc:
    web = kw.get("web", False)
    probe = probe_host(kw.get("host", "127.0.0.1"))
    ensure_free(probe, listen, "gateway")
    if web:
        ensure_free("127.0.0.1", kw.get("web_port", 8081), "mitmweb")
    proc = spawn("gateway", gateway_cmd(gateway_args(listen, routes, **kw), web), None, log_dir)
    proc.meta.update(port=listen, url=f"http://127.0.0.1:{listen}")
    wait_until(lambda: port_open(probe, listen), proc, timeout, f"gateway on {probe}:{listen}")
    if web:
        wp = kw.get("web_port", 8081)
        wait_until(lambda: port_open("127.0.0.1", wp), proc, timeout, f"mitmweb on port {wp}")
    return proc


@dataclass
class Stack:
    """A, B and the gateway, wired so that every hop goes through the gateway."""

    a: Proc
    b: Proc
    gateway: Proc
    session: Path | None

    @property
    def url(self) -> str:
        return self.gateway.meta["url"]

    def procs(self) -> list[Proc]:
        return [self.gateway, self.a, self.b]

    def stop(self, gateway_timeout: float = 10.0) -> None:
        """The gateway first, so that no 502 of a service going away is recorded as a break; it
        is given ``gateway_timeout`` seconds to finish (it writes flows.har from flows.mitm then)."""
        self.gateway.stop(gateway_timeout)
        for p in (self.a, self.b):
            p.stop()

    def kill(self) -> None:
        for p in self.procs():
            p.kill()


def start_stack(*, gateway_port: int | None = None, a_port: int | None = None,
                b_port: int | None = None, session: Path | None = None, log_dir: Path | None = None,
                web: bool = False, web_port: int | None = None, web_password: str | None = None,
                gateway_sets: dict | None = None, quiet: bool = True, gateway_host: str = "127.0.0.1",
                a_settings: dict | None = None, b_settings: dict | None = None,
                script: Path | str = ADDON_SCRIPT, **settings) -> Stack:
    """Start B, A, then the gateway; on any failure stop what was started. ``settings`` go to both
    services, ``a_settings``/``b_settings`` to one (e.g. ``b_settings={"fail_rate": 1}``). The
    services always listen on loopback; only the gateway may be put elsewhere (``gateway_host``)."""
    given = [p for p in (gateway_port, a_port, b_port, web_port if web else None) if p]
    if len(set(given)) < len(given):
        raise PortInUse(f"the same port given twice: {sorted(given)}")
    fresh = iter(free_ports(4, avoid=set(given)))
    gp, ap, bp = gateway_port or next(fresh), a_port or next(fresh), b_port or next(fresh)
    web_port = web_port or next(fresh)
    # every port checked before anything starts (each start checks its own again, as it spawns)
    ensure_free(probe_host(gateway_host), gp, "gateway")
    for what, port in (("service a", ap), ("service b", bp), ("mitmweb", web_port if web else None)):
        if port is not None:
            ensure_free("127.0.0.1", port, what)
    gw = f"http://127.0.0.1:{gp}"
    started: list[Proc] = []
    try:
        b = start_service("b", bp, f"{gw}/a/", log_dir, **{**settings, **(b_settings or {})})
        started.append(b)
        a = start_service("a", ap, f"{gw}/b/", log_dir, **{**settings, **(a_settings or {})})
        started.append(a)
        routes = {"/a/": f"http://127.0.0.1:{ap}", "/b/": f"http://127.0.0.1:{bp}"}
        g = start_gateway(gp, routes, log_dir, session=session, web=web,
                          web_port=web_port, web_password=web_password,
                          sets=gateway_sets, quiet=quiet, host=gateway_host, script=script)
        return Stack(a, b, g, session)
    except BaseException:
        for p in started:
            p.stop()
        raise
