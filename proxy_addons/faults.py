"""Fault injection: the one deliberate exception to the gateway's transparency.

With no rules (the default) this addon does nothing at all. Rules (option ``hoptrace_faults``,
syntax in docs/faults.md and proxy_addons/faults_rules.py) answer a hop with a status and body,
delay it, or drop its connection, chosen by service, hop or iteration within a run, every Nth run,
a probability (``hoptrace_faults_seed`` makes the draws reproducible) and mitmproxy flow filters.
The first matching rule applies. Every touched flow says so: ``injected`` in its flows.jsonl
record, `` · injected`` in its comment, the :syringe: marker, origin ``gateway`` for an answer we
made. It must run after LiveRuns (it reads the run placement LiveRuns puts into the record).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Optional

from mitmproxy import command, ctx, exceptions, http

from proxy_addons import flowmeta
from proxy_addons.annotate import INJECTED_MARK
from proxy_addons.faults_rules import Rule, parse_rules, rule_rng
from proxy_addons.logbridge import LOGGER

log = logging.getLogger(LOGGER)
INJECTED_SUFFIX = " \u00b7 injected"
INJECTED_REASON = "injected fault"
MAX_TRACKED_RUNS = 10_000


def injected_response(rule: Rule, service: str | None, run: dict | None) -> http.Response:
    """The answer for a status rule: the rule's body, or a JSON body shaped like a service's
    rejection (so the sender's ``rejected`` outcome names it) that says it was injected."""
    if rule.body is not None:
        try:
            json.loads(rule.body)
            ctype = "application/json"
        except ValueError:
            ctype = "text/plain; charset=utf-8"
        return http.Response.make(rule.status, rule.body, {"content-type": ctype})
    run = run or {}
    body = {"detail": f"hoptrace gateway: injected fault (rule {rule.text!r})", "injected": True,
            "reason": INJECTED_REASON, "service": service, "hop": run.get("hop"),
            "iteration": run.get("iteration")}
    return http.Response.make(rule.status, json.dumps(body), {"content-type": "application/json"})


class Faults:
    def __init__(self, routing=None, fresh=None) -> None:
        # the gateway's Routing and FreshUpstream, handed over in a Pipeline (where mitmproxy
        # cannot find them by name); alone, e.g. in tests, they are looked up by name
        self.routing, self.fresh = routing, fresh
        self.rules: list[Rule] = []
        self.seed: int | None = None
        self.rngs: list = []
        self.counts: list[int] = []  # injections per rule since the rules were set
        self.runs_seen = 0  # runs started since the rules were set (for every=N)
        self.ordinal: dict[str, int] = {}  # run id → its number among them

    def load(self, loader) -> None:
        loader.add_option(
            "hoptrace_faults", Sequence[str], [],
            "Fault rules (docs/faults.md), e.g. 'status=400 service=b hop=4', 'drop every=3 hop=2', "
            "'delay=0.5 ~u /b/'. Repeat the option or separate rules with ';'. Empty: no injection.",
        )
        loader.add_option(
            "hoptrace_faults_seed", Optional[int], None,
            "Seed for the p=… draws of the fault rules (same seed, same order of hops → same faults).",
        )

    def configure(self, updated: set[str]) -> None:
        if not {"hoptrace_faults", "hoptrace_faults_seed", "routes"} & updated:
            return
        try:
            rules = parse_rules(ctx.options.hoptrace_faults)
        except ValueError as exc:
            raise exceptions.OptionsError(f"hoptrace_faults: {exc}") from None
        self._check_services(rules)
        seed = ctx.options.hoptrace_faults_seed
        if ([r.text for r in rules], seed) == ([r.text for r in self.rules], self.seed):
            return  # same rules (routes changed, a rejected update rolled back): keep the state
        self.seed = seed
        self.rules, self.rngs = rules, [rule_rng(seed, r.text) for r in rules]
        self.counts, self.runs_seen, self.ordinal = [0] * len(rules), 0, {}
        if rules:
            log.warning("hoptrace: FAULT INJECTION ON, %d rule(s): %s", len(rules),
                        " ; ".join(r.text for r in rules))
        elif "hoptrace_faults" in updated and ctx.options.hoptrace_faults != []:
            log.info("hoptrace: fault injection off")

    def _check_services(self, rules: list[Rule]) -> None:
        routing = self.routing or ctx.master.addons.get("routing")
        known = {r.name for r in getattr(routing, "routes", [])}
        for n, r in enumerate(rules, 1):
            if known and r.service is not None and r.service not in known:
                raise exceptions.OptionsError(
                    f"hoptrace_faults: rule {n} {r.text!r}: service={r.service!r} is not a route "
                    f"({', '.join(sorted(known))})")

    def request(self, flow: http.HTTPFlow):
        """A plain hook: without rules (the usual case) it costs no coroutine per flow; with
        rules it returns the coroutine that mitmproxy then awaits."""
        if not self.rules or flow.response is not None or flow.error is not None:
            return None
        return self._request(flow)

    async def _request(self, flow: http.HTTPFlow) -> None:
        run = flow.metadata.get(flowmeta.RECORD, {}).get("run")
        ordinal = self._ordinal(run)
        service = flow.metadata.get(flowmeta.SERVICE)
        for i, (rule, rng) in enumerate(zip(self.rules, self.rngs, strict=True)):
            if rule.selects(service, run, ordinal, flow) and (rule.p is None or rng.random() < rule.p):
                await self._inject(flow, i, rule, service, run)
                return

    def _ordinal(self, run: dict | None) -> int | None:
        if run is None:
            return None
        if run.get("hop") == 1:
            self.runs_seen += 1
            self.ordinal[run["id"]] = self.runs_seen
            while len(self.ordinal) > MAX_TRACKED_RUNS:
                del self.ordinal[next(iter(self.ordinal))]
        return self.ordinal.get(run.get("id"))

    async def _inject(self, flow: http.HTTPFlow, i: int, rule: Rule, service: str | None,
                      run: dict | None) -> None:
        self.counts[i] += 1
        flow.metadata.setdefault(flowmeta.RECORD, {})["injected"] = rule.record(i)
        flow.comment = f"{flow.comment}{INJECTED_SUFFIX}" if flow.comment else "injected"
        flow.marked = INJECTED_MARK
        where = f"run {run['id']} hop {run['hop']}" if run else flow.request.path
        log.info("hoptrace: injected %s into %s (rule %d: %s)", rule.action, where, i + 1, rule.text)
        if rule.delay:
            await asyncio.sleep(rule.delay)
            if flow.error is not None:  # the client gave up meanwhile
                return
            self._refresh_upstream(flow)
        if rule.drop:
            flow.kill()
        elif rule.status is not None:
            flow.response = injected_response(rule, service, run)
            flow.metadata[flowmeta.ORIGIN] = "gateway"

    def _refresh_upstream(self, flow: http.HTTPFlow) -> None:
        """After a delay the upstream connection may have idled past the service's keep-alive:
        let FreshUpstream close it, as it does before any request (no request of this client
        but ours is in flight, so no other request uses it)."""
        fresh = self.fresh or ctx.master.addons.get("freshupstream")
        if fresh is not None and fresh.in_flight.get(flow.client_conn.id, 0) <= 1:
            fresh.close_idle(flow)

    # --- mitmweb command bar ------------------------------------------------------------------
    @command.command("hoptrace.faults.list")
    def list_rules(self) -> Sequence[str]:
        """The active fault rules, numbered, with how often each fired."""
        return [f"{n}: {r.text}  (injected {c}x)"
                for n, (r, c) in enumerate(zip(self.rules, self.counts, strict=True), 1)]

    @command.command("hoptrace.faults.add")
    def add_rule(self, *rule: str) -> None:
        """Add one fault rule, e.g. hoptrace.faults.add status=400 service=b hop=4"""
        self._update([*ctx.options.hoptrace_faults, " ".join(rule)])

    @command.command("hoptrace.faults.remove")
    def remove_rule(self, number: int) -> None:
        """Remove the rule with this number (as hoptrace.faults.list shows it)."""
        texts = [r.text for r in self.rules]
        if not 1 <= number <= len(texts):
            raise exceptions.CommandError(f"no fault rule {number} (there are {len(texts)})")
        del texts[number - 1]
        self._update(texts)

    @command.command("hoptrace.faults.clear")
    def clear_rules(self) -> None:
        """Remove every fault rule: the gateway is transparent again."""
        self._update([])

    @staticmethod
    def _update(values: list[str]) -> None:
        try:
            ctx.options.update(hoptrace_faults=values)
        except exceptions.OptionsError as exc:
            raise exceptions.CommandError(str(exc)) from None
