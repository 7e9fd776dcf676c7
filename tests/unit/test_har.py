"""flows.har streamed from flows.mitm (proxy_addons/har.py): the archive mitmproxy's own exporter
makes, written one flow at a time, complete or not at all."""

from __future__ import annotations

import json
import logging
import weakref

import pytest
from mitmproxy import http, io
from mitmproxy.addons.savehar import SaveHar
from mitmproxy.test import tflow

from proxy_addons import har as harmod
from proxy_addons.har import export_har
from proxy_addons.recorder import write_har


def _flows() -> list[http.HTTPFlow]:
    ok = tflow.tflow(resp=True)
    ok.request.content = b'{"name": "payload", "digits": []}'
    ok.response.content = b'{"outcome": "max_hops"}'
    binary = tflow.tflow(resp=True)
    binary.response.content = bytes(range(256))
    odd = tflow.tflow(resp=True)
    odd.request.headers.fields = ((b"X-Odd", b"caf\xe9 \xff"),)  # not UTF-8: a surrogate escape
    failed = tflow.tflow(err=True)
    return [ok, binary, odd, failed]


def _mitm(tmp_path, flows):
    path = tmp_path / "flows.mitm"
    with open(path, "wb") as f:
        w = io.FlowWriter(f)
        for fl in flows:
            w.add(fl)
    return path


def _read_back(path):
    with open(path, "rb") as f:
        return list(io.FlowReader(f).stream())


def test_the_archive_is_the_one_mitmproxys_exporter_makes(tmp_path):
    mitm = _mitm(tmp_path, _flows())
    har = tmp_path / "flows.har"
    assert export_har(mitm, har) == 4
    assert json.loads(har.read_text()) == SaveHar().make_har(_read_back(mitm))
    assert har.stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "flows.har.part").exists()


def test_no_flows_and_no_file(tmp_path):
    empty = _mitm(tmp_path, [])
    assert export_har(empty, tmp_path / "a.har") == 0
    assert json.loads((tmp_path / "a.har").read_text()) == SaveHar().make_har([])
    assert export_har(tmp_path / "missing.mitm", tmp_path / "b.har") == 0
    assert not (tmp_path / "b.har").exists()


def test_one_flow_at_a_time_is_alive(tmp_path, monkeypatch):
    """The flows read are not collected into a list: those before the one whose entry is built are
    freed as it goes (a flow's own reference cycles wait for the collector's next pass, so a few
    are still there), however many the file holds."""
    mitm = _mitm(tmp_path, [tflow.tflow(resp=True) for _ in range(300)])
    seen: weakref.WeakSet = weakref.WeakSet()
    alive: list[int] = []
    entry = SaveHar.flow_entry

    def counting(self, flow, servers_seen):
        seen.add(flow)
        alive.append(len(seen))
        return entry(self, flow, servers_seen)

    monkeypatch.setattr(SaveHar, "flow_entry", counting)
    assert export_har(mitm, tmp_path / "flows.har") == 300
    assert len(alive) == 300 and max(alive) <= 50


def test_progress_is_told_as_it_goes(tmp_path, monkeypatch):
    monkeypatch.setattr(harmod, "PROGRESS_EVERY", 2)
    told: list[int] = []
    assert export_har(_mitm(tmp_path, _flows() + _flows()[:1]), tmp_path / "flows.har", told.append) == 5
    assert told == [2, 4]


def test_a_failure_leaves_no_archive_and_no_part(tmp_path, monkeypatch):
    mitm = _mitm(tmp_path, _flows())
    har = tmp_path / "flows.har"
    calls = []

    def failing(self, flow, servers_seen):
        calls.append(flow.id)
        if len(calls) == 2:
            raise OSError("disk full")
        return {}

    monkeypatch.setattr(SaveHar, "flow_entry", failing)
    with pytest.raises(OSError, match="disk full"):
        export_har(mitm, har)
    assert not har.exists() and not (tmp_path / "flows.har.part").exists()


def test_the_recorder_says_so_and_goes_on_when_it_cannot(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    write_har(tmp_path)  # nothing recorded (no flows.mitm): no archive, and no claim of one
    assert "no flows.har" in caplog.text and "wrote" not in caplog.text
    assert not (tmp_path / "flows.har").exists()
    caplog.clear()
    _mitm(tmp_path, _flows())
    write_har(tmp_path)
    assert "wrote" in caplog.text and (tmp_path / "flows.har").exists()
    caplog.clear()

    def boom(*_a, **_k):
        raise OSError("no space left on device")

    monkeypatch.setattr("proxy_addons.recorder.export_har", boom)
    write_har(tmp_path)  # does not raise: shutdown goes on
    assert "flows.har not written: no space left on device" in caplog.text
