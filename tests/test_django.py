"""A real framework, unchanged: a Django project through django-rsgi answers through the bridge as under Granian.

``tests/apps/django_app.py`` (settings, views and URLs in one module) is served natively
(``granian --interface rsgi``) and through the bridge on uvicorn (h11 and httptools) and hypercorn.
django-rsgi answers from a child task (issue 12, item 2), serves ``FileResponse`` with
``response_file`` and ranges with ``response_file_range``. django-rsgi needs Python >= 3.12: on
older Pythons the module is skipped with that reason.
"""

from __future__ import annotations

import contextlib
import importlib.util
import random
import sys
from collections.abc import Iterator

import httpx
import pytest

if sys.version_info < (3, 12):
    pytest.skip("django-rsgi needs Python >= 3.12", allow_module_level=True)
if importlib.util.find_spec("django_rsgi") is None:  # never a silent skip: it is in the test extra
    pytest.fail("django-rsgi is not installed: pip install -e '.[test]' (Python >= 3.12)", pytrace=False)

from tests.apps.http_app import FILE
from tests.servers import Server

IGNORED = {"date", "server", "transfer-encoding", "connection"}
FILE_BYTES = open(FILE, "rb").read()  # noqa: SIM115
FILE_SIZE = len(FILE_BYTES)
BIG = random.Random(11).randbytes(200 * 1024)

TARGETS = {
    "uvicorn-h11": ("uvicorn", ("--http", "h11")),
    "uvicorn-httptools": ("uvicorn", ("--http", "httptools")),
    "hypercorn": ("hypercorn", ()),
}

REQUESTS = [
    ("GET", "/", {}, None),
    ("HEAD", "/", {}, None),
    ("GET", "/info?a=1&a=2&b=x%20y", {"x-test": "yes"}, None),
    ("POST", "/echo", {}, b"hello django"),
    ("POST", "/echo", {}, BIG),
    ("GET", "/stream", {}, None),
    ("GET", "/missing", {}, None),
    ("GET", "/file", {}, None),
    ("HEAD", "/file", {}, None),
    ("GET", "/file", {"range": "bytes=10-99"}, None),
    ("GET", "/file", {"range": "bytes=65530-200000"}, None),
    ("GET", "/file", {"range": "bytes=-100"}, None),
    ("GET", "/file", {"range": f"bytes={FILE_SIZE + 10}-"}, None),  # unsatisfiable: 416
    ("HEAD", "/file", {"range": "bytes=0-9"}, None),
]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Server]]:
    with contextlib.ExitStack() as stack:
        out = {"granian": stack.enter_context(Server("granian-rsgi", "tests.apps.django_app:app"))}
        for name, (kind, args) in TARGETS.items():
            out[name] = stack.enter_context(Server(kind, "tests.apps.django_app:asgi", list(args)))
        yield out


def fetch(server: Server, method: str, path: str, headers: dict[str, str], body: bytes | None) -> tuple[object, ...]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        r = c.request(method, path, headers=headers, content=body)
        hs = [(k.lower(), v) for k, v in r.headers.multi_items() if k.lower() not in IGNORED]
        return r.status_code, hs, r.content


@pytest.mark.parametrize(
    ("method", "path", "headers", "body"),
    REQUESTS,
    ids=[f"{m} {p} {h.get('range', '')} {len(b or b'')}".strip() for m, p, h, b in REQUESTS],
)
@pytest.mark.parametrize("name", list(TARGETS))
def test_same_as_granian(
    servers: dict[str, Server], name: str, method: str, path: str, headers: dict[str, str], body: bytes | None
) -> None:
    ref = fetch(servers["granian"], method, path, headers, body)
    got = fetch(servers[name], method, path, headers, body)
    assert got == ref


def test_reference_answers_are_what_django_says(servers: dict[str, Server]) -> None:
    """The Granian side is right, so "same as Granian" means "correct"."""
    with httpx.Client(base_url=servers["granian"].url, timeout=10) as c:
        assert c.get("/").text == "Hello from Django"
        r = c.get("/file")
        assert (r.status_code, r.content, r.headers["accept-ranges"]) == (200, FILE_BYTES, "bytes")
        r = c.get("/file", headers={"range": "bytes=10-99"})
        assert (r.status_code, r.content) == (206, FILE_BYTES[10:100])
        assert r.headers["content-range"] == f"bytes 10-99/{FILE_SIZE}"
        r = c.head("/file")
        assert (r.status_code, r.content, r.headers["content-length"]) == (200, b"", str(FILE_SIZE))
        assert c.get("/stream").text == "part 0;part 1;part 2;"
        assert c.post("/echo", content=BIG).content == BIG
