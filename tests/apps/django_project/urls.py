"""Views of the test project: bodies read every way, streams (sync and async), files."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

FILE = Path(tempfile.gettempdir()) / "readme_metrics_django_file.bin"
FILE_BYTES = bytes(range(256)) * 512  # 128 KiB


def ping(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"pong", content_type="text/plain")


@csrf_exempt
def echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body, content_type=request.content_type or "application/octet-stream")


@csrf_exempt
def form(request: HttpRequest) -> JsonResponse:
    files = {name: len(f.read()) for name, f in request.FILES.items()}
    return JsonResponse({"form": request.POST.dict(), "files": files})


@csrf_exempt
def ignore(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"did not read it", content_type="text/plain")


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def chunks() -> Iterator[bytes]:
        for i in range(4):
            yield f"sync chunk {i}\n".encode()

    return StreamingHttpResponse(chunks(), content_type="text/plain")


async def astream(request: HttpRequest) -> StreamingHttpResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(4):
            await asyncio.sleep(0)
            yield f"async chunk {i}\n".encode()

    return StreamingHttpResponse(chunks(), content_type="text/plain")


def slow(request: HttpRequest) -> StreamingHttpResponse:
    """A long stream (sync under WSGI, async under ASGI: Django buffers the other kind)."""
    if hasattr(request, "scope"):  # ASGI

        async def achunks() -> AsyncIterator[bytes]:
            for _ in range(400):  # 400 x 64 KiB, 20 ms apart: 8 s if nobody hangs up
                yield b"x" * 65536
                await asyncio.sleep(0.02)

        return StreamingHttpResponse(achunks(), content_type="application/octet-stream")

    def chunks() -> Iterator[bytes]:
        for _ in range(400):
            yield b"x" * 65536
            time.sleep(0.02)

    return StreamingHttpResponse(chunks(), content_type="application/octet-stream")


def file(request: HttpRequest) -> FileResponse:
    if not FILE.exists() or FILE.stat().st_size != len(FILE_BYTES):
        FILE.write_bytes(FILE_BYTES)
    return FileResponse(FILE.open("rb"), content_type="application/octet-stream")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


def cookie(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(json.dumps({"ok": True}), content_type="application/json")
    response.set_cookie("flavour", "oatmeal")
    return response


urlpatterns = [
    path("ping", ping),
    path("echo", echo),
    path("form", form),
    path("ignore", ignore),
    path("stream", stream),
    path("astream", astream),
    path("slow", slow),
    path("file", file),
    path("boom", boom),
    path("cookie", cookie),
]
