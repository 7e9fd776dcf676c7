"""The gateway's addons behind one mitmproxy addon (``Pipeline``).

mitmproxy walks down every addon a script holds on every event and calls each hook through its
dispatcher (a ``safecall`` context and the hook's arguments rebuilt for every call). A hop has
eight events (``requestheaders``, ``request``, ``responseheaders``, ``response``, each followed by
``update``); with seven addons in the script that walk was ≈ 17 % of the instructions hoptrace
adds to a hop (``bench.addons_cpu`` under callgrind: 0.93–0.96 M added a hop before, 0.78–0.79 M
after; docs/performance-log.md, "Twelfth stop").
The pipeline is the one addon mitmproxy sees: each hook is a plain loop over the parts that
implement it, in the parts' order, with the semantics the parts had as addons of one script:

- a hook that returns an awaitable (``Faults.request`` with rules) is awaited before the next
  part's hook runs, as mitmproxy awaits it before calling the next addon;
- an exception in a part's hook ends that event for the parts after it (mitmproxy logs it), as
  the script's one ``safecall`` did;
- ``load`` also registers each part's commands (``@command.command``), as mitmproxy does for the
  addons it walks. A part is not found by ``ctx.master.addons.get``: parts that need another get
  it handed over (``Faults``);
- a hook a part takes only once running (``Retention.update`` under mitmweb) is bound then.

The parts stay ordinary mitmproxy addons; each is tested on its own with ``taddons``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import mitmproxy.eventsequence  # noqa: F401  (imports every flow hook into hooks.all_hooks)
from mitmproxy import ctx, hooks


class Pipeline:
    def __init__(self, *parts: object) -> None:
        self.parts = parts
        self._bind()

    def load(self, loader) -> None:
        for p in self.parts:
            if callable(fn := getattr(p, "load", None)):
                fn(loader)
            ctx.master.commands.collect_commands(p)

    def running(self) -> None:
        for p in self.parts:
            if callable(fn := getattr(p, "running", None)):
                fn()
        self._bind()  # a part may take a hook only now (Retention: ``update``, under mitmweb)

    def _bind(self) -> None:
        """Each hook the parts have as one attribute (mitmproxy looks hooks up by name on every
        event); none for a hook no part has, so mitmproxy skips it as it would have."""
        for name in hooks.all_hooks:
            if name in OWN:
                continue
            fns = [fn for p in self.parts if callable(fn := getattr(p, name, None))]
            if fns:
                setattr(self, name, fns[0] if len(fns) == 1 else chain(fns))
            else:
                self.__dict__.pop(name, None)


OWN = frozenset(name for name in vars(Pipeline) if not name.startswith("_"))  # hooks it defines itself


def chain(fns: Sequence[Callable]) -> Callable:
    """One hook calling ``fns`` in order; from the first that returns an awaitable on, the rest
    run in a coroutine (returned for mitmproxy to await) after it."""
    fns = tuple(fns)

    def hook(*args):
        for i, fn in enumerate(fns):
            res = fn(*args)
            if res is not None and inspect.isawaitable(res):
                return _rest(res, fns[i + 1:], args)
        return None

    return hook


async def _rest(res, fns: tuple, args: tuple) -> None:
    await res
    for fn in fns:
        res = fn(*args)
        if res is not None and inspect.isawaitable(res):
            await res
