"""The Django project of the route-policy tests: settings and URLs in one module
(``DJANGO_SETTINGS_MODULE=tests.apps.routes_django``; see ``tests.apps.routes_config``)."""

from __future__ import annotations

import time

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt

from readme_metrics import Route
from tests.apps.routes_config import AUDIT, BIG, RAISED, SLOW_MS, config

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = __name__
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, object] = {}
USE_TZ = True
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024 * 1024
MIDDLEWARE = ["readme_metrics.django.MetricsMiddleware"]
README_METRICS_CONFIG = config()


def ping(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"pong", content_type="text/plain")


@csrf_exempt
def echo(request: HttpRequest, name: str = "") -> HttpResponse:
    return HttpResponse(request.body, content_type="application/json")


def quiet(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"quiet")


@Route(log=False)
def view_quiet(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"quiet")


@csrf_exempt
@Route(log_body=False)
def view_nobody(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body, content_type="application/json")


def item(request: HttpRequest, item_id: int) -> JsonResponse:
    return JsonResponse({"id": item_id})


def sampled(request: HttpRequest, what: str) -> HttpResponse:
    if what == "raise":
        raise ValueError(RAISED)
    if what == "slow":
        time.sleep(SLOW_MS / 1000 + 0.1)
    return HttpResponse(b"x", status=503 if what == "fail" else 200)


def half(request: HttpRequest, n: str) -> HttpResponse:
    return HttpResponse(n.encode())


@Route(sample_rate=0.5)
def view_half(request: HttpRequest, n: int) -> HttpResponse:
    return HttpResponse(str(n).encode())


@Route(max_body_bytes=AUDIT)
def view_big(request: HttpRequest) -> HttpResponse:
    return HttpResponse(BIG, content_type="application/octet-stream")


def teapot(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"short and stout", status=418)


urlpatterns = [
    path("ping", ping),
    path("audit/echo", echo),
    path("quiet/x", quiet),
    path("view-quiet", view_quiet),
    path("view-nobody", view_nobody),
    path("items/<int:item_id>", item),
    path("sampled/<str:what>", sampled),
    re_path(r"^half/(?P<n>[0-9]+)$", half),
    path("secret/<name>", echo),
    path("teapot", teapot),
    path("view-half/<int:n>", view_half),
    path("view-big", view_big),
]
