"""Read any dump into flows.jsonl-style records: a session folder, flows.jsonl, a .mitm (also one
written by plain ``mitmdump -w`` with no addon of ours) or a .har. Damage (a cut last line from a
killed gateway, a non-JSON line, an unknown record type) is skipped and reported, never fatal."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import orjson

from proxy_addons.bodies import encode_body


@dataclass
class ReadReport:
    """What a reader could not use, to be shown to the user."""

    source: str = ""
    read: int = 0
    skipped: list[str] = field(default_factory=list)

    def skip(self, where: str, why: str) -> None:
        self.skipped.append(f"{where}: {why}")


def resolve(path: str | Path) -> Path:
    """A session folder means its flows.jsonl (or flows.mitm, or flows.har, whichever exists)."""
    path = Path(path)
    if path.is_dir():
        for name in ("flows.jsonl", "flows.mitm", "flows.har"):
            if (path / name).exists():
                return path / name
        raise FileNotFoundError(f"{path}: no flows.jsonl, flows.mitm or flows.har in this folder")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    return path


def read_records(path: str | Path, report: ReadReport | None = None) -> Iterator[dict]:
    """Stream the records of any dump. Fills ``report`` with what was skipped."""
    report = report if report is not None else ReadReport()
    p = resolve(path)
    report.source = str(p)
    if p.suffix == ".har":
        yield from _har_records(p, report)
    elif p.suffix in (".mitm", ".flows", ".dump") or _looks_like_tnetstring(p):
        yield from _mitm_records(p, report)
    else:
        yield from _jsonl_records(p, report)


def _looks_like_tnetstring(p: Path) -> bool:
    with open(p, "rb") as f:
        head = f.read(16)
    return bool(head) and head[:1].isdigit() and b":" in head


def _loads(line: bytes):
    """orjson (several times faster); the stdlib for what orjson refuses but JSON readers accept
    (NaN, lone surrogates, ints beyond 64 bits)."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)


def _jsonl_records(p: Path, report: ReadReport) -> Iterator[dict]:
    with open(p, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            cut = not line.endswith(b"\n")
            try:
                rec = _loads(line)
            except ValueError:
                why = "cut last line (the writer stopped mid-record)" if cut else "not JSON"
                report.skip(f"line {n}", why)
                continue
            if isinstance(rec, dict) and rec.get("type") == "placement":
                continue  # a corrected run placement (docs/dump-format.md), not a flow
            if not isinstance(rec, dict) or rec.get("type", "flow") != "flow":
                kind = rec.get("type") if isinstance(rec, dict) else type(rec).__name__
                report.skip(f"line {n}", f"not a flow record ({kind!r})")
                continue
            report.read += 1
            yield rec


def http_flows(p: Path, skip: Callable[[str, str], None]) -> Iterator:
    """The HTTP flows of a .mitm file, one at a time, as mitmproxy reads them; any other flow, and
    a cut or unreadable end (a killed writer), told to ``skip(where, why)``."""
    from mitmproxy import exceptions, http, io

    with open(p, "rb") as f:
        try:
            for fl in io.FlowReader(f).stream():
                if not isinstance(fl, http.HTTPFlow):
                    skip(f"flow {fl.id}", f"not HTTP ({type(fl).__name__})")
                    continue
                yield fl
        except exceptions.FlowReadException as exc:
            skip("end of file", f"cut or unreadable flow: {exc}")


def _mitm_records(p: Path, report: ReadReport) -> Iterator[dict]:
    from proxy_addons.recorder import flow_record

    for fl in http_flows(p, report.skip):
        report.read += 1
        yield flow_record(fl)


def _har_time(entry: dict) -> float:
    return datetime.fromisoformat(entry["startedDateTime"].replace("Z", "+00:00")).timestamp()


def _har_body(content: dict | None, ctype: str | None) -> dict:
    if not content or "text" not in content:
        return encode_body(b"", ctype)
    text = content.get("text") or ""
    raw = base64.b64decode(text) if content.get("encoding") == "base64" else text.encode()
    return encode_body(raw, ctype)


def _har_records(p: Path, report: ReadReport) -> Iterator[dict]:
    from urllib.parse import urlsplit

    try:
        entries = json.loads(p.read_text())["log"]["entries"]
    except (ValueError, KeyError, TypeError) as exc:
        report.skip(str(p), f"not a HAR file: {exc}")
        return
    for n, e in enumerate(entries, 1):
        try:
            req, resp = e["request"], e.get("response") or {}
            started = _har_time(e)
            ended = started + max(float(e.get("time") or 0), 0) / 1000
            url = urlsplit(req["url"])
            rh = [[h["name"], h["value"]] for h in req.get("headers", [])]
            sh = [[h["name"], h["value"]] for h in resp.get("headers", [])]
            rct = next((v for k, v in rh if k.lower() == "content-type"), None)
            sct = (resp.get("content") or {}).get("mimeType") or None
            status = resp.get("status") or None
            path = url.path + (f"?{url.query}" if url.query else "")
            report.read += 1
            yield {
                "type": "flow", "v": 1, "flow_id": f"har-{n}", "started": started, "ended": ended,
                "duration_ms": round((ended - started) * 1000, 3), "client": None,
                "method": req.get("method"), "path": path,
                "service": path.strip("/").split("/")[0] or None, "upstream": None,
                "request": {"headers": rh, "body": _har_body(req.get("postData"), rct)},
                "status": status,
                "response": {"status": status, "reason": resp.get("statusText", ""), "headers": sh,
                             "body": _har_body(resp.get("content"), sct)} if status else None,
                "error": None if status else {"message": "no response in HAR", "status": None},
                "origin": "upstream",
            }
        except (KeyError, TypeError, ValueError) as exc:
            report.skip(f"entry {n}", f"unreadable HAR entry: {exc}")
