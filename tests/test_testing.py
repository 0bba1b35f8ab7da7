"""rsgi_bridge.testing: the in-process test clients, against the example app, an Emmett55 app and
small apps that record their hooks; one Granian server checks the in-process answers match native ones."""

from __future__ import annotations

import asyncio
import importlib.metadata
import itertools
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples import hello
from rsgi_bridge import RSGIBridge, wrap
from rsgi_bridge.testing import AsyncTestClient, LifespanError, TestClient
from rsgi_bridge.testing import rsgi_client as _rsgi_client  # noqa: F401  (fixture, registered as rsgi_client)
from rsgi_bridge.testing import rsgi_client_factory as _rsgi_client_factory  # noqa: F401
from tests.apps import emmett_testing_app
from tests.servers import ROOT, Server

HELLO_SOURCE = Path(hello.__file__).read_bytes()


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


class HookApp:
    """Records its hooks and requests; ``fail_init``/``fail_del`` make a hook raise that message."""

    def __init__(self, fail_init: str | None = None, fail_del: str | None = None) -> None:
        self.events: list[str] = []
        self.fail_init = fail_init
        self.fail_del = fail_del
        self.init_loop: asyncio.AbstractEventLoop | None = None
        self.request_loops: list[asyncio.AbstractEventLoop] = []

    def __rsgi_init__(self, loop: Any) -> None:
        self.events.append("init")
        # As the RSGI spec's examples do: run a coroutine to completion from the sync hook.
        self.init_loop = loop.run_until_complete(_running_loop())
        if self.fail_init:
            raise RuntimeError(self.fail_init)

    def __rsgi_del__(self, loop: Any) -> None:
        self.events.append("del")
        if self.fail_del:
            raise RuntimeError(self.fail_del)

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        self.events.append(f"{scope.proto} {scope.path}")
        self.request_loops.append(asyncio.get_running_loop())
        if scope.proto == "ws":
            transport = await protocol.accept()
            await transport.send_str("hello")
            protocol.close(1000)
            return
        protocol.response_str(200, [("content-type", "application/json")], json.dumps(self.events))


class GatedStream:
    """Streams three parts; after each it waits (at most 3 s) until the reader acknowledged it."""

    def __init__(self) -> None:
        self.started = 0  # parts the app has begun to send
        self.acked = 0

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        transport = protocol.response_stream(200, [("content-type", "text/plain")])
        for i in range(3):
            self.started = i + 1
            await transport.send_str(f"part {i};")
            deadline = time.monotonic() + 3.0
            while self.acked < i + 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.005)


# -- the example app --------------------------------------------------------------------------


def test_hello_http() -> None:
    with TestClient(hello.app) as client:
        r = client.get("/")
        assert (r.status_code, r.text, r.headers["content-type"]) == (200, "Hello, world!", "text/plain")
        body = bytes(range(256)) * 40
        r = client.post("/echo", content=body)
        assert r.status_code == 200 and r.content == body
        r = client.get("/file")
        assert r.status_code == 200 and r.content == HELLO_SOURCE
        assert client.get("/missing").status_code == 404
        with client.stream("GET", "/stream") as r:
            assert r.status_code == 200
            assert list(r.iter_bytes()) == [f"chunk {i}\n".encode() for i in range(5)]


def test_hello_hooks_run_on_enter_and_exit(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")

    def hello_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "hello"]

    client = TestClient(hello.app)
    assert hello_lines() == []
    with client:
        # init ran loop.run_until_complete(...) and stored its result
        assert hello_lines() == ["hello: init (greeting='Hello, world!')"]
        assert hello.app.greeting == "Hello, world!"
        client.get("/")
        assert hello_lines() == ["hello: init (greeting='Hello, world!')"]
    assert hello_lines() == ["hello: init (greeting='Hello, world!')", "hello: del"]


@pytest.mark.parametrize("app", [hello.app, emmett_testing_app.app], ids=["hello", "emmett"])
def test_websocket_round_trips(app: Any) -> None:
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        for i in range(3):
            ws.send_text(f"text {i} é")
            assert ws.receive_text() == f"text {i} é"
            data = bytes([i, 0, 255]) * 1000
            ws.send_bytes(data)
            assert ws.receive_bytes() == data


# -- hooks ------------------------------------------------------------------------------------


