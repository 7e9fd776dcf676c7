"""The services' structured logs: one line per event, stdlib ``logging`` only.

Every line carries the service, the event and the current OpenTelemetry trace/span id, plus the
event's own fields (hop, iteration, status, duration_ms, payload or payload_bytes). JSON for files
and containers; a short human line on a terminal (``LOG_FORMAT=auto``). uvicorn's access log goes
through the same handler, so it has the same shape (event ``access``).
"""

from __future__ import annotations

import json
import logging
import sys
import time

from services.tracing import current_ids

log = logging.getLogger("services")
SERVICE_LOGGERS = ("services", "uvicorn.access", "uvicorn.error")


def event(name: str, level: int = logging.INFO, **fields) -> None:
    """Log one event; ``fields`` become top-level keys of the JSON line."""
    if log.isEnabledFor(level):
        log.log(level, name, extra={"event": name, "fields": fields})


def payload_fields(payload: object, mode: str, key: str = "payload") -> dict:
    """The payload itself (``LOG_PAYLOAD=full``) or only its size in bytes (``size``)."""
    if mode == "size":
        return {f"{key}_bytes": len(json.dumps(payload, separators=(",", ":")).encode())}
    return {key: payload}


class TraceContext(logging.Filter):
    """Stamp each record with the service and the trace/span id current when it was logged."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.trace_id, record.span_id = current_ids()
        if record.name == "uvicorn.access" and not hasattr(record, "event"):
            record.event, record.fields = "access", access_fields(record)
        return True


def access_fields(record: logging.LogRecord) -> dict:
    """uvicorn's access record args: (client, method, path, http version, status)."""
    args = record.args if isinstance(record.args, tuple) else ()
    if len(args) != 5:
        return {}
    client, method, path, version, status = args
    return {"client": client, "method": method, "path": path, "http_version": version, "status": status}


def _base(record: logging.LogRecord) -> dict:
    return {
        "ts": round(record.created, 6),
        "level": record.levelname.lower(),
        "service": getattr(record, "service", None),
        "event": getattr(record, "event", None) or ("server" if record.name.startswith("uvicorn") else record.name),
        "trace_id": getattr(record, "trace_id", None),
        "span_id": getattr(record, "span_id", None),
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line; plain messages (uvicorn's own) go in ``msg``."""

    def format(self, record: logging.LogRecord) -> str:
        out = _base(record)
        fields = getattr(record, "fields", None)
        if fields is not None:
            out.update(fields)
        else:
            out["msg"] = record.getMessage()
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """``12:00:01.123 A hop 3 it 2 received 4b1f…`` then the remaining fields as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        base = _base(record)
        fields = dict(getattr(record, "fields", None) or {"msg": record.getMessage()})
        clock = time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        head = [clock, (base["service"] or "?").upper()]
        for key, label in (("hop", "hop"), ("iteration", "it")):
            if fields.get(key) is not None:
                head.append(f"{label} {fields.pop(key)}")
        head.append(base["event"])
        if base["trace_id"]:
            head.append(base["trace_id"][:8])
        rest = " ".join(f"{k}={json.dumps(v, default=str, ensure_ascii=False)}"
                        for k, v in fields.items() if v is not None)
        line = " ".join(head) + (f"  {rest}" if rest else "")
        return line + ("\n" + self.formatException(record.exc_info) if record.exc_info else "")


def configure_logging(service: str, level: str = "INFO", fmt: str = "auto", stream=None) -> logging.Handler:
    """Route the service's and uvicorn's loggers to one handler on ``stream`` (stderr)."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ConsoleFormatter() if fmt == "console" else JsonFormatter())
    handler.addFilter(TraceContext(service))
    for name in SERVICE_LOGGERS:
        lg = logging.getLogger(name)
        lg.handlers[:] = [handler]
        lg.setLevel(level)
        lg.propagate = False
    return handler
