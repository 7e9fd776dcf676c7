"""The developer view of one service: per-request bookkeeping (log events, span tags, history
row) and the ``/history`` endpoints. ``app.py`` calls ``HopRecord`` at each step, so the handler
stays about the run, not about observing it."""

from __future__ import annotations

import time

from fastapi import FastAPI, HTTPException, Query

from services import tracing
from services.history import History
from services.logs import event, payload_fields
from services.settings import Settings

TRACE_ID = r"^[0-9a-f]{32}$"


class HopRecord:
    """One request's story: ``received`` → (``rejected`` | ``processed`` → ``forwarded`` →
    ``partner_*``) → ``answered``; each step one log line, the end one history row."""

    def __init__(self, history: History, settings: Settings, hop: int | None,
                 iteration: int | None, payload_in: object) -> None:
        self.history, self.mode = history, settings.log_payload
        self.hop, self.iteration = hop, iteration
        self.t0 = time.perf_counter()
        trace_id, span_id = tracing.current_ids()
        tracing.tag_span(hop=hop, iteration=iteration)
        self.row = history.received(trace_id, span_id, hop, iteration, payload_in)
        self.log("received", **payload_fields(payload_in, self.mode))

    def ms(self) -> float:
        return round((time.perf_counter() - self.t0) * 1000, 3)

    def log(self, name: str, level: int = 20, **fields) -> None:
        event(name, level, hop=self.hop, iteration=self.iteration, **fields)

    def rejected(self, status: int, reason: str, payload: object) -> None:
        self.log("rejected", status=status, reason=reason, duration_ms=self.ms(),
                 **payload_fields(payload, self.mode))
        self.answered("rejected", status, None, rejection=reason)

    def processed(self, out: object) -> None:
        self.log("processed", **payload_fields(out, self.mode))

    def forwarded(self, partner: str, url: str, out: object) -> None:
        self.log("forwarded", partner=partner, url=url, **payload_fields(out, self.mode))

    def partner_failed(self, result: str, status: int, detail: str, out: object) -> None:
        name = "partner_timeout" if result == "partner_timeout" else "partner_failed"
        self.log(name, 30, status=status, detail=detail, duration_ms=self.ms())
        self.answered(result, status, out)

    def answered(self, result: str, status: int, out: object, rejection: str | None = None,
                 run_outcome: str | None = None, partner_status: int | None = None) -> None:
        ms = self.ms()
        tracing.tag_span(result=result, run_outcome=run_outcome)
        self.log("answered", status=status, result=result, run_outcome=run_outcome,
                 partner_status=partner_status, duration_ms=ms)
        self.history.answered(self.row, result, status, ms, out, rejection, run_outcome)


def install_history(app: FastAPI, history: History) -> None:
    """``GET /history?trace=&limit=`` and ``GET /history/last-break``."""

    @app.get("/history")
    async def history_entries(
        trace: str | None = Query(None, pattern=TRACE_ID, description="W3C trace id, 32 hex"),
        limit: int = Query(100, ge=1, le=10_000),
    ) -> dict:
        rows = history.entries(trace, limit)
        return {"service": history.service, "count": len(rows), "entries": rows}

    @app.get("/history/last-break")
    async def history_last_break() -> dict:
        row = history.last_break()
        if row is None:
            raise HTTPException(404, f"{history.service}: no broken run in the history")
        return row
