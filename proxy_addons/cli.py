"""`hoptrace`: run the stack, the gateway alone, kicks, and offline tools."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import secrets
import signal
import sys
import time
from pathlib import Path

from rich.console import Console

from proxy_addons.kick import SEED_KICK, kick_many, summary_line, validate_body
from proxy_addons.session import new_session_dir

console = Console(stderr=True, soft_wrap=True)


def warn_if_public(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        console.print(f"[bold yellow]warning:[/] listening on {host}: the gateway and its dumps "
                      "(payloads, headers) are reachable from other machines")


def parse_route(text: str) -> tuple[str, str]:
    prefix, sep, url = text.partition("=")
    if not sep or not prefix.startswith("/") or not url.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"{text!r} is not PREFIX=URL (e.g. /a/=http://127.0.0.1:8001)")
    return prefix, url


def cmd_gateway(args: argparse.Namespace) -> int:
    """The recording gateway alone, in front of services you cannot change."""
    from mitmproxy.tools.main import mitmdump, mitmweb

    from proxy_addons import stack

    warn_if_public(args.host)
    routes = dict(args.route)
    web_password = args.web_password or os.environ.get("HOPTRACE_WEB_PASSWORD") or secrets.token_urlsafe(12)
    mitm_args = stack.gateway_args(
        args.listen, routes, session=args.session, dumps=args.dumps, web=args.web,
        web_port=args.web_port, web_password=web_password, host=args.host,
        sets=dict(s.split("=", 1) for s in args.set), quiet=args.quiet,
    )
    try:  # a clear refusal now, not mitmproxy's bind error after its start-up
        stack.ensure_free(stack.probe_host(args.host), args.listen, "gateway")
        if args.web:
            stack.ensure_free("127.0.0.1", args.web_port, "mitmweb")
    except stack.PortInUse as exc:
        flag = "--web-port" if exc.what == "mitmweb" else "--listen"
        console.print(f"[bold red]could not start:[/] {exc} ({flag} PORT)")
        return 1
    if args.web and web_password:
        console.print(f"mitmweb: http://127.0.0.1:{args.web_port}/?token={web_password}")
    return (mitmweb if args.web else mitmdump)(mitm_args) or 0


UP_PORT_FLAGS = {"gateway": "--port", "service a": "--a-port", "service b": "--b-port", "mitmweb": "--web-port"}


def cmd_up(args: argparse.Namespace) -> int:
    """A, B and the gateway (mitmweb unless --no-web) on loopback, until Ctrl-C."""
    from proxy_addons import stack  # httpx, subprocesses: not what `report` needs

    warn_if_public(args.host)
    session = new_session_dir(args.dumps)
    password = os.environ.get("HOPTRACE_WEB_PASSWORD") or secrets.token_urlsafe(12)
    log_dir = session / "logs"
    settings = {"fail_rate": args.fail_rate, "seed": args.seed, "max_hops": args.max_hops}
    from proxy_addons.stats import write_services

    write_services(session, settings)  # for `hoptrace report --stats`
    console.print("starting A, B and the gateway …")
    try:
        st = stack.start_stack(gateway_port=args.port, a_port=args.a_port, b_port=args.b_port,
                               session=session, log_dir=log_dir, web=not args.no_web,
                               web_port=args.web_port, web_password=password, quiet=False,
                               gateway_host=args.host, **settings)
    except (RuntimeError, TimeoutError) as exc:
        flag = UP_PORT_FLAGS.get(getattr(exc, "what", None))
        console.print(f"[bold red]could not start:[/] {exc}" + (f" ({flag} PORT)" if flag else ""))
        return 1
    url = st.url
    console.print(f"[bold green]hoptrace is up[/]  gateway {url}  A :{st.a.meta['port']}  B :{st.b.meta['port']}")
    if not args.no_web:
        console.print(f"mitmweb   http://127.0.0.1:{args.web_port}/?token={password}  (password: {password})")
    console.print(f"dumps     {session}/  (service and gateway logs in {log_dir}/)")
    console.print(f"kick      curl 'http://localhost:{args.port}/a/' --header 'Content-Type: application/json' "
                  f"--data '{SEED_KICK}'", soft_wrap=True, highlight=False)
    console.print("          or: hoptrace kick -n 20      Ctrl-C stops everything")
    stopping = False

    def on_term(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored (`cmd &`)
    try:
        while all(p.alive() for p in st.procs()):
            time.sleep(0.5)
        dead = next(p for p in st.procs() if not p.alive())
        console.print(f"[bold red]{dead.name} exited[/] ({dead.popen.returncode}):\n{dead.log_tail()}")
        rc = 1
    except KeyboardInterrupt:
        stopping, rc = True, 0
    console.print("stopping …" if stopping else "stopping the others …")
    stop_stack(st, session)
    har = session / "flows.har"
    console.print(f"stopped. dumps in {session}/" + (" (flows.har written)" if har.exists() else
                                                      " (flows.har not written: see logs/gateway.log)"))
    return rc


HAR_WAIT = 600.0  # s the gateway may take to write flows.har at shutdown (≈ 0.6 ms a flow)


def stop_stack(st, session: Path) -> None:
    """Stop the stack, giving the gateway time to write flows.har (a long session takes a
    while: say so); a second Ctrl-C skips it: every process is killed by PID, flows.mitm and
    flows.jsonl are complete already."""
    mitm = session / "flows.mitm"
    size = mitm.stat().st_size if mitm.exists() else 0
    if size > 10 << 20:
        console.print(f"the gateway writes flows.har from flows.mitm ({size / 1e6:.0f} MB) before it exits; "
                      "Ctrl-C again to skip it")
    try:
        st.stop(gateway_timeout=HAR_WAIT)
    except KeyboardInterrupt:
        st.kill()
        (session / "flows.har.part").unlink(missing_ok=True)
        console.print("flows.har skipped")


def cmd_kick(args: argparse.Namespace) -> int:
    body = validate_body(args.body)
    results = asyncio.run(kick_many(args.url, args.n, args.concurrency, body, args.timeout,
                                    progress=not args.quiet and sys.stderr.isatty()))
    print(summary_line(results))
    return 0 if all(r.error is None for r in results) else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hoptrace", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start A, B and the recording gateway (what `make run` calls)")
    up.add_argument("--no-web", action="store_true", help="mitmdump instead of mitmweb")
    up.add_argument("--dumps", type=Path, default=Path("dumps"), help="parent of the session folders")
    up.add_argument("--host", default="127.0.0.1",
                    help="address the gateway listens on (default 127.0.0.1; anything else warns)")
    up.add_argument("--port", type=int, default=8000, help="gateway port (default 8000)")
    up.add_argument("--a-port", type=int, default=8001)
    up.add_argument("--b-port", type=int, default=8002)
    up.add_argument("--web-port", type=int, default=8081)
    up.add_argument("--fail-rate", type=float, default=None, help="services' FAIL_RATE (default 4/11)")
    up.add_argument("--seed", type=int, default=None, help="services' SEED (same seed + kicks → same runs)")
    up.add_argument("--max-hops", type=int, default=None, help="services' MAX_HOPS (default 100)")
    up.set_defaults(func=cmd_up)

    gw = sub.add_parser("gateway", help="the recording gateway alone, in front of any services")
    gw.add_argument("--listen", type=int, default=8000, help="port to listen on (default 8000)")
    gw.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    gw.add_argument("--route", type=parse_route, action="append", required=True,
                    metavar="PREFIX=URL", help="e.g. --route /a/=http://127.0.0.1:8001 (repeatable)")
    gw.add_argument("--dumps", type=Path, default=Path("dumps"), help="parent of the session folders")
    gw.add_argument("--session", type=Path, default=None, help="record into this exact folder")
    gw.add_argument("--web", action="store_true", help="mitmweb instead of mitmdump")
    gw.add_argument("--web-port", type=int, default=8081)
    gw.add_argument("--web-password", default=None, help="default: $HOPTRACE_WEB_PASSWORD or a random token")
    gw.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                    help="any mitmproxy/hoptrace option (repeatable)")
    gw.add_argument("--quiet", action="store_true", help="do not print a line per flow")
    gw.set_defaults(func=cmd_gateway)

    k = sub.add_parser("kick", help="send the seed's kick N times")
    k.add_argument("-n", type=int, default=1, help="number of kicks (default 1)")
    k.add_argument("--concurrency", "-c", type=int, default=1)
    k.add_argument("--url", default="http://127.0.0.1:8000/a/")
    k.add_argument("--body", default=SEED_KICK, help="JSON body (default: the seed's kick)")
    k.add_argument("--timeout", type=float, default=120.0)
    k.add_argument("--quiet", action="store_true")
    k.set_defaults(func=cmd_kick)

    from proxy_addons.report import add_parser as add_report_parser

    add_report_parser(sub)
    from proxy_addons.replay import add_parser as add_replay_parser

    add_replay_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "n", 1) < 1 or getattr(args, "concurrency", 1) < 1:
        console.print("[red]-n and --concurrency must be >= 1[/]")
        return 2
    try:
        return args.func(args) or 0
    except BrokenPipeError:  # the reader went away (`hoptrace report --format json … | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
        return 128 + signal.SIGPIPE  # what a shell reports for a command a closed pipe stopped


if __name__ == "__main__":
    sys.exit(main())
