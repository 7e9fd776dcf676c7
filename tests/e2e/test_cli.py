"""`hoptrace up` and `hoptrace kick` as a user runs them (real processes, free ports)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import httpx
import pytest

from proxy_addons import stack as stk
from tests.conftest import flow_records

pytestmark = pytest.mark.e2e


def hoptrace(*args: str) -> list[str]:
    return [sys.executable, "-m", "proxy_addons.cli", *args]


@pytest.mark.parametrize("web", [False, True], ids=["mitmdump", "mitmweb"])
def test_up_kick_and_clean_stop(procs, tmp_path, web):
    gp, ap, bp, wp = stk.free_ports(4)
    args = ["up", "--dumps", str(tmp_path / "dumps"), "--port", str(gp), "--a-port", str(ap),
            "--b-port", str(bp), "--web-port", str(wp), "--fail-rate", "0.3", "--max-hops", "20"]
    if not web:
        args.append("--no-web")
    up = stk.spawn("up", hoptrace(*args), {"HOPTRACE_WEB_PASSWORD": "pw-for-test"} if web else None,
                   tmp_path / "logs")
    procs.append(up)
    stk.wait_until(lambda: "Ctrl-C stops everything" in up.log_path.read_text(), up, 60, "hoptrace up")
    out = up.log_path.read_text()
    session = re.search(r"dumps\s+(\S+)/", out).group(1)
    assert f"localhost:{gp}/a/" in out and "d;5Digits" in out

    kick = subprocess.run(hoptrace("kick", "-n", "12", "-c", "4", "--url", f"http://127.0.0.1:{gp}/a/"),
                          capture_output=True, text=True, timeout=120)
    assert kick.returncode == 0, kick.stderr
    assert re.match(r"12 runs: .*median kick", kick.stdout)

    if web:
        assert f"http://127.0.0.1:{wp}/?token=pw-for-test" in out
        assert httpx.get(f"http://127.0.0.1:{wp}/flows").status_code == 403
        flows = httpx.get(f"http://127.0.0.1:{wp}/flows", params={"token": "pw-for-test"})
        assert flows.status_code == 200 and len(flows.json()) >= 12
        opts = httpx.get(f"http://127.0.0.1:{wp}/options", params={"token": "pw-for-test"}).json()
        assert "comment" in opts["web_columns"]["value"]  # run · hop · A→B shown by default
        assert any(f["comment"].startswith("run ") for f in flows.json())

    up.stop(sig=signal.SIGINT, timeout=30)
    assert up.popen.returncode == 0
    assert "stopped." in up.log_path.read_text()
    recs = flow_records(tmp_path / "dumps" / session.split("/")[-1] / "flows.jsonl")
    assert sum(r["started"] == min(x["started"] for x in recs) for r in recs) == 1
    assert len([r for r in recs if r["path"] == "/a/"]) >= 12
    har = json.loads((tmp_path / "dumps" / session.split("/")[-1] / "flows.har").read_text())
    assert len(har["log"]["entries"]) == len(recs)
    services = json.loads((tmp_path / "dumps" / session.split("/")[-1] / "services.json").read_text())
    assert services["a"]["fail_rate"] == services["b"]["fail_rate"] == 0.3  # for report --stats
    # nothing left listening
    for port in (gp, ap, bp, wp):
        with pytest.raises(OSError):
            stk.port_open("127.0.0.1", port)


def test_kick_reports_unreachable_gateway():
    port = stk.free_port()
    kick = subprocess.run(hoptrace("kick", "--url", f"http://127.0.0.1:{port}/a/", "--quiet"),
                          capture_output=True, text=True, timeout=60)
    assert kick.returncode == 1 and "1 runs: 1 error (ConnectError" in kick.stdout


def test_gateway_bad_route_is_a_clear_error():
    r = subprocess.run(hoptrace("gateway", "--route", "a=b"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "is not PREFIX=URL" in r.stderr


@pytest.mark.parametrize(("flag", "what"), [("--port", "gateway"), ("--a-port", "service a")])
def test_up_on_a_port_in_use_says_so_and_leaves_nothing_running(tmp_path, flag, what):
    """The readiness probe found the other process on the port: `hoptrace up` printed "hoptrace
    is up" and the kick line, then "gateway exited" once mitmproxy failed to bind. Now it
    refuses before starting anything, and says which port and which option moves it."""
    import socket

    ports = dict(zip(("--port", "--a-port", "--b-port", "--web-port"), stk.free_ports(4), strict=True))
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = ports[flag] = other.getsockname()[1]
        up = subprocess.run(hoptrace("up", "--no-web", "--dumps", str(tmp_path / "d"),
                                     *(str(v) for kv in ports.items() for v in kv)),
                            capture_output=True, text=True, timeout=120, check=False)
    out = " ".join((up.stdout + up.stderr).split())
    assert up.returncode == 1
    assert (f"could not start: {what}: port {taken} on 127.0.0.1 is already in use by another process; "
            f"stop it or choose another port ({flag} PORT)") in out
    assert "hoptrace is up" not in out
    assert not list((tmp_path / "d").glob("*/logs/service-*.log"))  # neither A nor B was started
    for port in (ports["--a-port"], ports["--b-port"]):
        if port != taken:
            with pytest.raises(OSError):
                stk.port_open("127.0.0.1", port)


def test_gateway_on_a_port_in_use_says_so(tmp_path):
    import socket

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        gw = subprocess.run(hoptrace("gateway", "--listen", str(taken), "--route", "/a/=http://127.0.0.1:9",
                                     "--session", str(tmp_path / "s"), "--quiet"),
                            capture_output=True, text=True, timeout=60, check=False)
    assert gw.returncode == 1
    assert (f"gateway: port {taken} on 127.0.0.1 is already in use by another process; stop it or choose "
            "another port (--listen PORT)") in " ".join((gw.stdout + gw.stderr).split())
    assert not (tmp_path / "s").exists()  # no session opened for a gateway that never ran
