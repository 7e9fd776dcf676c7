"""A flow's flows.mitm entry, byte-identical to ``tnetstring.dumps(flow.get_state())``, cheaper.

Most of ``HTTPFlow.get_state`` is spent on the two connections (mitmproxy's generic dataclass
serializer, ~50 µs each), yet the gateway's connections are keep-alive: many flows share one and
it rarely changes. ``MitmEncoder`` encodes a connection once and reuses the bytes while every
field of it is equal to what it was then. It also skips ``get_state``'s deep copy of the metadata
(the state is encoded at once, never kept). Flows it does not handle plainly (a backup from an
edit or a replay, WebSockets) go through mitmproxy's ``get_state``. tests/unit/test_mitmstate.py
checks the bytes against mitmproxy's own.
"""

from __future__ import annotations

from mitmproxy import connection, http, version

from proxy_addons import tnet

MAX_CONNS = 4096  # cached connection encodings (oldest dropped first)


def _snapshot(conn: connection.Connection) -> tuple:
    """What the cached encoding of ``conn`` was made from: its fields, lists copied (a list
    changed in place must not compare equal to itself). Built on a miss only; a hit compares
    the fields as they are (``tuple(conn.__dict__.values())``: a list equals its copy while
    their items do)."""
    return tuple([list(v) if type(v) is list else v for v in conn.__dict__.values()])


class MitmEncoder:
    def __init__(self) -> None:
        self.conns: dict[str, tuple[tuple, tnet.Encoded]] = {}

    def conn(self, conn: connection.Connection) -> tnet.Encoded:
        hit = self.conns.get(conn.id)
        if hit is not None and hit[0] == tuple(conn.__dict__.values()):
            return hit[1]
        snap = _snapshot(conn)
        enc = tnet.Encoded(tnet.dumps(conn.get_state()))
        self.conns.pop(conn.id, None)
        if len(self.conns) >= MAX_CONNS:
            del self.conns[next(iter(self.conns))]
        self.conns[conn.id] = (snap, enc)
        return enc

    def __call__(self, flow: http.HTTPFlow) -> bytes:
        if flow._backup is not None or flow.websocket is not None or type(flow) is not http.HTTPFlow:
            return tnet.dumps(flow.get_state())
        return tnet.dumps({  # the keys in Flow.get_state's and HTTPFlow.get_state's order
            "version": version.FLOW_FORMAT_VERSION,
            "type": flow.type,
            "id": flow.id,
            "error": flow.error.get_state() if flow.error else None,
            "client_conn": self.conn(flow.client_conn),
            "server_conn": self.conn(flow.server_conn),
            "intercepted": flow.intercepted,
            "is_replay": flow.is_replay,
            "marked": flow.marked,
            "metadata": flow.metadata,
            "comment": flow.comment,
            "timestamp_created": flow.timestamp_created,
            "backup": None,
            "request": flow.request.get_state(),
            "response": flow.response.get_state() if flow.response else None,
            "websocket": None,
        })
