"""RSGI hooks on ASGI lifespan: loop handling, in-flight drain, exactly-once del."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import inspect
import signal
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

from .connection import ASGIReceive, ASGISend, logger

__all__ = ["HookLoop", "Lifecycle"]

_T = TypeVar("_T")

# States of a Lifecycle.
NEW, STARTING, RUNNING, STOPPING, STOPPED = "new", "starting", "running", "stopping", "stopped"

_THREAD_SAFE = frozenset({"call_soon_threadsafe", "is_closed", "get_debug", "time", "run_until_complete", "is_running"})


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class HookLoop(asyncio.AbstractEventLoop):
    """The loop handed to ``__rsgi_init__``/``__rsgi_del__`` under ASGI.

    The hooks run in a helper thread while the serving loop stays free, so
    ``run_until_complete(coro)`` runs ``coro`` on the serving loop and returns
    its result, as the RSGI spec's examples expect. Any other loop method called
    from the hook thread is carried out on the serving loop; once the hook has
    returned, a stored ``HookLoop`` behaves as the serving loop itself.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        object.__setattr__(self, "_loop", loop)
        object.__setattr__(self, "_hook_thread", None)

    def __getattribute__(self, name: str) -> Any:
        if name in ("_loop", "_hook_thread", "run_until_complete", "is_running", "__class__", "__dict__"):
            return object.__getattribute__(self, name)
        if name.startswith("__") and name not in ("__repr__",):
            return object.__getattribute__(self, name)
        loop = object.__getattribute__(self, "_loop")
        attr = getattr(loop, name)
        if (
            name not in _THREAD_SAFE
            and callable(attr)
            and threading.get_ident() == object.__getattribute__(self, "_hook_thread")
        ):
            return _on_loop(loop, attr)
        return attr

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_loop"), name, value)

    def __repr__(self) -> str:
        return f"<HookLoop of {object.__getattribute__(self, '_loop')!r}>"

    def is_running(self) -> bool:
        """False inside the hook (the RSGI view); the serving loop's answer afterwards."""
        if threading.get_ident() == object.__getattribute__(self, "_hook_thread"):
            return False
        return object.__getattribute__(self, "_loop").is_running()  # type: ignore[no-any-return]

    def run_until_complete(self, future: Generator[Any, None, _T] | Awaitable[_T]) -> _T:
        """Run ``future`` on the serving loop and return its result."""
        loop = object.__getattribute__(self, "_loop")
        if threading.get_ident() != object.__getattribute__(self, "_hook_thread"):
            return loop.run_until_complete(future)  # type: ignore[no-any-return]
        coro = future if inspect.iscoroutine(future) else _await(future)  # type: ignore[arg-type]
        return asyncio.run_coroutine_threadsafe(coro, loop).result()  # type: ignore[no-any-return]


