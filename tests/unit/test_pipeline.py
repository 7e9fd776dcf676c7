"""The Pipeline (proxy_addons/pipeline.py): mitmproxy sees one addon, the parts behave as the
addons of one script did — order, awaited hooks, an error ending the event, options, commands."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from mitmproxy import command, exceptions, hooks
from mitmproxy.proxy.layers.http import HttpRequestHook
from mitmproxy.test import taddons, tflow

from proxy_addons import gateway
from proxy_addons.faults import Faults
from proxy_addons.pipeline import Pipeline
from proxy_addons.routing import Routing
from proxy_addons.upstream import FreshUpstream


class Part:
    def __init__(self, name: str, calls: list, *, pause: bool = False, fail: bool = False) -> None:
        self.name, self.calls, self.pause, self.fail = name, calls, pause, fail

    def request(self, flow):
        self.calls.append(f"{self.name} in")
        if self.fail:
            raise RuntimeError(f"{self.name} failed")
        if self.pause:
            return self._later()
        self.calls.append(f"{self.name} out")
        return None

    async def _later(self) -> None:
        await asyncio.sleep(0.01)
        self.calls.append(f"{self.name} out")


class Silent:
    """No flow hooks at all."""


async def dispatch(addon, flow) -> None:
    with taddons.context(addon) as tctx:
        await tctx.master.addons.handle_lifecycle(HttpRequestHook(flow))


def test_parts_run_in_order_and_an_awaited_part_holds_the_next_one():
    calls: list[str] = []
    p = Pipeline(Part("a", calls), Silent(), Part("b", calls, pause=True), Part("c", calls))
    asyncio.run(dispatch(p, tflow.tflow()))
    assert calls == ["a in", "a out", "b in", "b out", "c in", "c out"]


def test_a_failing_part_ends_the_event_for_the_parts_after_it(caplog):
    calls: list[str] = []
    p = Pipeline(Part("a", calls), Part("b", calls, fail=True), Part("c", calls))
    with caplog.at_level(logging.ERROR):
        asyncio.run(dispatch(p, tflow.tflow()))
    assert calls == ["a in", "a out", "b in"]
    assert any("b failed" in r.getMessage() for r in caplog.records)


def test_only_the_hooks_the_parts_have():
    """mitmproxy calls what it finds: no hook the parts lack (LiveRuns asks whether any addon
    takes ``update``), and one part's hook is handed over as it is."""
    calls: list[str] = []
    a = Part("a", calls)
    p = Pipeline(Silent(), a)
    assert p.request == a.request
    for name in ("update", "response", "error", "configure", "done"):
        assert not hasattr(p, name)


def test_the_gateway_pipeline_forwards_every_hook_of_its_parts():
    (p,) = gateway.addons
    for part in p.parts:
        for name in hooks.all_hooks:
            if callable(getattr(part, name, None)):
                assert callable(getattr(p, name, None)), (type(part).__name__, name)
    # named, in case mitmproxy's hook registry missed one (it is filled as modules import)
    for name in ("requestheaders", "request", "response", "error", "server_connected",
                 "server_disconnected", "client_disconnected", "load", "configure", "running", "done"):
        assert callable(getattr(p, name, None)), name
    assert not hasattr(p, "update")


class WithCommand:
    def load(self, loader) -> None:
        loader.add_option("pipeline_test_option", int, 7, "An option of a part.")

    @command.command("pipeline.test.echo")
    def echo(self, word: str) -> str:
        return word.upper()


def test_parts_options_and_commands_are_registered():
    with taddons.context(Pipeline(Silent(), WithCommand())) as tctx:
        assert tctx.options.pipeline_test_option == 7
        assert tctx.master.commands.call_strings("pipeline.test.echo", ["hi"]) == "HI"


def test_faults_find_the_routes_handed_over():
    """In the gateway, Routing is a part, not an addon mitmproxy can find by name: Faults checks
    a rule's service against the routes it was handed."""
    routing = Routing()
    faults = Faults(routing, FreshUpstream())
    with taddons.context(Pipeline(routing, faults)) as tctx:
        assert tctx.master.addons.get("routing") is None
        tctx.options.routes = "/a/=http://127.0.0.1:8001,/b/=http://127.0.0.1:8002"
        with pytest.raises(exceptions.OptionsError, match=re.escape("service='c' is not a route (a, b)")):
            tctx.options.update(hoptrace_faults=["status=400 service=c"])


def test_faults_refresh_the_upstream_handed_over():
    """After a delay rule's pause, Faults lets the FreshUpstream it was handed close idle
    upstream connections (mitmproxy cannot find a part by name)."""
    routing, fresh = Routing(), FreshUpstream()
    closed: list = []
    fresh.close_idle = closed.append
    faults = Faults(routing, fresh)
    with taddons.context(Pipeline(routing, fresh, faults)) as tctx:
        assert tctx.master.addons.get("freshupstream") is None
        tctx.options.update(routes="/a/=http://127.0.0.1:8001", hoptrace_faults=["delay=0.01"])
        f = tflow.tflow()
        asyncio.run(faults.request(f))
    assert closed == [f]
