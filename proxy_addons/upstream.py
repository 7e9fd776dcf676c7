"""Never hand a request to an upstream connection the service may be closing right now.

A keep-alive connection that sat idle for the service's idle timeout (uvicorn: 5 s, gunicorn: 2 s)
is closed by the service; if the gateway reuses it in that very moment, the request meets the
close and mitmproxy answers ``502 server closed connection`` — a break the services did not make.
mitmproxy 12 keeps upstream connections per client connection and reuses any that is still open,
however long it was idle. This addon closes, just before a request is assigned a connection, every
upstream connection of that client that has been idle longer than ``hoptrace_upstream_idle_ms``,
so the request goes out on a fresh one. Nothing is ever retried: a request is sent exactly once.
The flow that got a fresh connection this way says so in its record (``upstream_reconnect``); a
flow that failed on a reused connection says how long that connection had been idle
(``upstream_reused_idle_s``). Idle time is counted from the last byte of the previous response
(mitmproxy's ``timestamp_end``), the closest the gateway sees to the moment the service's own
idle clock starts; the bound must leave room for event-loop lag on a busy machine.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from mitmproxy import connection, ctx, exceptions, http
from mitmproxy.proxy import server_hooks

from proxy_addons import flowmeta

log = logging.getLogger(__name__)
DONE = "hoptrace.upstream.done"  # flow.metadata: the flow's in-flight count was taken back


class FreshUpstream:
    def __init__(self) -> None:
        self.idle_since: dict[str, float] = {}  # server connection id → unix time it went idle
        self.in_flight: Counter[str] = Counter()  # client connection id → requests not yet answered
        self.closed = 0
        self.limit = 1.0  # s: hoptrace_upstream_idle_ms, as last configured

    def load(self, loader) -> None:
        loader.add_option(
            "hoptrace_upstream_idle_ms", int, 1000,
            "Milliseconds an upstream keep-alive connection may sit idle and still be reused; older "
            "ones are closed before the next request (a fresh one is opened). 0: never reuse. "
            "Keep it well under the services' idle timeout (uvicorn 5 s, gunicorn 2 s).",
        )

    def configure(self, updated: set[str]) -> None:
        if "hoptrace_upstream_idle_ms" in updated and ctx.options.hoptrace_upstream_idle_ms < 0:
            raise exceptions.OptionsError(
                f"hoptrace_upstream_idle_ms must be >= 0, got {ctx.options.hoptrace_upstream_idle_ms}")
        self.limit = ctx.options.hoptrace_upstream_idle_ms / 1000  # read once, not per request

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        self.idle_since[data.server.id] = time.time()

    def server_disconnected(self, data: server_hooks.ServerConnectionHookData) -> None:
        self.idle_since.pop(data.server.id, None)

    def client_disconnected(self, client: connection.Client) -> None:
        self.in_flight.pop(client.id, None)

    def request(self, flow: http.HTTPFlow) -> None:
        """The last hook before mitmproxy picks an upstream connection for this request."""
        client = flow.client_conn.id
        if self.in_flight[client] == 0 and flow.response is None:  # no request of this client is
            self.close_idle(flow)                                   # using one of its connections
        self.in_flight[client] += 1

    def response(self, flow: http.HTTPFlow) -> None:
        self.went_idle(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        since = self.idle_since.get(flow.server_conn.id)
        sent = flow.request.timestamp_end or flow.request.timestamp_start
        if flow.response is None and since is not None and since < sent:  # a reused connection
            flow.metadata.setdefault(flowmeta.RECORD, {})["upstream_reused_idle_s"] = round(sent - since, 3)
        self.went_idle(flow)

    def went_idle(self, flow: http.HTTPFlow) -> None:
        if flow.server_conn.id in self.idle_since:
            ended = flow.response.timestamp_end if flow.response else None
            self.idle_since[flow.server_conn.id] = ended or time.time()
        if not flow.metadata.get(DONE) and self.in_flight[flow.client_conn.id] > 0:
            flow.metadata[DONE] = True
            self.in_flight[flow.client_conn.id] -= 1

    def close_idle(self, flow: http.HTTPFlow) -> None:
        proxyserver = ctx.master.addons.get("proxyserver")
        handler = proxyserver.connections.get(flow.client_conn.id) if proxyserver else None
        if handler is None:
            return
        limit, now = self.limit, time.time()
        for conn in list(handler.transports):
            if not isinstance(conn, connection.Server) or not conn.connected:
                continue
            idle = now - self.idle_since.get(conn.id, now)
            if idle > limit or limit == 0:
                # Marks the connection closed at once (mitmproxy will not pick it) and ends its task.
                handler.close_connection(conn)
                self.closed += 1
                flow.metadata.setdefault(flowmeta.RECORD, {})["upstream_reconnect"] = {
                    "reason": "idle", "idle_s": round(idle, 3), "idle_max_s": limit}
                log.debug("hoptrace: closed upstream %s idle %.2f s before %s", conn.address, idle, flow.id)
