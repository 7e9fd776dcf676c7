"""FreshUpstream decides which upstream connections to close before a request: only idle ones of
that client, older than the bound, never while another request of that client is in flight."""

from __future__ import annotations


import pytest
from mitmproxy import connection, exceptions
from mitmproxy.proxy import server_hooks
from mitmproxy.test import taddons, tflow

from proxy_addons import flowmeta
from proxy_addons.upstream import FreshUpstream


class Handler:
    """Stands in for mitmproxy's ProxyConnectionHandler: its transports and close_connection."""

    def __init__(self, *servers: connection.Server) -> None:
        self.transports = dict.fromkeys(servers)
        self.closed: list[connection.Server] = []

    def close_connection(self, conn, half_close=False):
        conn.state = connection.ConnectionState.CLOSED
        self.closed.append(conn)


class Proxyserver:
    def __init__(self) -> None:
        self.connections: dict[str, Handler] = {}


def open_server() -> connection.Server:
    s = connection.Server(address=("127.0.0.1", 8001))
    s.state = connection.ConnectionState.OPEN
    return s


def test_closes_only_connections_idle_longer_than_the_bound_and_says_so():
    fresh, ps = FreshUpstream(), Proxyserver()
    with taddons.context(fresh, ps) as tctx:
        tctx.configure(fresh, hoptrace_upstream_idle_ms=200)
        old, recent = open_server(), open_server()
        flow = tflow.tflow()
        ps.connections[flow.client_conn.id] = handler = Handler(old, recent)
        for s in (old, recent):
            fresh.server_connected(server_hooks.ServerConnectionHookData(s, flow.client_conn))
        fresh.idle_since[old.id] -= 0.5
        fresh.request(flow)
        assert handler.closed == [old] and recent.connected
        got = flow.metadata[flowmeta.RECORD]["upstream_reconnect"]
        assert got["reason"] == "idle" and got["idle_s"] >= 0.5 and got["idle_max_s"] == 0.2


def test_never_closes_while_a_request_of_that_client_is_in_flight():
    fresh, ps = FreshUpstream(), Proxyserver()
    with taddons.context(fresh, ps) as tctx:
        tctx.configure(fresh, hoptrace_upstream_idle_ms=0)  # 0: never reuse
        busy = open_server()
        first, second = tflow.tflow(), tflow.tflow()
        second.client_conn = first.client_conn  # HTTP/2-style: two streams on one client connection
        ps.connections[first.client_conn.id] = handler = Handler()
        fresh.request(first)
        handler.transports[busy] = None  # mitmproxy gave `first` this connection
        fresh.server_connected(server_hooks.ServerConnectionHookData(busy, first.client_conn))
        fresh.request(second)
        assert handler.closed == [] and flowmeta.RECORD not in second.metadata
        first.server_conn = busy
        fresh.response(first)
        fresh.error(first)  # counted back once only
        third = tflow.tflow()
        third.client_conn = first.client_conn
        fresh.response(second)
        fresh.request(third)
        assert handler.closed == [busy]


def test_went_idle_restarts_the_clock_and_bad_option_is_refused():
    fresh = FreshUpstream()
    with taddons.context(fresh) as tctx:
        s, flow = open_server(), tflow.tflow(resp=True)
        flow.server_conn = s
        fresh.server_connected(server_hooks.ServerConnectionHookData(s, flow.client_conn))
        fresh.idle_since[s.id] -= 10
        fresh.response(flow)
        assert fresh.idle_since[s.id] == flow.response.timestamp_end  # the last byte, not the hook
        fresh.server_disconnected(server_hooks.ServerConnectionHookData(s, flow.client_conn))
        assert s.id not in fresh.idle_since
        with pytest.raises(exceptions.OptionsError, match="hoptrace_upstream_idle_ms must be >= 0"):
            tctx.configure(fresh, hoptrace_upstream_idle_ms=-5)


def test_a_failure_on_a_reused_connection_records_how_long_it_was_idle():
    fresh = FreshUpstream()
    with taddons.context(fresh):
        s, flow = open_server(), tflow.tflow(err=True)
        flow.server_conn = s
        fresh.server_connected(server_hooks.ServerConnectionHookData(s, flow.client_conn))
        fresh.idle_since[s.id] = flow.request.timestamp_end - 0.97
        fresh.error(flow)
        assert flow.metadata[flowmeta.RECORD]["upstream_reused_idle_s"] == pytest.approx(0.97, abs=0.002)
        fresh_conn, other = open_server(), tflow.tflow(err=True)
        other.server_conn = fresh_conn
        fresh.idle_since[fresh_conn.id] = other.request.timestamp_end + 0.01  # opened for this request
        fresh.error(other)
        assert flowmeta.RECORD not in other.metadata
