"""The Django project of the outgoing-call tests: settings and URLs in one module
(``DJANGO_SETTINGS_MODULE=tests.apps.outgoing_django``), the configuration and the paths of
``tests.apps.outgoing_apps`` (its route policies), the views calling out with ``requests``.
The grouping function runs after the view (Django's middleware), so whether a request is
logged, and its group, are known only then: the calls made by the view wait for it."""

from __future__ import annotations

import requests
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from readme_metrics import Route
from tests.apps.outgoing_apps import CALL_PATHS, SECRETS, TARGET, config

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = __name__
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, object] = {}
USE_TZ = True
MIDDLEWARE = ["readme_metrics.django.MetricsMiddleware"]
README_METRICS_CONFIG = config()


@csrf_exempt
def call(request: HttpRequest) -> HttpResponse:
    headers = {"X-Req-Id": request.headers.get("X-Req-Id", "")}
    answer = requests.post(f"{TARGET}/echo?token=tok-q", json=SECRETS, headers=headers, timeout=10)
    return HttpResponse(answer.content, status=int(request.GET.get("status", 200)))


def ping(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"pong")


urlpatterns = [
    *(path(p.lstrip("/"), call) for p in CALL_PATHS),
    path("view-quiet/call", Route(log=False)(csrf_exempt(lambda request: call(request)))),
    path("ping", ping),
]