def test_hooks_once_per_with_block_on_the_serving_loop() -> None:
    app = HookApp()
    client = TestClient(app)
    assert app.events == []
    with client:
        assert app.events == ["init"]
        assert client.get("/a").json() == ["init", "http /a"]
        with client.websocket_connect("/ws") as ws:
            assert ws.receive_text() == "hello"
            assert ws.receive() == {"type": "websocket.close", "code": 1000}
        assert client.get("/b").json() == ["init", "http /a", "ws /ws", "http /b"]
    assert app.events == ["init", "http /a", "ws /ws", "http /b", "del"]
    # the coroutine init ran through loop.run_until_complete ran on the loop that served the requests
    assert app.init_loop is not None and all(loop is app.init_loop for loop in app.request_loops)
    with client:  # a new with block starts the app afresh
        client.get("/c")
    assert app.events[5:] == ["init", "http /c", "del"]


def test_failing_init_raises_on_enter() -> None:
    app = HookApp(fail_init="database unreachable")
    entered = False
    with pytest.raises(LifespanError, match="database unreachable") as info, TestClient(app):
        entered = True
    assert not entered
    assert info.value.phase == "startup" and info.value.message == "RuntimeError: database unreachable"
    assert app.events == ["init"]  # no request, no del


def test_failing_del_raises_on_exit() -> None:
    app = HookApp(fail_del="pool already closed")
    with pytest.raises(LifespanError, match="pool already closed") as info, TestClient(app) as client:
        assert client.get("/").status_code == 200
    assert info.value.phase == "shutdown"
    assert app.events == ["init", "http /", "del"]


def test_init_over_startup_timeout_raises_on_enter() -> None:
    class Slow:
        def __rsgi_init__(self, loop: Any) -> None:
            time.sleep(1.0)

        async def __rsgi__(self, scope: Any, protocol: Any) -> None:
            protocol.response_empty(204)

    with pytest.raises(LifespanError, match=r"startup_timeout=0\.2"), TestClient(Slow(), startup_timeout=0.2):
        pytest.fail("entered despite the timeout")


def test_scope_and_app_errors_as_on_a_server(caplog: pytest.LogCaptureFixture) -> None:
    class App:
        async def __rsgi__(self, scope: Any, protocol: Any) -> None:
            if scope.path == "/boom":
                raise ValueError("kaboom")
            values = [scope.client, scope.server, scope.http_version, scope.authority, scope.headers.get("host")]
            protocol.response_str(200, [], json.dumps(values))

    with TestClient(App()) as client:
        assert client.get("/").json() == ["testclient:50000", "testserver:80", "1.1", None, "testserver"]
        r = client.get("/boom")
        assert (r.status_code, r.content) == (500, b"")
    logged = [r.exc_info[1] for r in caplog.records if r.name == "rsgi_bridge" and r.exc_info]
    assert any(isinstance(e, ValueError) and str(e) == "kaboom" for e in logged)


def test_requests_need_an_entered_client() -> None:
    app = HookApp()
    client = TestClient(app)
    with pytest.raises(RuntimeError, match="with TestClient"):
        client.get("/")
    with pytest.raises(RuntimeError, match="with TestClient"):
        client.websocket_connect("/ws")
    with client:
        pass
    with pytest.raises(RuntimeError, match="with TestClient"):
        client.get("/")
    assert app.events == ["init", "del"]


def test_wrapped_bridge_and_options() -> None:
    bridge = wrap(HookApp())
    client = TestClient(bridge)
    assert client.bridge is bridge
    with client:
        assert client.get("/").status_code == 200
    with pytest.raises(RuntimeError, match="already been started"), client:
        pass
    with pytest.raises(TypeError, match="chunk_size"):
        TestClient(bridge, chunk_size=10)
    with pytest.raises(ValueError, match="chunk_size"):
        TestClient(HookApp(), chunk_size=0)
    with TestClient(hello.app, chunk_size=100) as c:
        assert isinstance(c.bridge, RSGIBridge) and c.bridge.chunk_size == 100
        assert c.get("/file").content == HELLO_SOURCE


def test_websocket_denied_and_closed_by_the_app() -> None:
    # imported here: rsgi_bridge.testing has already imported starlette.testclient without its httpx2 warning
    from starlette.testclient import WebSocketDenialResponse
    from starlette.websockets import WebSocketDisconnect

    class App:
        async def __rsgi__(self, scope: Any, protocol: Any) -> None:
            if scope.path == "/deny":
                protocol.close(403)
                return
            transport = await protocol.accept()
            await transport.send_str(f"{scope.proto} {scope.scheme} {scope.query_string}")
            protocol.close(4001)

    with TestClient(App()) as client:
        with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect("/deny"):
            pass
        assert denied.value.status_code == 403
        with client.websocket_connect("/ws?x=1") as ws:
            assert ws.receive_text() == "ws http x=1"
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            assert closed.value.code == 4001


