"""Real ASGI middleware and instrumentation around a bridged RSGI app, on real servers.

Every recipe of ``docs/middleware.md`` is taken from the page as written (the block after a
``<!-- run by tests/test_ecosystem.py as NAME -->`` marker), written to a directory on
``PYTHONPATH`` and served; the RSGI app they wrap is ``tests/apps/eco/myproject/main.py``.
OpenTelemetry and Sentry run in the server process, recorded there by ``tests/apps/eco/harness_*.py``.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import os
import re
import shlex
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apps.eco.myproject.main import CHUNKS, FILE, PLAIN, STREAM
from tests.servers import PY, ROOT, Server, wait_for

ECO = ROOT / "tests" / "apps" / "eco"
PAGE = ROOT / "docs" / "middleware.md"
MARKER = re.compile(r"^<!-- run by tests/test_ecosystem\.py as (\S+) -->$")

# Every block the page marks for this file, and the tests that use it.
USED = {
    "recipe_gzip.py",
    "recipe_cors.py",
    "recipe_trusted_host.py",
    "cmd_proxy_headers",
    "recipe_proxy_headers.py",
    "recipe_granian_proxy.py",
    "recipe_otel.py",
    "recipe_sentry.py",
    "recipe_correlation_id.py",
}


def page_blocks(page: Path) -> dict[str, str]:
    """``{name: code}`` of the fenced blocks after this file's markers."""
    lines = page.read_text().splitlines()
    blocks: dict[str, str] = {}
    for i, line in enumerate(lines):
        m = MARKER.match(line.strip())
        if not m:
            continue
        fence = lines[i + 1]
        assert fence.startswith("```"), f"{page.name}:{i + 2}: a fenced block must follow the marker"
        end = lines.index("```", i + 2)
        blocks[m.group(1)] = "\n".join(lines[i + 2 : end]) + "\n"
    return blocks


BLOCKS = page_blocks(PAGE)


def test_every_marked_block_is_tested_and_named_by_its_first_line() -> None:
    assert set(BLOCKS) == USED
    for name, code in BLOCKS.items():
        if name.endswith(".py"):
            assert code.startswith(f"# {name}\n"), name


@pytest.fixture(scope="module")
def recipes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The page's recipes as modules; the environment that imports them and ``myproject``."""
    d = tmp_path_factory.mktemp("recipes")
    for name, code in BLOCKS.items():
        if name.endswith(".py"):
            (d / name).write_text(code)
    path = [str(d), str(ECO), str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(p for p in path if p)}


def serve(kind: str, app: str, env: dict[str, str], extra: tuple[str, ...] = ()) -> Server:
    return Server(kind, app, extra, env=env)


def gunzip_raw(client: httpx.Client, path: str) -> tuple[httpx.Headers, bytes]:
    """GET ``path`` with ``Accept-Encoding: gzip``: the headers and the body exactly as sent."""
    with client.stream("GET", path, headers={"accept-encoding": "gzip"}) as r:
        assert r.status_code == 200
        return r.headers, b"".join(r.iter_raw())


# --- GZipMiddleware ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["uvicorn", "hypercorn"])
def test_gzip_compresses_plain_file_and_stream_responses(kind: str, recipes: dict[str, str]) -> None:
    expected = {"/plain": PLAIN.encode(), "/file": Path(FILE).read_bytes(), "/stream": STREAM}
    with serve(kind, "recipe_gzip:app", recipes) as s, httpx.Client(base_url=s.url, timeout=20) as c:
        for path, body in expected.items():
            headers, raw = gunzip_raw(c, path)
            assert headers["content-encoding"] == "gzip", path
            assert raw[:2] == b"\x1f\x8b" and len(raw) < len(body), path
            assert gzip.decompress(raw) == body, path  # byte for byte what the RSGI app sent
            if path == "/stream":
                assert "content-length" not in headers  # streamed as it is compressed, not buffered
            identity = c.get(path, headers={"accept-encoding": "identity"})
            assert "content-encoding" not in identity.headers
            assert identity.content == body, path


def test_gzip_stream_is_compressed_as_it_is_produced(recipes: dict[str, str]) -> None:
    """More than one compressed piece reaches the client: the stream is not buffered whole."""
    with (
        serve("uvicorn", "recipe_gzip:app", recipes) as s,
        httpx.Client(base_url=s.url, timeout=20) as c,
        c.stream("GET", "/stream", headers={"accept-encoding": "gzip"}) as r,
    ):
        pieces = [p for p in r.iter_raw() if p]
    assert gzip.decompress(b"".join(pieces)) == b"".join(CHUNKS)
    assert len(pieces) > 1


