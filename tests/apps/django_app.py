"""A tiny Django project served by django-rsgi (Python >= 3.12), for ``tests/test_django.py``.

Everything (settings, views, URLs) lives in this module: no project files on disk. Natively:
``granian --interface rsgi tests.apps.django_app:app``; through the bridge:
``tests.apps.django_app:asgi``. django-rsgi answers each request from a child task it awaits
(``process_request``), sends a ``FileResponse`` with ``response_file`` and a ``Range`` request with
``response_file_range`` (206, its own content-range and content-length).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import django
from django.conf import settings

from tests.apps.http_app import FILE

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="rsgi-bridge-tests-only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        DATABASES={},
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup(set_prefix=False)

from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django_rsgi import DjangoRSGI

from rsgi_bridge import wrap


async def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Hello from Django", headers={"x-view": "index"})


async def info(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "method": request.method,
            "path": request.path,
            "query": {k: request.GET.getlist(k) for k in request.GET},
            "x_test": request.headers.get("x-test"),
        }
    )


@csrf_exempt
async def echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body, content_type="application/octet-stream")


async def download(request: HttpRequest) -> FileResponse:
    return FileResponse(open(FILE, "rb"), content_type="application/octet-stream")


async def stream(request: HttpRequest) -> StreamingHttpResponse:
    async def parts() -> AsyncIterator[bytes]:
        for i in range(3):
            await asyncio.sleep(0)
            yield f"part {i};".encode()

    return StreamingHttpResponse(parts(), content_type="text/plain")


urlpatterns = [
    path("", index),
    path("info", info),
    path("echo", echo),
    path("file", download),
    path("stream", stream),
]

FILE_SIZE = os.path.getsize(FILE)

app = DjangoRSGI()
asgi = wrap(app)
