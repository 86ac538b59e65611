"""The ASGI (Starlette) app of the delivery tests: ``/pid`` and ``/hello``, wrapped.

Delivery settings come from the environment, as for :mod:`tests.apps.delivery_app`.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from readme_metrics import MetricsApiConfig, MetricsMiddleware
from tests.apps.delivery_app import group, settings_from_env


async def pid(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(os.getpid()))


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


app = Starlette(routes=[Route("/pid", pid), Route("/hello", hello)])
wrapped = MetricsMiddleware(app, MetricsApiConfig("test-api-key", group, **settings_from_env()))
