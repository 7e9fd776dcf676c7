"""No Docker engine here: validate docker-compose.yml as a file."""

from __future__ import annotations

import re

import yaml

from tests.conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_services_a_b_proxy_exist():
    assert {"a", "b", "proxy"} <= set(SERVICES)


def test_build_context_and_dockerfile_exist():
    for name in ("a", "b", "proxy"):
        build = SERVICES[name]["build"]
        ctx = ROOT / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
        assert (ctx / dockerfile).is_file(), name
    text = (ROOT / "Dockerfile").read_text()
    for path in re.findall(r"^COPY (\S+)", text, re.M):
        assert (ROOT / path).exists(), path


def test_a_and_b_talk_only_through_the_proxy():
    assert SERVICES["a"]["environment"]["PARTNER_URL"].startswith("http://proxy:8000/b")
    assert SERVICES["b"]["environment"]["PARTNER_URL"].startswith("http://proxy:8000/a")
    cmd = " ".join(SERVICES["proxy"]["command"])
    routes = re.search(r"routes=(\S+)", cmd).group(1)
    assert routes == "/a/=http://a:8001,/b/=http://b:8002"
    assert "connection_strategy=lazy" in cmd and "gateway.py" in cmd
    assert (ROOT / SERVICES["proxy"]["command"][4].removeprefix("/app/")).is_file()


def test_ports_published_on_loopback_only_and_password_from_env():
    for name, svc in SERVICES.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    proxy = SERVICES["proxy"]
    assert "127.0.0.1:8000:8000" in proxy["ports"] and "127.0.0.1:8081:8081" in proxy["ports"]
    assert any("web_password=${HOPTRACE_WEB_PASSWORD" in c for c in proxy["command"])
    assert "./dumps:/dumps" in proxy["volumes"]


def test_service_ports_match_their_settings():
    for name, port in (("a", "8001"), ("b", "8002")):
        env = SERVICES[name]["environment"]
        assert env["PORT"] == port and env["SERVICE_NAME"] == name
        assert port in SERVICES[name]["expose"]


def test_optional_jaeger_profile_receives_otlp_and_shows_its_ui_on_loopback():
    jaeger = SERVICES["jaeger"]
    assert {"tracing", "jaeger"} <= set(jaeger["profiles"])  # not started by a plain `up`
    assert jaeger["image"].startswith("jaegertracing/all-in-one:")
    assert str(jaeger["environment"]["COLLECTOR_OTLP_ENABLED"]).lower() == "true"
    assert "4318" in [str(p) for p in jaeger["expose"]]
    assert jaeger["ports"] == ["127.0.0.1:16686:16686"]
    for name in ("a", "b"):  # export only when the standard variable is set (empty: none)
        assert not SERVICES[name].get("profiles")
        assert SERVICES[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "${OTEL_EXPORTER_OTLP_ENDPOINT:-}"
    header = (ROOT / "docker-compose.yml").read_text().split("services:")[0]
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4318" in header and "--profile tracing" in header


def test_the_gateway_has_time_to_write_its_har_when_stopped():
    """SIGTERM, then SIGKILL after the grace period: flows.har takes ≈ 0.6 ms a flow at shutdown."""
    grace = SERVICES["proxy"]["stop_grace_period"]
    m = re.fullmatch(r"(\d+)([ms])", grace)
    assert m and int(m[1]) * (60 if m[2] == "m" else 1) >= 300
