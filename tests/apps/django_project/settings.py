"""Settings of the test project. ``RM_BARE=1`` leaves the metrics middleware out."""

from __future__ import annotations

import os

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

README_METRICS_CONFIG = MetricsApiConfig(
    "test-api-key",
    "tests.integration.group",
    base_log_url="https://docs.example.test",
    flush_interval=0.05,
)
