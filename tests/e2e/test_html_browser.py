"""The HTML report in a real browser (headless Chromium, with every network lookup refused): the
rendered page shows each broken run with its breaking hop highlighted and the state at break.
The page and a screenshot are kept in test-artifacts/ (gitignored)."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from proxy_addons.report import build, render
from tests.conftest import ROOT
from tests.unit.synth import Synth

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--host-resolver-rules=MAP * ~NOTFOUND"]  # offline: any lookup fails


def chromium() -> str:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium; .ci/run does)")


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=True)


class Page(HTMLParser):
    """What the rendered DOM shows: per run section, its highlighted hops and break-state text."""

    def __init__(self) -> None:
        super().__init__()
        self.section: str | None = None
        self.sections: dict[str, dict] = {}
        self.in_state = 0
        self.rows: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "section" and (a.get("id") or "").startswith("run-"):
            self.section = a["id"][4:]
            self.sections[self.section] = {"break_hops": [], "state": "", "svg": 0}
        elif self.section and tag == "svg":
            self.sections[self.section]["svg"] += 1
        elif self.section and tag == "g" and "break-hop" in classes and "data-hop" in a:
            self.sections[self.section]["break_hops"].append(int(a["data-hop"]))
        elif self.section and tag == "g" and "break-state" in classes:
            self.in_state += 1
        elif tag == "tr" and a.get("data-run"):
            self.rows.append(a["data-run"])

    def handle_endtag(self, tag):
        if tag == "g" and self.in_state:
            self.in_state -= 1
        elif tag == "section":
            self.section = None

    def handle_data(self, data):
        if self.in_state and self.section:
            self.sections[self.section]["state"] += data


def test_html_report_renders_broken_runs_in_chromium(tmp_path):
    s = Synth(seed=5, max_hops=14)
    for i in range(30):
        s.kick(1_764_000_000 + i * 0.002, {"digits": []})
    (tmp_path / "flows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in s.dump()))
    report = build(tmp_path)
    broken = {d.run.run_id: d for d in report.diagnoses if d.outcome == "broken"}
    assert broken
    ARTIFACTS.mkdir(exist_ok=True)
    page_path = ARTIFACTS / "report.html"
    page_path.write_text(render(report, "html"), encoding="utf-8")

    dom = run_chromium(tmp_path, "--dump-dom", page_path.as_uri()).stdout
    page = Page()
    page.feed(dom)
    assert page.rows == [d.run.run_id for d in report.diagnoses]  # the runs table, every run
    assert set(page.sections) == set(broken)  # a diagram for each broken run, no other
    for rid, d in broken.items():
        shown = page.sections[rid]
        assert shown["svg"] == 1
        assert shown["break_hops"] == [d.brk["hop"]]  # the breaking hop, highlighted
        digits = json.dumps(d.brk["state"].get("digits", []), separators=(", ", ": "))
        assert shown["state"].startswith("state at break: {") and digits[:-1] in shown["state"]

    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    run_chromium(tmp_path, "--window-size=1280,1600", f"--screenshot={shot}", page_path.as_uri())
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
