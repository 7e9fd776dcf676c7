"""The payload A and B pass back and forth; the only place the run's state lives."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Payload(BaseModel):
    """The seed's schema. Unknown fields (the seed's own kick sends ``"d;5Digits"``) are kept
    and passed on unchanged."""

    model_config = ConfigDict(extra="allow")

    name: str = "payload"
    digits: list[int] = []
    avg: float | None = None
    max: int | None = None
    min: int | None = None

    def dump(self) -> dict:
        """The payload as plain JSON data, unknown fields included, in their original order."""
        return self.model_dump(mode="json")


def hop_of(service: str, payload: Payload) -> int:
    """The hop number of a request, read from the payload alone (the seed: the payload tells the
    iteration). A kick with empty ``digits`` is hop 1 at A; every A→B or B→A call adds one. A gets
    hops 1, 3, 5 … (it has appended ``len(digits)`` digits so far); B gets 2, 4, 6 …"""
    n = len(payload.digits)
    return 2 * n + 1 if service == "a" else 2 * n


def iteration_of(service: str, payload: Payload) -> int:
    """One iteration = one A step and the B step after it; iteration I starts at hop 2I-1."""
    return (hop_of(service, payload) + 1) // 2
