"""The payload A and B pass back and forth; the only place the run's state lives."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# What a payload may hold so that every hop can write it back as JSON (and B's average of huge
# integers never overflows a float): integers JSON parsers agree on, bounded nesting, no NaN.
SAFE_INT = 2**53
MAX_DEPTH = 64
JsonInt = Annotated[int, Field(ge=-SAFE_INT, le=SAFE_INT)]
Iteration = Annotated[int, Field(ge=1, le=SAFE_INT)]


class Payload(BaseModel):
    """The seed's schema. Unknown fields (the seed's own kick sends ``"d;5Digits"``) are kept
    and passed on unchanged."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    name: str = "payload"
    digits: list[JsonInt] = []
    avg: float | None = None
    max: JsonInt | None = None
    min: JsonInt | None = None
    # {iteration: the last service that processed the payload in it}; see with_sequence
    sequence: dict[Iteration, Literal["a", "b"]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _json_safe(cls, data):
        problem = json_problem(data)
        if problem:
            raise ValueError(problem)
        return data

    def dump(self) -> dict:
        """The payload as plain JSON data, unknown fields included, in their original order;
        ``sequence`` only when the payload came with one (a kick without it stays as it was)."""
        unset = "sequence" not in self.model_fields_set
        return self.model_dump(mode="json", exclude={"sequence"} if unset else None)


def json_problem(value: object, max_depth: int = MAX_DEPTH) -> str | None:
    """Why ``value`` (parsed JSON, unknown fields included) cannot be passed on, or None.
    Iterative, so a deep value cannot exhaust the stack here."""
    todo = [(value, 1)]
    while todo:
        v, depth = todo.pop()
        if isinstance(v, dict | list):
            if depth > max_depth:
                return f"nested deeper than {max_depth} levels"
            items = v.items() if isinstance(v, dict) else enumerate(v)
            todo.extend((x, depth + 1) for _, x in items)
            todo.extend((k, depth) for k in (v if isinstance(v, dict) else ()))
        elif isinstance(v, float) and not math.isfinite(v):
            return "NaN and Infinity are not JSON numbers"
        elif isinstance(v, str) and not v.isascii():
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return "a string holds a lone UTF-16 surrogate (not valid Unicode)"
    return None


def hop_of(service: str, payload: Payload) -> int:
    """The hop number of a request, read from the payload alone (the seed: the payload tells the
    iteration). A kick with empty ``digits`` is hop 1 at A; every A→B or B→A call adds one. A gets
    hops 1, 3, 5 … (it has appended ``len(digits)`` digits so far); B gets 2, 4, 6 …"""
    n = len(payload.digits)
    return 2 * n + 1 if service == "a" else 2 * n


def iteration_of(service: str, payload: Payload) -> int:
    """One iteration = one A step and the B step after it; iteration I starts at hop 2I-1."""
    return (hop_of(service, payload) + 1) // 2


def with_sequence(out: dict, service: str, iteration: int) -> dict:
    """``out`` (a dumped payload ``service`` produced in ``iteration``) with the service recorded
    in its ``sequence``: ``sequence[iteration] = service``, keys in iteration order. A writes
    ``{"1": "a"}``, B then overwrites it with ``{"1": "b"}``; so every completed iteration reads
    ``"b"`` and only the newest may read ``"a"`` (docs/dev-guide.md)."""
    seq = {int(k): v for k, v in (out.get("sequence") or {}).items()}
    seq[iteration] = service
    return {**out, "sequence": {str(k): seq[k] for k in sorted(seq)}}
