"""Routing alone, no recording: what a user gets from mitmproxy by itself. The benchmark's
baseline ("bare"): ``mitmdump -s proxy_addons/gateway_bare.py --set routes=…``."""

from proxy_addons.routing import Routing

addons = [Routing()]