@pytest.mark.parametrize("kind", ["uvicorn", "hypercorn"])
def test_gzip_concurrent_mixed_clients_each_get_their_own_response(kind: str, recipes: dict[str, str]) -> None:
    """GZip rewrites the messages and header lists the bridge sends; no response may leak into another."""
    expected = {"/plain": PLAIN.encode(), "/file": Path(FILE).read_bytes(), "/stream": STREAM}
    jobs = [(path, zipped) for _ in range(6) for path in expected for zipped in (True, False)]

    with serve(kind, "recipe_gzip:app", recipes) as s, httpx.Client(base_url=s.url, timeout=30) as c:

        def fetch(job: tuple[str, bool]) -> tuple[str, bool, dict[str, list[str]], bytes]:
            path, zipped = job
            enc = "gzip" if zipped else "identity"
            with c.stream("GET", path, headers={"accept-encoding": enc}) as r:
                raw = b"".join(r.iter_raw())
                headers = {k: r.headers.get_list(k) for k in r.headers}
            return path, zipped, headers, raw

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(fetch, jobs))
    for path, zipped, headers, raw in results:
        assert headers.get("content-encoding", []) == (["gzip"] if zipped else []), (path, zipped, headers)
        assert len(headers.get("content-type", [])) == 1, headers
        assert (gzip.decompress(raw) if zipped else raw) == expected[path], (path, zipped)


# --- CORSMiddleware, TrustedHostMiddleware ----------------------------------------------------------


