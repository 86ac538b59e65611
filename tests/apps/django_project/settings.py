"""Settings of the test project. ``RM_BARE=1`` leaves the metrics middleware out;
``RM_LOG_BODY=0`` turns body logging off."""

from __future__ import annotations

import os
from typing import Any

from readme_metrics import MetricsApiConfig

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.apps.django_project.urls"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, object] = {}
USE_TZ = True

MIDDLEWARE = [
    "readme_metrics.django.MetricsMiddleware",
    "django.middleware.common.CommonMiddleware",
]
if os.environ.get("RM_BARE"):
    MIDDLEWARE.remove("readme_metrics.django.MetricsMiddleware")


async def skip(request: Any) -> bool:
    """An ``async def`` skip hook: honoured under ASGI; under WSGI it cannot run (ignored)."""
    return bool(request.headers.get("X-Async-Skip"))


README_METRICS_CONFIG = MetricsApiConfig(
    "test-api-key",
    "tests.integration.group",
    base_log_url="https://docs.example.test",
    flush_interval=0.05,
    skip=skip,
    log_body=os.environ.get("RM_LOG_BODY", "1") != "0",
)
