"""Route reverse-proxied requests to upstream services by path prefix.

Option ``routes``: ``/a/=http://127.0.0.1:8001,/b/=http://127.0.0.1:8002``. The longest matching
prefix wins; the route's name (the prefix without slashes: ``a``) is kept in ``flow.metadata`` so
every later addon knows which service a hop went to. An unknown path gets the gateway's own 404.
Routing rewrites only the destination (and, with it, the Host header), never the content.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from mitmproxy import ctx, exceptions, http

from proxy_addons import flowmeta

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Route:
    prefix: str
    name: str
    scheme: str
    host: str
    port: int

    @property
    def upstream(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"  # a few per flow: no need to cache

    def matches(self, path: str) -> bool:
        return path.startswith(self.prefix) or path.split("?", 1)[0] == self.prefix.rstrip("/")


def parse_routes(spec: str) -> list[Route]:
    """``PREFIX=URL[,PREFIX=URL…]`` → routes, longest prefix first. Raises ValueError with a
    message that names the bad part."""
    routes: dict[str, Route] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        prefix, sep, target = part.partition("=")
        prefix, target = prefix.strip(), target.strip()
        if not sep or not prefix or not target:
            raise ValueError(f"route {part!r} is not PREFIX=URL (e.g. /a/=http://127.0.0.1:8001)")
        if not prefix.startswith("/"):
            raise ValueError(f"route {part!r}: the prefix must start with '/'")
        url = urlsplit(target)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"route {part!r}: {target!r} is not an http(s)://host[:port] URL")
        if url.path not in ("", "/") or url.query:
            raise ValueError(f"route {part!r}: the upstream URL must not have a path ({url.path!r})")
        try:
            port = url.port or (443 if url.scheme == "https" else 80)
        except ValueError as exc:
            raise ValueError(f"route {part!r}: bad port: {exc}") from None
        if prefix in routes:
            raise ValueError(f"route prefix {prefix!r} is given twice")
        name = prefix.strip("/") or "root"
        routes[prefix] = Route(prefix, name, url.scheme, url.hostname, port)
    return sorted(routes.values(), key=lambda r: len(r.prefix), reverse=True)


def not_found(path: str, routes: list[Route]) -> http.Response:
    known = ", ".join(r.prefix for r in reversed(routes)) or "none"
    body = {"detail": f"hoptrace gateway: no route for {path!r}", "routes": known}
    return http.Response.make(404, json.dumps(body), {"content-type": "application/json"})


class Routing:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def load(self, loader) -> None:
        loader.add_option(
            "routes", str, "",
            "Path prefix → upstream, comma-separated: /a/=http://127.0.0.1:8001,/b/=http://127.0.0.1:8002",
        )

    def configure(self, updated: set[str]) -> None:
        if "routes" in updated:
            try:
                self.routes = parse_routes(ctx.options.routes)
            except ValueError as exc:
                raise exceptions.OptionsError(f"routes: {exc}") from None
            if ctx.options.routes and not self.routes:
                raise exceptions.OptionsError("routes: no route given")

    def route_for(self, path: str) -> Route | None:
        for r in self.routes:
            if r.matches(path):
                return r
        return None

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or not self.routes:
            return
        route = self.route_for(flow.request.path)
        if route is None:
            flow.response = not_found(flow.request.path, self.routes)
            flow.metadata[flowmeta.ORIGIN] = "gateway"
            return
        req = flow.request
        req.scheme = route.scheme
        req.data.port = route.port  # set quietly: the host setter below then updates the Host
        req.host = route.host  # header / authority once, with the final scheme, host and port
        flow.metadata[flowmeta.SERVICE] = route.name
        flow.metadata[flowmeta.UPSTREAM] = route.upstream
