"""Security, with real processes: secrets reach the upstream and come back unchanged while no
file the gateway writes holds them; dumps are private; listening beyond loopback warns."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys

import httpx
import pytest

from proxy_addons import stack as stk
from tests.conftest import flow_records

pytestmark = pytest.mark.e2e

NOT_HERE = "192.0.2.1"  # TEST-NET-1: never this machine's, so binding fails after the warning


def dump_files(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def assert_nowhere(folder, secret_values: list[str]) -> None:
    files = dump_files(folder)
    assert files
    for path, data in files.items():
        for s in secret_values:
            for form in (s.encode(), base64.b64encode(s.encode()), json.dumps(s).encode()):
                assert form not in data, f"{s!r} found in {path}"


def assert_private(folder) -> None:
    assert folder.stat().st_mode & 0o777 == 0o700
    for path in dump_files(folder):
        if path.parent == folder:
            assert path.stat().st_mode & 0o777 == 0o600, path


def test_secrets_reach_the_upstream_but_no_dump(procs, tmp_path):
    token, sid, pw = (secrets.token_hex(8) for _ in range(3))
    port, gp = stk.free_ports(2)
    procs.append(stk.start_uvicorn("mirror", "tests.apps.mirror:app", port, log_dir=tmp_path / "logs"))
    session = tmp_path / "s"
    gw = stk.start_gateway(gp, {"/": f"http://127.0.0.1:{port}"}, session=session,
                           sets={"hoptrace_redact_json": "user.password,headers.*.1,body_b64",
                                 "hoptrace_redact_headers": "authorization,cookie,set-cookie,x-want-header"})
    # (the mirror's answer repeats the request's headers and body, and x-want-header asks it for
    # the Set-Cookie: those are where the secrets are in this exchange, so they are listed)
    procs.append(gw)
    body = json.dumps({"user": {"name": "ann", "password": pw}}).encode()
    headers = {"Authorization": f"Bearer {token}", "Cookie": f"sid={sid}", "content-type": "application/json",
               "x-want-header": f"Set-Cookie: sid={sid}; HttpOnly"}
    with httpx.Client(trust_env=False, timeout=30) as c:
        r = c.post(f"http://127.0.0.1:{gp}/login", content=body, headers=headers)
    assert r.status_code == 200
    seen = r.json()
    assert ["authorization", f"Bearer {token}"] in seen["headers"] and ["cookie", f"sid={sid}"] in seen["headers"]
    assert base64.b64decode(seen["body_b64"]) == body  # the upstream got it all, unchanged
    assert r.headers["set-cookie"] == f"sid={sid}; HttpOnly"  # and the client its cookie
    gw.stop()  # SIGTERM: flows.har is written
    assert (session / "flows.har").exists()
    assert_nowhere(session, [token, sid, pw])
    (rec,) = flow_records(session / "flows.jsonl")
    assert rec["request"]["body"]["value"]["user"]["name"] == "ann"
    assert dict(rec["request"]["headers"])["Authorization"].startswith("[redacted ")
    assert_private(session)


def test_a_payload_secret_never_reaches_runs_or_reports(start_stack):
    pw = secrets.token_hex(8)
    st = start_stack(fail_rate=0, max_hops=4, gateway_sets={"hoptrace_redact_json": "**.password"})
    kick = {"name": "payload", "digits": [], "password": pw}
    r = httpx.post(st.url + "/a/", json=kick, timeout=30)
    assert r.status_code == 200 and r.json()["payload"]["password"] == pw  # live hops keep it
    st.gateway.stop()
    recs = flow_records(st.session / "flows.jsonl")
    assert len(recs) == 4
    hashed = {rec["request"]["body"]["value"]["password"] for rec in recs}
    assert len(hashed) == 1 and next(iter(hashed)).startswith("[redacted ")  # same value, same hash
    assert (st.session / "runs.jsonl").exists() and (st.session / "flows.har").exists()
    assert_nowhere(st.session, [pw])
    assert_private(st.session)
    report = subprocess.run([sys.executable, "-m", "proxy_addons.cli", "report", str(st.session), "--format", "json"],
                            capture_output=True, text=True, timeout=60)
    assert report.returncode == 0 and pw not in report.stdout and "[redacted " in report.stdout


def hoptrace(*args: str) -> list[str]:
    return [sys.executable, "-m", "proxy_addons.cli", *args]


def test_listening_beyond_loopback_warns(procs, tmp_path):
    port, a_port, b_port = (str(p) for p in stk.free_ports(3))
    gw = subprocess.run(hoptrace("gateway", "--host", NOT_HERE, "--listen", port, "--route", "/a/=http://127.0.0.1:9",
                                 "--session", str(tmp_path / "s"), "--quiet"),
                        capture_output=True, text=True, timeout=60)
    assert f"warning: listening on {NOT_HERE}" in gw.stderr and gw.returncode != 0
    up = subprocess.run(hoptrace("up", "--no-web", "--host", NOT_HERE, "--dumps", str(tmp_path / "d"), "--port", port,
                                 "--a-port", a_port, "--b-port", b_port),
                        capture_output=True, text=True, timeout=90)
    assert f"warning: listening on {NOT_HERE}" in up.stderr
    assert up.returncode == 1 and "could not start" in up.stderr and NOT_HERE in up.stderr
    svc = stk.spawn("service-a", stk.service_cmd("a"), {"HOST": NOT_HERE, "PORT": port}, tmp_path / "logs")
    procs.append(svc)
    svc.popen.wait(30)
    assert f"HOST={NOT_HERE}: listening beyond this machine" in svc.log_path.read_text()
    quiet = stk.start_service("b", stk.free_port(), "http://127.0.0.1:9/a/", tmp_path / "logs2")  # HOST=127.0.0.1
    procs.append(quiet)
    quiet.stop()
    assert "listening beyond" not in quiet.log_path.read_text()
