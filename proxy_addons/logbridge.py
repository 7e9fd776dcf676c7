"""Keep hoptrace's own log lines off mitmproxy's deprecated ``add_log`` bridge.

mitmproxy still turns every log record into its deprecated ``add_log`` event
(``mitmproxy.log.LegacyLogEvents``): a wake-up of the event loop and a walk over every addon of
the chain, ≈ 76 µs a record under mitmdump (``bench.addons_cpu``'s master; printing the line on
the terminal ≈ 11 µs). The live diagnosis writes one line per finished run, so that walk was
≈ 8 µs of every hop. The terminal (``TermLog``) and mitmweb's event log have handlers of their
own and still get every line; only a script that implements the deprecated ``add_log`` hook no
longer sees hoptrace's lines (nothing of mitmproxy's own does).
"""

from __future__ import annotations

import logging

from mitmproxy.log import LegacyLogEvents

LOGGER = "hoptrace"  # the logger of the run lines (annotate.py) and of fault injections


class NotOurs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != LOGGER


def spare_add_log() -> None:
    """Put the filter on each ``add_log`` bridge installed, once each."""
    for h in logging.getLogger().handlers:
        if isinstance(h, LegacyLogEvents) and not any(isinstance(f, NotOurs) for f in h.filters):
            h.addFilter(NotOurs())