# -- streaming ----------------------------------------------------------------------------------


def test_stream_read_incrementally() -> None:
    app = GatedStream()
    with TestClient(app) as client, client.stream("GET", "/") as r:
        assert r.status_code == 200
        parts = []
        for chunk in r.iter_bytes():
            parts.append(chunk)
            # the app has sent this part and waits for us before it starts the next one
            assert app.started == len(parts)
            app.acked = len(parts)
    assert parts == [b"part 0;", b"part 1;", b"part 2;"]


def test_emmett_aiter_chunks_arrive_spaced() -> None:
    with TestClient(emmett_testing_app.app) as client, client.stream("GET", "/aiter") as r:
        arrivals = [(time.monotonic(), chunk) for chunk in r.iter_bytes()]
    assert [c for _, c in arrivals] == [f"tick {i}\n".encode() for i in range(emmett_testing_app.CHUNKS)]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(arrivals)]
    # the app sleeps GAP (0.1 s) between sends; a buffered body would arrive all at once
    assert all(gap >= emmett_testing_app.GAP / 2 for gap in gaps), gaps


# -- the Emmett55 app -----------------------------------------------------------------------------


def test_emmett_app() -> None:
    with TestClient(emmett_testing_app.app) as client:
        r = client.get("/")
        assert (r.status_code, r.text) == (200, "Hello from Emmett55")
        assert r.headers["content-type"].startswith("text/plain")
        r = client.get("/query", params={"a": ["1", "2"], "b": "x y"})
        assert r.json() == {"a": ["1", "2"], "b": "x y"}
        assert client.post("/echo", content=b"\x00body\xff").content == b"\x00body\xff"
        assert client.post("/form", data={"name": "Ann", "n": "3"}).json() == {"n": "3", "name": "Ann"}
        assert client.post("/form", json={"k": [1, 2]}).json() == {"k": [1, 2]}
        assert client.get("/nope").status_code == 404
        # Emmett's __rsgi_init__ sends after_loop with the loop it was given
        calls = emmett_testing_app.LoopWatch.calls
        assert client.get("/loop").json() == {"calls": calls, "has_loop": True}
    with TestClient(emmett_testing_app.app) as client:
        assert client.get("/loop").json()["calls"] == calls + 1


PARITY_REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/", {}),
    ("GET", "/query?a=1&a=2&b=x%20y&c=%C3%A9", {}),
    ("POST", "/echo", {"content": bytes(range(256))}),
    ("POST", "/form", {"data": {"x": "1", "y": "two words"}}),
    ("GET", "/aiter", {}),
    ("GET", "/nope", {}),
    ("PUT", "/echo", {"content": b"x"}),
]


@pytest.fixture(scope="module")
def granian_emmett() -> Iterator[Server]:
    with Server("granian-rsgi", "tests.apps.emmett_testing_app:app") as server:
        yield server


def test_emmett_same_answers_as_granian(granian_emmett: Server) -> None:
    with TestClient(emmett_testing_app.app) as client, httpx.Client(base_url=granian_emmett.url, timeout=10) as real:
        for method, path, kwargs in PARITY_REQUESTS:
            mine = client.request(method, path, **kwargs)
            native = real.request(method, path, **kwargs)
            assert (mine.status_code, mine.headers.get("content-type"), mine.content) == (
                native.status_code,
                native.headers.get("content-type"),
                native.content,
            ), (method, path)


# -- the async client -------------------------------------------------------------------------------


async def test_async_client_lifespan_and_requests() -> None:
    app = HookApp()
    client = AsyncTestClient(app)
    with pytest.raises(RuntimeError, match="async with AsyncTestClient"):
        await client.get("/")
    async with client:
        assert app.events == ["init"]
        r = await client.get("/x")
        assert r.json() == ["init", "http /x"]
    assert app.events == ["init", "http /x", "del"]
    # served on the test's own loop; init's run_until_complete ran there too
    assert app.init_loop is asyncio.get_running_loop()
    assert app.request_loops == [asyncio.get_running_loop()]


async def test_async_client_example_and_emmett_apps() -> None:
    async with AsyncTestClient(hello.app) as client:
        assert (await client.get("/")).text == "Hello, world!"
        assert (await client.post("/echo", content=b"abc")).content == b"abc"
        # ASGITransport hands back the whole streamed body once the app is done
        r = await client.get("/stream")
        assert r.text == "".join(f"chunk {i}\n" for i in range(5))
    async with AsyncTestClient(emmett_testing_app.app) as client:
        r = await client.get("/query", params={"q": "1"})
        assert r.json() == {"q": "1"}
        assert (await client.get("/aiter")).text == "".join(f"tick {i}\n" for i in range(5))