def test_cors_preflight_and_responses(recipes: dict[str, str]) -> None:
    origin = "https://app.example.com"
    with serve("uvicorn", "recipe_cors:app", recipes) as s, httpx.Client(base_url=s.url, timeout=20) as c:
        pre = c.options(
            "/seen",
            headers={
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": "x-api-key",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == origin
        assert "POST" in pre.headers["access-control-allow-methods"]
        assert "x-api-key" in pre.headers["access-control-allow-headers"].lower()

        bad = c.options("/seen", headers={"origin": "https://evil.example", "access-control-request-method": "POST"})
        assert bad.status_code == 400
        assert "access-control-allow-origin" not in bad.headers

        for path in ("/seen", "/stream", "/file"):
            r = c.get(path, headers={"origin": origin})
            assert r.status_code == 200
            assert r.headers["access-control-allow-origin"] == origin, path
            assert r.headers.get_list("access-control-allow-origin") == [origin]
        assert c.get("/stream", headers={"origin": origin}).content == STREAM
        seen = c.get("/seen", headers={"origin": origin}).json()
        assert seen["headers"]["origin"] == [origin]  # the RSGI app sees the request unchanged

        other = c.get("/seen", headers={"origin": "https://evil.example"})
        assert other.status_code == 200 and "access-control-allow-origin" not in other.headers


def test_trusted_host_rejects_other_hosts(recipes: dict[str, str]) -> None:
    with serve("uvicorn", "recipe_trusted_host:app", recipes) as s, httpx.Client(base_url=s.url, timeout=20) as c:
        bad = c.get("/seen", headers={"host": "evil.example"})
        assert bad.status_code == 400
        assert bad.text == "Invalid host header"
        for host in ("example.com", "api.example.com"):
            r = c.get("/seen", headers={"host": host})
            assert r.status_code == 200
            assert r.json()["headers"]["host"] == [host]
        assert c.get("/stream", headers={"host": "example.com"}).content == STREAM
        file = c.get("/file", headers={"host": "api.example.com"})  # a file response, through the middleware
        assert file.status_code == 200 and file.content == Path(FILE).read_bytes()
        assert c.get("/file", headers={"host": "evil.example"}).status_code == 400


# --- Proxy headers ----------------------------------------------------------------------------------

FORWARDED = {"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"}


def doc_command(name: str, port: int) -> list[str]:
    """The page's shell command ``name``, run with this interpreter on 127.0.0.1:``port``."""
    argv = shlex.split(BLOCKS[name])
    return [PY, "-m", *argv, "--host", "127.0.0.1", "--port", str(port)]


def seen_behind_proxy(s: Server) -> dict[str, Any]:
    with httpx.Client(base_url=s.url, timeout=20) as c:
        seen: dict[str, Any] = c.get("/seen", headers=FORWARDED).json()
        direct = c.get("/seen").json()  # no headers: the peer, as before
    assert direct["client"].startswith("127.0.0.1:") and direct["scheme"] == "http"
    return seen


def test_uvicorn_proxy_headers_flag(recipes: dict[str, str]) -> None:
    s = Server("uvicorn", "unused", env=recipes)
    s.argv = doc_command("cmd_proxy_headers", s.port)
    with s:
        seen = seen_behind_proxy(s)
    assert seen["client"] == "203.0.113.7:0"
    assert seen["scheme"] == "https"


def test_uvicorn_without_proxy_headers_gives_the_peer(recipes: dict[str, str]) -> None:
    """The control for the tests around it: the headers alone change nothing."""
    with serve("uvicorn", "rsgi_bridge:wrap(myproject.main:app)", recipes, ("--no-proxy-headers",)) as s:
        seen = seen_behind_proxy(s)
    assert seen["client"].startswith("127.0.0.1:") and seen["scheme"] == "http"


# uvicorn's own switch is off here, so what is seen is the middleware's doing.
@pytest.mark.parametrize(("kind", "extra"), [("uvicorn", ("--no-proxy-headers",)), ("hypercorn", ())])
def test_proxy_headers_middleware(kind: str, extra: tuple[str, ...], recipes: dict[str, str]) -> None:
    with serve(kind, "recipe_proxy_headers:app", recipes, extra) as s:
        seen = seen_behind_proxy(s)
    assert seen["client"] == "203.0.113.7:0"
    assert seen["scheme"] == "https"


def test_granian_asgi_proxy_wrapper(recipes: dict[str, str]) -> None:
    with serve("granian-asgi", "recipe_granian_proxy:app", recipes) as s:
        seen = seen_behind_proxy(s)
    assert seen["client"] == "203.0.113.7:0"
    assert seen["scheme"] == "https"


def test_granian_rsgi_natively_ignores_forwarded_headers(recipes: dict[str, str]) -> None:
    """The documented difference: Granian gives an RSGI app the peer, whatever the headers say."""
    with serve("granian-rsgi", "myproject.main:app", recipes) as s:
        seen = seen_behind_proxy(s)
    assert seen["client"].startswith("127.0.0.1:")
    assert seen["scheme"] == "http"
    assert seen["headers"]["x-forwarded-for"] == ["203.0.113.7"]  # the app can read them itself


# --- OpenTelemetry --------------------------------------------------------------------------------


def recorded(c: httpx.Client, count: int, what: str) -> list[dict[str, Any]]:
    """The harness's records once there are at least ``count`` (spans and events are written after the response)."""
    got: list[dict[str, Any]] = []

    def enough() -> bool:
        got[:] = c.get("/_recorded").json()
        return len(got) >= count

    assert wait_for(enough, timeout=10), f"expected {count} {what}, got {got}"
    return got


@pytest.mark.parametrize("kind", ["uvicorn", "hypercorn"])
def test_opentelemetry_one_span_per_request(kind: str, recipes: dict[str, str]) -> None:
    with serve(kind, "harness_otel:app", recipes) as s, httpx.Client(base_url=s.url, timeout=20) as c:
        assert c.get("/users/42").text == "user 42"
        assert c.get("/stream").content == STREAM
        assert c.post("/boom").status_code == 500
        assert c.get("/nope").status_code == 404
        spans = recorded(c, 4, "spans")
        assert c.get("/_recorded").json() == spans  # no more arrive
    by_name = {sp["name"]: sp for sp in spans}
    assert sorted(by_name) == ["GET /nope", "GET /stream", "GET /users/42", "POST /boom"]
    assert all(sp["kind"] == "SERVER" for sp in spans)
    assert len({sp["trace_id"] for sp in spans}) == 4  # one trace, one span per request
    ok = by_name["GET /users/42"]["attributes"]
    assert ok["http.method"] == "GET"
    assert ok["http.target"] == "/users/42"
    assert ok["http.status_code"] == 200
    assert by_name["GET /users/42"]["status"] == "UNSET"
    boom = by_name["POST /boom"]
    assert boom["attributes"]["http.status_code"] == 500
    assert boom["status"] == "ERROR"  # the bridge's 500 marks the span as an error
    assert by_name["GET /nope"]["attributes"]["http.status_code"] == 404
    assert by_name["GET /nope"]["status"] == "UNSET"  # a 4xx is the client's error, not the server's


# --- Sentry -----------------------------------------------------------------------------------------

SENTRY_ENV = {"SENTRY_DSN": "http://public@127.0.0.1:9/1"}  # read by the recipe; the harness sends nothing


def frames(event: dict[str, Any]) -> list[str]:
    return [f["function"] for v in event["exception"]["values"] for f in v["stacktrace"]["frames"]]


@pytest.mark.parametrize("kind", ["uvicorn", "hypercorn"])
def test_sentry_reports_an_rsgi_exception_once_with_its_traceback(kind: str, recipes: dict[str, str]) -> None:
    with (
        serve(kind, "harness_sentry:app", {**recipes, **SENTRY_ENV}) as s,
        httpx.Client(base_url=s.url, timeout=20) as c,
    ):
        assert c.get("/users/1").status_code == 200
        r = c.get("/boom?q=1")
        assert r.status_code == 500
        events = recorded(c, 1, "events")
        assert c.get("/users/2").status_code == 200
        assert wait_for(lambda: False, timeout=1) is False  # time for a duplicate to arrive, if any
        events = c.get("/_recorded").json()
    assert len(events) == 1, [e.get("logentry") for e in events]
    event = events[0]
    value = event["exception"]["values"][-1]
    assert value["type"] == "RuntimeError"
    assert value["value"] == "boom from the RSGI app"
    assert "boom_handler" in frames(event)  # the RSGI app's own frames
    assert event["logger"] == "rsgi_bridge"
    assert event["logentry"]["formatted"] == "Exception in RSGI app while handling GET /boom"
    assert event["request"]["url"].endswith("/boom")
    assert event["request"]["method"] == "GET"


@pytest.mark.parametrize("kind", ["uvicorn", "hypercorn"])
def test_sentry_reports_a_failure_inside_a_stream_once(kind: str, recipes: dict[str, str]) -> None:
    """After the stream started the bridge logs *and* re-raises: still one event."""
    with (
        serve(kind, "harness_sentry:app", {**recipes, **SENTRY_ENV}) as s,
        httpx.Client(base_url=s.url, timeout=20) as c,
    ):
        with pytest.raises(httpx.HTTPError), c.stream("GET", "/stream-boom") as r:
            assert r.status_code == 200
            r.read()  # the server aborts the response: no clean end of body
        recorded(c, 1, "events")
        wait_for(lambda: False, timeout=1)
        events = c.get("/_recorded").json()
    assert len(events) == 1, [e.get("logentry") for e in events]
    assert events[0]["exception"]["values"][-1]["value"] == "boom from the RSGI app"
    assert "boom_handler" in frames(events[0])


# --- asgi-correlation-id ------------------------------------------------------------------------------


def test_correlation_id_reaches_the_app_and_the_bridge_log(recipes: dict[str, str]) -> None:
    given = uuid.uuid4().hex
    with (
        serve("uvicorn", "recipe_correlation_id:app", recipes) as s,
        httpx.Client(base_url=s.url, timeout=20) as c,
    ):
        r = c.get("/seen", headers={"x-request-id": given})
        assert r.json()["headers"]["x-request-id"] == [given]  # the RSGI app sees it
        assert r.headers.get_list("x-request-id") == [given]

        made = c.get("/seen")  # none given: the middleware makes one, the app sees that one
        made_id = made.headers["x-request-id"]
        assert made.json()["headers"]["x-request-id"] == [made_id]
        assert made_id != given

        for _ in range(3):  # the middleware appends to the response's header list: once each time
            assert c.get("/stream").headers.get_list("x-request-id").__len__() == 1

        boom_id = uuid.uuid4().hex
        b = c.get("/boom", headers={"x-request-id": boom_id})
        assert b.status_code == 500 and b.headers["x-request-id"] == boom_id
        line = f"ERROR [{boom_id}] rsgi_bridge: Exception in RSGI app while handling GET /boom"
        assert wait_for(lambda: line in s.output(), timeout=5), s.output()
    assert "INFO [-] rsgi_bridge: drain finished in" in s.output()  # a lifecycle line: no request, the default