def _on_loop(loop: asyncio.AbstractEventLoop, method: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(method(*args, **kwargs))
            except BaseException as exc:  # handed back to the hook thread
                done.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return done.result()

    return call


async def call_hook(
    hook: Callable[[Any], Any],
    loop: asyncio.AbstractEventLoop,
    timeout: float | None,
    name: str,
    threads: list[threading.Thread] | None = None,
) -> None:
    """Call a sync or async RSGI hook on the running ``loop``, bounded by ``timeout``.

    A sync hook runs in a helper thread (appended to ``threads``) with a
    :class:`HookLoop`; an ``async def`` hook is awaited with the loop itself.
    """
    if inspect.iscoroutinefunction(hook):
        await asyncio.wait_for(hook(loop), timeout)
        return
    hook_loop = HookLoop(loop)  # type: ignore[abstract]  # every method is forwarded to ``loop``
    result: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def run() -> None:
        object.__setattr__(hook_loop, "_hook_thread", threading.get_ident())
        asyncio.set_event_loop(hook_loop)
        try:
            try:
                value = hook(hook_loop)
            except BaseException as exc:
                result.set_exception(exc)
            else:
                result.set_result(value)
        except concurrent.futures.InvalidStateError:  # cancelled: the hook outlived its timeout
            logger.warning("__rsgi_%s__ ended after its timeout had expired; its outcome is ignored", name)
        finally:
            object.__setattr__(hook_loop, "_hook_thread", None)
            asyncio.set_event_loop(None)

    thread = threading.Thread(target=run, name=f"rsgi-bridge-{name}", daemon=True)
    if threads is not None:
        threads.append(thread)
    t0 = loop.time()
    thread.start()
    value = await asyncio.wait_for(asyncio.wrap_future(result), timeout)
    if inspect.isawaitable(value):
        left = None if timeout is None else max(timeout - (loop.time() - t0), 0.001)
        await asyncio.wait_for(_await(value), left)


def call_hook_stopped(hook: Callable[[Any], Any], loop: asyncio.AbstractEventLoop) -> None:
    """Call a hook the RSGI way, with a loop that is not running (used at process exit)."""
    value = hook(loop)
    if inspect.isawaitable(value):
        loop.run_until_complete(_await(value))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _what(scope: dict[str, Any] | None) -> str:
    if scope is None:
        return "request"
    if scope.get("type") == "websocket":
        return f"websocket {scope.get('path', '')}"
    return f"{scope.get('method', '')} {scope.get('path', '')}"


class Untracked:
    """The in-flight key of a request run outside any task, or inside another request's task
    (cancelling that task ends both); it cannot be cancelled itself."""

    __slots__ = ()

    def done(self) -> bool:
        return False

    def cancel(self) -> bool:
        return False


class Lifecycle:
    """Runs ``__rsgi_init__``/``__rsgi_del__`` once and tracks in-flight work.

    States: ``new`` → ``starting`` → ``running`` → ``stopping`` → ``stopped``; a
    failed init goes back to ``new``. Shutdown, from whichever path triggers it
    (ASGI lifespan, a signal without lifespan, the end of the serving loop,
    interpreter exit), drains in-flight work and runs del once.
    """

    def __init__(
        self,
        target: Any,
        *,
        startup_timeout: float | None,
        shutdown_timeout: float | None,
        drain_timeout: float | None,
        inner_lifespan: Callable[[dict[str, Any], ASGIReceive, ASGISend], Awaitable[None]] | None = None,
    ) -> None:
        self.init_hook: Callable[[Any], Any] | None = getattr(target, "__rsgi_init__", None)
        self.del_hook: Callable[[Any], Any] | None = getattr(target, "__rsgi_del__", None)
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self.drain_timeout = drain_timeout
        self.inner_lifespan = inner_lifespan
        self.state = NEW
        self.tasks: dict[Any, dict[str, Any] | None] = {}  # task (or Untracked) -> its ASGI scope
        # Open RSGI websocket sessions (filled by the websocket path), closed with 1012 on drain.
        self.websockets: set[Any] = set()
        self.lazy = False  # started by a request, not by ASGI lifespan
        self.lifespan_seen = False
        self.idle: asyncio.Event | None = None  # set when the last in-flight request ends (during drain)
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sentinel: asyncio.Task[None] | None = None
        self._stopper: asyncio.Task[None] | None = None
        self._inner: _InnerLifespan | None = None
        self._init_threads: list[threading.Thread] = []

    # -- in-flight accounting ----------------------------------------------------
    # RSGIBridge.__call__ adds each request's task to ``tasks`` and removes it when the request ends
    # (inline there: it is the hot path), then sets ``idle`` once none is left.

    @property
    def inflight(self) -> int:
        """Requests and websocket sessions in flight."""
        return len(self.tasks)

    # -- startup ---------------------------------------------------------------

    async def startup(self) -> None:
        """Run init (once per process); raise with the reason when it fails."""
        if self.state == RUNNING:
            return
        if self.state in (STOPPING, STOPPED):
            raise RuntimeError("the app was already shut down: __rsgi_init__ runs at most once per process")
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.state != NEW:
                if self.state == RUNNING:
                    return
                raise RuntimeError("the app was already shut down: __rsgi_init__ runs at most once per process")
            self.state = STARTING
            loop = self._loop = asyncio.get_running_loop()
            try:
                await self._run_init(loop)
            except BaseException:
                self.state = NEW  # a later attempt may succeed
                raise
            self.state = RUNNING
            _PROCESS.register(self)
            if self.inner_lifespan is not None:
                self._inner = _InnerLifespan(self.inner_lifespan)
                try:
                    await self._inner.startup()
                except BaseException as exc:
                    logger.error("wrapped ASGI app's lifespan startup failed: %s", _describe(exc))
                    with contextlib.suppress(Exception):
                        await self.shutdown()
                    raise

    async def _run_init(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.init_hook is None:
            return
        if any(t.is_alive() for t in self._init_threads):
            raise RuntimeError("__rsgi_init__ from an earlier attempt that timed out is still running")
        self._init_threads.clear()
        logger.info("__rsgi_init__ starting")
        t0 = time.perf_counter()
        try:
            await call_hook(self.init_hook, loop, self.startup_timeout, "init", self._init_threads)
        except (asyncio.TimeoutError, TimeoutError):
            logger.error("__rsgi_init__ timed out after %.3fs", time.perf_counter() - t0)
            raise TimeoutError(f"__rsgi_init__ did not finish within startup_timeout={self.startup_timeout}s") from None
        except BaseException as exc:
            logger.error("__rsgi_init__ failed after %.3fs: %s", time.perf_counter() - t0, _describe(exc), exc_info=exc)
            raise
        logger.info("__rsgi_init__ done in %.3fs", time.perf_counter() - t0)

    def started_without_lifespan(self) -> None:
        """Init ran for a request: run del on a stop signal, at the loop's end, or at exit."""
        if self.lifespan_seen or self.state != RUNNING:
            return
        self.lazy = True
        _PROCESS.trap_signals()
        if self._sentinel is None and self.state == RUNNING:
            self._sentinel = asyncio.get_running_loop().create_task(self._sentinel_wait())

    async def _sentinel_wait(self) -> None:
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            self._sentinel = None
            if self.state == RUNNING:
                logger.info("serving loop is ending without a lifespan shutdown")
            with contextlib.suppress(Exception):
                await self.shutdown()

    # -- shutdown --------------------------------------------------------------

    async def drain(self) -> None:
        """Wait for in-flight requests, up to ``drain_timeout``; then cancel the rest."""
        count = self.inflight
        logger.info("drain started: %d request(s) in flight", count)
        t0 = time.perf_counter()
        if count == 0:
            logger.info("drain finished in 0.000s: 0 ended, 0 abandoned")
            return
        self.idle = idle = asyncio.Event()
        if self.websockets:
            # Long-lived sessions would hold the drain to its timeout: close them as uvicorn does.
            from .websocket import close_websockets

            logger.info("drain: closing %d open websocket(s) with 1012", close_websockets(self.websockets))
        try:
            await asyncio.wait_for(idle.wait(), self.drain_timeout)
            logger.info("drain finished in %.3fs: %d ended, 0 abandoned", time.perf_counter() - t0, count)
            return
        except (asyncio.TimeoutError, TimeoutError):
            pass
        left = {t: s for t, s in self.tasks.items() if not t.done()}
        logger.warning(
            "drain_timeout=%ss expired with %d request(s) in flight; cancelling them as abandoned: %s",
            self.drain_timeout,
            self.inflight,
            ", ".join(_what(s) for s in left.values()) or "(untracked)",
        )
        for t in left:
            t.cancel()
        stuck: set[Any] = set()
        waitable = [t for t in left if isinstance(t, asyncio.Future)]
        if waitable:
            _, stuck = await asyncio.wait(waitable, timeout=_CANCEL_GRACE)
        logger.warning(
            "drain finished in %.3fs: %d ended, %d abandoned%s",
            time.perf_counter() - t0,
            max(count - len(left), 0),
            len(left),
            f" ({len(stuck)} ignored cancellation)" if stuck else "",
        )

    async def shutdown(self) -> None:
        """Drain, then run del exactly once if init succeeded; raise if del failed.

        Every caller waits for the same shutdown; it runs in a task of its own so
        that a caller being cancelled does not interrupt del.
        """
        if self.state in (NEW, STARTING):
            return
        if self._stopper is None:
            if self.state != RUNNING:  # stopped at exit, outside the loop
                return
            self.state = STOPPING
            self._stopper = asyncio.get_running_loop().create_task(self._shutdown())
        await asyncio.shield(self._stopper)

    async def _shutdown(self) -> None:
        sentinel, self._sentinel = self._sentinel, None
        if sentinel is not None:  # no longer needed: let it end
            sentinel.cancel()
        try:
            await self.drain()
            if self._inner is not None:
                try:
                    await self._inner.shutdown()
                except Exception as exc:
                    logger.error("wrapped ASGI app's lifespan shutdown failed: %s", _describe(exc))
        finally:
            self.state = STOPPED
            try:
                await self._run_del()
            finally:
                _PROCESS.unregister(self)

    async def _run_del(self) -> None:
        if self.del_hook is None:
            return
        loop = asyncio.get_running_loop()
        logger.info("__rsgi_del__ starting")
        t0 = time.perf_counter()
        try:
            await call_hook(self.del_hook, loop, self.shutdown_timeout, "del")
        except (asyncio.TimeoutError, TimeoutError):
            logger.error("__rsgi_del__ timed out after %.3fs", time.perf_counter() - t0)
            raise TimeoutError(
                f"__rsgi_del__ did not finish within shutdown_timeout={self.shutdown_timeout}s"
            ) from None
        except BaseException as exc:
            logger.error("__rsgi_del__ failed after %.3fs: %s", time.perf_counter() - t0, _describe(exc), exc_info=exc)
            raise
        logger.info("__rsgi_del__ done in %.3fs", time.perf_counter() - t0)

    def shutdown_at_exit(self) -> None:
        """Process exit without lifespan shutdown: drain what can still run, then del."""
        stopper = self._stopper
        if stopper is not None and not stopper.done():  # a shutdown the loop's end interrupted
            stopper_loop = stopper.get_loop()
            if not stopper_loop.is_closed() and not stopper_loop.is_running():
                logger.info("process exiting: finishing the interrupted shutdown")
                with contextlib.suppress(BaseException):
                    stopper_loop.run_until_complete(asyncio.wait([stopper]))
            return
        if self.state != RUNNING:
            return
        loop = self._loop
        if loop is not None and not loop.is_closed() and loop.is_running():
            logger.error("__rsgi_del__ skipped at exit: the serving loop is still running in another thread")
            return
        logger.info("process exiting without a lifespan shutdown: running __rsgi_del__")
        if loop is not None and not loop.is_closed():
            # The serving loop still exists: the usual shutdown, run on it.
            with contextlib.suppress(Exception):
                loop.run_until_complete(self._shutdown_at_exit())
            return
        self.state = STOPPED
        _PROCESS.unregister(self)
        if self.inflight:
            logger.warning("%d request(s) abandoned: the serving loop is already closed", self.inflight)
        if self.del_hook is None:
            return
        logger.info("__rsgi_del__ starting")
        t0 = time.perf_counter()
        try:
            call_hook_stopped(self.del_hook, asyncio.new_event_loop())
        except Exception as exc:
            logger.error("__rsgi_del__ failed after %.3fs: %s", time.perf_counter() - t0, _describe(exc), exc_info=exc)
            return
        logger.info("__rsgi_del__ done in %.3fs", time.perf_counter() - t0)

    async def _shutdown_at_exit(self) -> None:
        sentinel = self._sentinel
        try:
            await self.shutdown()
        finally:
            if sentinel is not None:
                await asyncio.wait([sentinel], timeout=_CANCEL_GRACE)

    # -- ASGI lifespan -------------------------------------------------------------

    async def serve(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        """Answer the ASGI lifespan protocol."""
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "lifespan.startup":
                self.lifespan_seen = True
                try:
                    await self.startup()
                except BaseException as exc:
                    await send({"type": "lifespan.startup.failed", "message": _describe(exc)})
                    if not isinstance(exc, Exception):
                        raise
                    return
                await send({"type": "lifespan.startup.complete"})
            elif kind == "lifespan.shutdown":
                try:
                    await self.shutdown()
                except Exception as exc:
                    await send({"type": "lifespan.shutdown.failed", "message": _describe(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return


_CANCEL_GRACE = 5.0  # seconds cancelled requests get to unwind


class _InnerLifespan:
    """Drive the lifespan of a wrapped ASGI app from inside ours."""

    def __init__(self, app: Callable[[dict[str, Any], ASGIReceive, ASGISend], Awaitable[None]]) -> None:
        self._app = app
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._active = True

    async def _run(self) -> None:
        try:
            await self._app(
                {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}},
                self._to_app.get,
                self._from_app.put,
            )
        except Exception as exc:
            if self._active:
                logger.info("wrapped ASGI app does not support lifespan (%s)", _describe(exc))
        finally:
            self._active = False
            await self._from_app.put({"type": "_ended"})

    async def _step(self, message: str) -> None:
        if not self._active:
            return
        await self._to_app.put({"type": message})
        reply = await self._from_app.get()
        if reply["type"].endswith(".failed"):
            self._active = False
            raise RuntimeError(reply.get("message") or f"wrapped ASGI app: {reply['type']}")

    async def startup(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self._step("lifespan.startup")

    async def shutdown(self) -> None:
        await self._step("lifespan.shutdown")
        if self._task is not None:
            await asyncio.wait([self._task], timeout=_CANCEL_GRACE)


def _pass_on(handler: Any, signum: int, frame: Any) -> None:
    """Hand a signal to the handler that was installed before ours."""
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


class _Process:
    """Process-wide: lifecycles still running, finished on a stop signal or at interpreter exit."""

    def __init__(self) -> None:
        self._live: weakref.WeakSet[Lifecycle] = weakref.WeakSet()
        self._atexit = False
        self._prev: dict[int, Any] = {}
        self._stopping = False  # a signal-driven drain is in progress
        self._stop_task: asyncio.Task[None] | None = None

    def register(self, lc: Lifecycle) -> None:
        self._live.add(lc)
        if not self._atexit:
            self._atexit = True
            atexit.register(self.run_at_exit)

    def unregister(self, lc: Lifecycle) -> None:
        self._live.discard(lc)

    def run_at_exit(self) -> None:
        for lc in list(self._live):
            lc.shutdown_at_exit()

    # -- SIGTERM/SIGINT without lifespan ------------------------------------------

    def trap_signals(self) -> None:
        """Put ``_on_signal`` in front of the server's SIGTERM/SIGINT handlers (main thread only).

        Left alone: signals handled by native code or through
        ``loop.add_signal_handler`` (no Python handler to chain), and ignored ones.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            current = signal.getsignal(sig)
            if current is None or current == signal.SIG_IGN or current == self._on_signal:
                continue
            if getattr(current, "__name__", "") == "_sighandler_noop":
                continue
            self._prev[sig] = current
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        prev = self._prev.get(signum, signal.SIG_DFL)
        targets = [
            lc
            for lc in self._live
            if lc.lazy and lc.state == RUNNING and lc._loop is not None and lc._loop.is_running()
        ]
        if self._stopping or not targets:
            _pass_on(prev, signum, frame)
            return
        self._stopping = True
        loop = targets[0]._loop
        assert loop is not None
        targets = [lc for lc in targets if lc._loop is loop]
        loop.call_soon_threadsafe(self._start_stop, loop, targets, prev, signum)

    def _start_stop(self, loop: asyncio.AbstractEventLoop, targets: list[Lifecycle], prev: Any, signum: int) -> None:
        self._stop_task = loop.create_task(self._stop_then_pass_on(loop, targets, prev, signum))

    async def _stop_then_pass_on(
        self, loop: asyncio.AbstractEventLoop, targets: list[Lifecycle], prev: Any, signum: int
    ) -> None:
        logger.info(
            "%s without an ASGI lifespan: draining and running __rsgi_del__ before the server stops",
            signal.Signals(signum).name,
        )
        waits = [lc.shutdown() for lc in targets]
        try:
            await asyncio.gather(*waits, return_exceptions=True)
        finally:
            self._stopping = False
            loop.call_soon(_pass_on, prev, signum, None)


_PROCESS = _Process()
