"""The app's routes, flat: FastAPI >= 0.16x keeps included routers as nodes of ``app.routes``
(walked with ``iter_route_contexts``); older versions list every route there directly."""

from collections.abc import Iterator

from fastapi import FastAPI
from fastapi import routing as fastapi_routing


def routes(app: FastAPI) -> Iterator:
    """Every route with its ``path_regex``, ``path_format`` and ``methods`` (and ``dependencies``)."""
    walk = getattr(fastapi_routing, "iter_route_contexts", None)
    yield from (walk(app.routes) if walk else app.routes)


def allowed_methods(app: FastAPI, path: str) -> str:
    """The ``Allow`` header for ``path``: the methods of every route that serves it, and OPTIONS.

    Starlette's 405 names only the first route that matched the path (``POST`` for
    ``/users``, where ``GET`` is another route); RFC 9110 wants them all."""
    methods = {"OPTIONS"}
    for route in routes(app):
        if route.path_regex.match(path):
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))
