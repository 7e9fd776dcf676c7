"""The run history: what this service did with each request, in SQLite.

One row per request: written when it arrives (``status`` null while it is in flight), completed
when it is answered. In memory by default (``HISTORY_PATH=:memory:``), a file by setting; only the
last ``HISTORY_MAX`` rows are kept, so a long session cannot grow without end. Calls are
synchronous and short (one indexed statement each) and run on the event loop's thread.
"""

from __future__ import annotations

import json
import sqlite3
import time

SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,            -- unix seconds when the request arrived
    service TEXT NOT NULL,
    trace_id TEXT,
    span_id TEXT,
    hop INTEGER,                   -- null when the payload was refused by the schema (422)
    iteration INTEGER,
    payload_in TEXT,               -- JSON
    result TEXT,                   -- what this hop did (RESULTS); null while in flight
    status INTEGER,                -- the status this service answered
    payload_out TEXT,              -- JSON: what it forwarded / answered with; null if refused
    rejection TEXT,                -- why it refused the payload
    run_outcome TEXT,              -- the run's outcome its answer carried (rejected, max_hops …)
    duration_ms REAL
);
CREATE INDEX IF NOT EXISTS history_trace ON history (trace_id);
"""
# rejected: this service refused the payload (400, or 422 schema); forwarded: processed, sent on,
# and the partner's answer passed up; max_hops: processed and ended the run; partner_timeout /
# partner_unreachable: sent on, no answer; partner_error: the partner (or the gateway) answered a
# 5xx of its own (not a deeper hop's outcome passed up)
RESULTS = ("rejected", "forwarded", "max_hops", "partner_timeout", "partner_unreachable", "partner_error")
BREAKS = ("rejected", "partner_timeout", "partner_unreachable", "partner_error")
JSON_COLUMNS = ("payload_in", "payload_out")


def _json(value: object) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class History:
    def __init__(self, path: str = ":memory:", max_entries: int = 10_000, service: str = "") -> None:
        self.max_entries = max_entries
        self.service = service
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        if path != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def received(self, trace_id: str | None, span_id: str | None, hop: int | None,
                 iteration: int | None, payload_in: object) -> int:
        """Record an arriving request; returns its row id (for ``answered``). Drops the oldest
        rows beyond the bound."""
        cur = self.db.execute(
            "INSERT INTO history (time, service, trace_id, span_id, hop, iteration, payload_in)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (time.time(), self.service, trace_id, span_id, hop, iteration, _json(payload_in)),
        )
        row_id = cur.lastrowid
        self.db.execute("DELETE FROM history WHERE id <= ?", (row_id - self.max_entries,))
        return row_id

    def answered(self, row_id: int, result: str, status: int, duration_ms: float,
                 payload_out: object = None, rejection: str | None = None,
                 run_outcome: str | None = None) -> None:
        """Complete the row (a no-op if the bound already dropped it)."""
        self.db.execute(
            "UPDATE history SET result=?, status=?, payload_out=?, rejection=?, run_outcome=?,"
            " duration_ms=? WHERE id=?",
            (result, status, _json(payload_out), rejection, run_outcome, round(duration_ms, 3), row_id),
        )

    def entries(self, trace_id: str | None = None, limit: int = 100) -> list[dict]:
        """The last ``limit`` rows (of one trace, if given), oldest first."""
        where, args = ("WHERE trace_id = ?", [trace_id]) if trace_id else ("", [])
        rows = self.db.execute(
            f"SELECT * FROM (SELECT * FROM history {where} ORDER BY id DESC LIMIT ?) ORDER BY id",
            [*args, limit],
        ).fetchall()
        return [self._row(r) for r in rows]

    def last_break(self) -> dict | None:
        """The newest row where a run broke here: this service refused it, or its partner failed."""
        marks = ",".join("?" * len(BREAKS))
        row = self.db.execute(
            f"SELECT * FROM history WHERE result IN ({marks}) ORDER BY id DESC LIMIT 1", BREAKS
        ).fetchone()
        return None if row is None else self._row(row)

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM history").fetchone()[0]

    def close(self) -> None:
        self.db.close()

    @staticmethod
    def _row(row: sqlite3.Row) -> dict:
        out = dict(row)
        for col in JSON_COLUMNS:
            if out[col] is not None:
                out[col] = json.loads(out[col])
        return out
