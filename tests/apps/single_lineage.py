"""How tests/apps/single.py's answers pass up, told to the run engine: a ``PingPongLineage`` (A
appends a digit, B sets the stats: the same payload rules) whose answer rule is the app's own —
a partner's 4xx becomes ``200 {"stopped": <its body>, "status": 4xx}``, anything else is passed
up byte for byte. What another pair of services would write to describe itself."""

from __future__ import annotations

from typing import Any

from proxy_addons.lineage import PingPongLineage, same


class SingleAppLineage(PingPongLineage):
    def answer_links(
        self, parent_body: Any, child_status: int | None, child_body: Any, child_request: Any = None
    ) -> bool | None:
        if parent_body is None:
            return None
        if child_status is None:  # the app never answers before its partner does
            return False
        if child_body is None:
            return None
        if 400 <= child_status < 500:
            return (isinstance(parent_body, dict) and parent_body.get("status") == child_status
                    and same(parent_body.get("stopped"), child_body))
        return same(parent_body, child_body)