async def test_async_client_failing_hooks() -> None:
    app = HookApp(fail_init="no config")
    with pytest.raises(LifespanError, match="no config") as info:
        async with AsyncTestClient(app):
            pytest.fail("entered despite a failing __rsgi_init__")
    assert info.value.phase == "startup" and app.events == ["init"]
    app = HookApp(fail_del="flush failed")
    with pytest.raises(LifespanError, match="flush failed"):
        async with AsyncTestClient(app) as client:
            await client.get("/")
    assert app.events == ["init", "http /", "del"]


# -- pytest fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def rsgi_app() -> HookApp:
    return HookApp()


def test_rsgi_client_fixture(rsgi_client: TestClient, rsgi_app: HookApp) -> None:
    assert rsgi_app.events == ["init"]
    assert rsgi_client.get("/").json() == ["init", "http /"]


def test_rsgi_client_factory_fixture(rsgi_client_factory: Any) -> None:
    a, b = HookApp(), HookApp()
    ca, cb = rsgi_client_factory(a), rsgi_client_factory(b)
    assert ca.get("/a").status_code == cb.get("/b").status_code == 200
    assert (a.events, b.events) == (["init", "http /a"], ["init", "http /b"])


def test_optional_dependencies() -> None:
    """``import rsgi_bridge`` needs neither starlette nor httpx; without starlette, TestClient says what to install."""
    code = textwrap.dedent(
        """
        import asyncio, sys
        import rsgi_bridge
        assert "starlette" not in sys.modules and "httpx" not in sys.modules, sorted(sys.modules)
        sys.modules["starlette"] = None  # as if not installed
        from rsgi_bridge.testing import AsyncTestClient, TestClient
        from examples.hello import app
        try:
            TestClient(app)
        except ImportError as exc:
            print("ImportError:", exc)
        async def main():
            async with AsyncTestClient(app) as client:
                print("async:", (await client.get("/")).text)
        asyncio.run(main())
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "ImportError: rsgi_bridge.testing.TestClient is built on Starlette's TestClient" in proc.stdout
    assert "pip install 'rsgi-bridge[test]'" in proc.stdout
    assert "async: Hello, world!" in proc.stdout


def test_plugin_is_opt_in() -> None:
    groups = importlib.metadata.entry_points(group="pytest11")
    assert not [ep for ep in groups if ep.value.startswith("rsgi_bridge")]


def _docs_example(heading: str) -> str:
    """The first Python code block of the section under ``heading`` in docs/testing.md."""
    text = (ROOT / "docs" / "testing.md").read_text()
    section = text[text.index(f"\n{heading}\n") :]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def _pytest_in_user_project(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest run on ``project`` as its own root, with this checkout importable (as an installed package)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args, str(project)],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=50,
    )


def test_docs_async_client_example_in_a_user_project(tmp_path: Path) -> None:
    """The docs' AsyncTestClient example, as is, in a project whose pytest configuration does not
    set asyncio_mode: pytest-asyncio's default (strict) mode runs it, and it passes."""
    example = _docs_example("## `AsyncTestClient(app, **wrap_options)` for async tests")
    assert "from myproject import app" in example
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_async_example.py").write_text(
        example.replace("from myproject import", "from examples.hello import")
    )
    proc = _pytest_in_user_project(tmp_path, "-rA")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "mode=Mode.STRICT" in proc.stdout, proc.stdout
    assert "1 passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout


def test_plugin_in_a_user_project(tmp_path: Path) -> None:
    """The README recipe: pytest_plugins in the root conftest.py, an rsgi_app fixture, rsgi_client."""
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(
            """
            import pytest
            from examples.hello import app

            pytest_plugins = ["rsgi_bridge.testing"]

            @pytest.fixture
            def rsgi_app():
                return app
            """
        )
    )
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            def test_home(rsgi_client):
                assert rsgi_client.get("/").text == "Hello, world!"

            def test_ws(rsgi_client):
                with rsgi_client.websocket_connect("/ws") as ws:
                    ws.send_bytes(b"ping")
                    assert ws.receive_bytes() == b"ping"
            """
        )
    )
    # -p no:asyncio: pytest-asyncio's own configuration warnings (which vary by version) are not ours
    proc = _pytest_in_user_project(tmp_path, "-q", "-p", "no:asyncio", "-W", "error")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
