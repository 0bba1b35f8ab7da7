"""Test RSGI apps in-process, through the bridge.

``TestClient(app)`` is Starlette's synchronous ``TestClient`` (an ``httpx.Client``) serving
``wrap(app)``; ``AsyncTestClient(app)`` is an ``httpx.AsyncClient`` over ``httpx.ASGITransport``.
Both run ``__rsgi_init__`` when entered and ``__rsgi_del__`` when left, through the bridge's
ASGI lifespan, the code path servers use. Requests need an entered client.

Needs httpx, and starlette for ``TestClient``: ``pip install 'rsgi-bridge[test]'``.
As a pytest plugin (``pytest_plugins = ["rsgi_bridge.testing"]`` in the root ``conftest.py``)
it provides the ``rsgi_client`` and ``rsgi_client_factory`` fixtures; it is never loaded
automatically.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from .bridge import RSGIBridge, wrap
from .connection import ASGIReceive, ASGISend
from .lifecycle import NEW

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "rsgi_bridge.testing needs httpx: install the test extra (pip install 'rsgi-bridge[test]') or httpx"
    ) from exc

__all__ = ["AsyncTestClient", "LifespanError", "TestClient"]

_STARLETTE_MISSING = (
    "rsgi_bridge.testing.TestClient is built on Starlette's TestClient: install the test extra "
    "(pip install 'rsgi-bridge[test]') or starlette"
)
_starlette_error: ImportError | None = None

if TYPE_CHECKING:
    from starlette.testclient import TestClient as _StarletteTestClient
else:
    try:
        with warnings.catch_warnings():
            # Starlette >= 1.x prefers httpx2 and warns when it falls back to httpx; both work here.
            warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette\.testclient`")
            from starlette.testclient import TestClient as _StarletteTestClient
    except ImportError as exc:
        _starlette_error = exc

        class _StarletteTestClient:
            __test__ = False


class LifespanError(RuntimeError):
    """The app failed to start (``__rsgi_init__``) or to stop (``__rsgi_del__``) in a test client.

    ``phase`` is ``"startup"`` or ``"shutdown"``; ``message`` is what the bridge reported, such
    as ``"RuntimeError: database unreachable"``. The traceback is logged on ``rsgi_bridge``.
    """

    def __init__(self, phase: str, message: str) -> None:
        verb = "start" if phase == "startup" else "stop"
        super().__init__(f"the RSGI app failed to {verb} ({phase}): {message}")
        self.phase = phase
        self.message = message


def _not_entered(cls: str, statement: str) -> RuntimeError:
    return RuntimeError(
        f"{cls} sends requests only while entered: use `{statement} {cls}(app) as client:`. "
        "Entering runs __rsgi_init__ and leaving runs __rsgi_del__, and every request in between "
        "is served on one event loop, as a server does."
    )


class _TestApp:
    """The ASGI app the clients drive: the bridge, with a failed lifespan raised as ``LifespanError``."""

    def __init__(self, app: Any, wrap_options: dict[str, Any]) -> None:
        if isinstance(app, RSGIBridge):
            if wrap_options:
                names = ", ".join(wrap_options)
                raise TypeError(f"wrap options ({names}) apply to an unwrapped app, not to an RSGIBridge")
            self.bridge = app
        else:
            self.bridge = wrap(app, **wrap_options)
        self._app = app
        self._options = wrap_options
        self.running = False

    def prepare(self) -> None:
        """Before a start: a fresh bridge if this one has already run (an RSGIBridge runs once)."""
        if self.bridge.lifecycle.state == NEW:
            return
        if isinstance(self._app, RSGIBridge):
            raise RuntimeError(
                "this RSGIBridge has already been started once; pass the unwrapped app to the test "
                "client so that every `with` block gets its own bridge"
            )
        self.bridge = wrap(self._app, **self._options)

    async def __call__(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "lifespan":
            await self.bridge(scope, receive, send)
            return
        failed: list[dict[str, Any]] = []

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] in ("lifespan.startup.failed", "lifespan.shutdown.failed"):
                failed.append(message)
            await send(message)

        await self.bridge(scope, receive, watch)
        if failed:
            phase = failed[0]["type"].split(".")[1]
            raise LifespanError(phase, failed[0].get("message") or "no reason given")


class TestClient(_StarletteTestClient):
    """Synchronous in-process client for an RSGI app: Starlette's ``TestClient`` over ``wrap(app)``.

    Use it as a context manager: entering runs ``__rsgi_init__`` (a failure raises
    :class:`LifespanError`), leaving runs ``__rsgi_del__``, through the bridge's ASGI lifespan.
    Each ``with`` block starts the app afresh. ``get``/``post``/... , ``stream(...)`` (chunks
    arrive as the app sends them) and ``websocket_connect(path)`` work as in Starlette.
    ``wrap_options`` go to :func:`rsgi_bridge.wrap`; ``app`` may also be an ``RSGIBridge``
    (started once only).
    """

    __test__ = False

    def __init__(
        self,
        app: Any,
        *,
        base_url: str = "http://testserver",
        headers: dict[str, str] | None = None,
        cookies: Any = None,
        follow_redirects: bool = True,
        **wrap_options: Any,
    ) -> None:
        if _starlette_error is not None:
            raise ImportError(_STARLETTE_MISSING) from _starlette_error
        self.rsgi = _TestApp(app, wrap_options)
        super().__init__(
            cast(Any, self.rsgi),  # an ASGI 3 app; Starlette types scopes as MutableMapping
            base_url=base_url,
            headers=headers,
            cookies=cookies,
            follow_redirects=follow_redirects,
        )

    @property
    def bridge(self) -> RSGIBridge:
        """The bridge serving the app (a new one for each ``with`` block)."""
        return self.rsgi.bridge

    def __enter__(self) -> TestClient:
        self.rsgi.prepare()
        super().__enter__()
        self.rsgi.running = True
        return self

    def __exit__(self, *args: Any) -> None:
        self.rsgi.running = False
        super().__exit__(*args)

    def send(self, request: Any, **kwargs: Any) -> Any:
        """Send ``request`` (every request method and ``websocket_connect`` come through here)."""
        if not self.rsgi.running:
            raise _not_entered("TestClient", "with")
        return super().send(request, **kwargs)


class _Lifespan:
    """Drives the ASGI lifespan protocol of an app with two queues."""

    def __init__(self, app: _TestApp) -> None:
        self._app = app
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        try:
            await self._app(scope, self._to_app.get, self._from_app.put)
        finally:
            self._from_app.put_nowait(None)

    async def _step(self, phase: str) -> None:
        assert self._task is not None
        await self._to_app.put({"type": f"lifespan.{phase}"})
        message = await self._from_app.get()
        if message is not None and message["type"] == f"lifespan.{phase}.complete":
            return
        await self._task  # raises the LifespanError (or what the app raised)
        raise LifespanError(phase, "the app ended its lifespan without answering")

    async def startup(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self._step("startup")

    async def shutdown(self) -> None:
        await self._step("shutdown")
        assert self._task is not None
        await self._task


class AsyncTestClient(httpx.AsyncClient):
    """Asynchronous in-process client: an ``httpx.AsyncClient`` over ``httpx.ASGITransport(wrap(app))``.

    ``async with`` runs ``__rsgi_init__`` on enter (a failure raises :class:`LifespanError`) and
    ``__rsgi_del__`` on exit, through the bridge's ASGI lifespan, on the test's event loop
    (asyncio only). ``ASGITransport`` waits for the app to finish and hands back the whole body,
    so a streamed response arrives in one piece and an endless stream never returns; it has no
    websockets. Use :class:`TestClient` for those.
    """

    __test__ = False

    def __init__(
        self,
        app: Any,
        *,
        base_url: str = "http://testserver",
        headers: dict[str, str] | None = None,
        cookies: Any = None,
        follow_redirects: bool = True,
        **wrap_options: Any,
    ) -> None:
        self.rsgi = _TestApp(app, wrap_options)
        self._lifespan: _Lifespan | None = None
        super().__init__(
            transport=httpx.ASGITransport(app=cast(Any, self.rsgi), client=("testclient", 50000)),
            base_url=base_url,
            headers=headers,
            cookies=cookies,
            follow_redirects=follow_redirects,
        )

    @property
    def bridge(self) -> RSGIBridge:
        """The bridge serving the app."""
        return self.rsgi.bridge

    async def __aenter__(self) -> AsyncTestClient:
        self.rsgi.prepare()
        lifespan = _Lifespan(self.rsgi)
        await lifespan.startup()
        try:
            await super().__aenter__()
        except BaseException:
            await lifespan.shutdown()
            raise
        self._lifespan = lifespan
        self.rsgi.running = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.rsgi.running = False
        lifespan, self._lifespan = self._lifespan, None
        try:
            await super().__aexit__(exc_type, exc_value, traceback)
        finally:
            if lifespan is not None:
                await lifespan.shutdown()

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        """Send ``request`` (every request method comes through here)."""
        if not self.rsgi.running:
            raise _not_entered("AsyncTestClient", "async with")
        return await super().send(request, **kwargs)


# -- pytest fixtures (pytest_plugins = ["rsgi_bridge.testing"], or import them) -------------


def _rsgi_client(rsgi_app: Any) -> Iterator[TestClient]:
    """An entered :class:`TestClient` for the ``rsgi_app`` fixture you define."""
    with TestClient(rsgi_app) as client:
        yield client


def _rsgi_client_factory() -> Iterator[Callable[..., TestClient]]:
    """``make(app, **options)``: an entered :class:`TestClient`, left at teardown."""
    with contextlib.ExitStack() as stack:

        def make(app: Any, **options: Any) -> TestClient:
            return stack.enter_context(TestClient(app, **options))

        yield make


try:
    import pytest as _pytest
except ImportError:  # pragma: no cover - the clients work without pytest
    pass
else:
    rsgi_client = _pytest.fixture(name="rsgi_client")(_rsgi_client)
    rsgi_client_factory = _pytest.fixture(name="rsgi_client_factory")(_rsgi_client_factory)
