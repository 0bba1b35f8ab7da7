"""RSGI hooks on ASGI lifespan: loop handling, in-flight drain, exactly-once del."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import inspect
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from .connection import ASGIReceive, ASGISend, logger

__all__ = ["HookLoop", "Lifecycle"]

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

    def run_until_complete(self, future: Awaitable[Any]) -> Any:
        """Run ``future`` on the serving loop and return its result."""
        loop = object.__getattribute__(self, "_loop")
        if threading.get_ident() != object.__getattribute__(self, "_hook_thread"):
            return loop.run_until_complete(future)
        coro = future if inspect.iscoroutine(future) else _await(future)
        return asyncio.run_coroutine_threadsafe(coro, loop).result()


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
    hook: Callable[[Any], Any], loop: asyncio.AbstractEventLoop, timeout: float | None, name: str
) -> None:
    """Call a sync or async RSGI hook on the running ``loop``, bounded by ``timeout``."""
    if inspect.iscoroutinefunction(hook):
        await asyncio.wait_for(hook(loop), timeout)
        return
    hook_loop = HookLoop(loop)
    result: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def run() -> None:
        object.__setattr__(hook_loop, "_hook_thread", threading.get_ident())
        asyncio.set_event_loop(hook_loop)
        try:
            result.set_result(hook(hook_loop))
        except BaseException as exc:
            result.set_exception(exc)
        finally:
            object.__setattr__(hook_loop, "_hook_thread", None)
            asyncio.set_event_loop(None)

    threading.Thread(target=run, name=f"rsgi-bridge-{name}", daemon=True).start()
    value = await asyncio.wait_for(asyncio.wrap_future(result), timeout)
    if inspect.isawaitable(value):
        await asyncio.wait_for(_await(value), timeout)


def call_hook_stopped(hook: Callable[[Any], Any], loop: asyncio.AbstractEventLoop) -> None:
    """Call a hook the RSGI way, with a loop that is not running (used at process exit)."""
    value = hook(loop)
    if inspect.isawaitable(value):
        loop.run_until_complete(_await(value))


class Lifecycle:
    """Runs ``__rsgi_init__``/``__rsgi_del__`` once and tracks in-flight work."""

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
        self.tasks: set[asyncio.Task[Any]] = set()
        self.inflight = 0
        self._idle: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sentinel: asyncio.Task[None] | None = None
        self._inner: _InnerLifespan | None = None

    # -- in-flight accounting (hot path) --------------------------------------

    def enter(self, task: asyncio.Task[Any] | None) -> None:
        self.inflight += 1
        if task is not None:
            self.tasks.add(task)

    def leave(self, task: asyncio.Task[Any] | None) -> None:
        self.inflight -= 1
        if task is not None:
            self.tasks.discard(task)
        if self.inflight == 0 and self._idle is not None:
            self._idle.set()

    # -- startup ---------------------------------------------------------------

    async def startup(self) -> None:
        """Run init (once); raise with the reason when it fails."""
        if self.state in (RUNNING, STOPPING, STOPPED):
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.state != NEW:
                return
            self.state = STARTING
            loop = self._loop = asyncio.get_running_loop()
            try:
                if self.init_hook is not None:
                    logger.info("__rsgi_init__ starting")
                    t0 = time.perf_counter()
                    try:
                        await call_hook(self.init_hook, loop, self.startup_timeout, "init")
                    except (asyncio.TimeoutError, TimeoutError):
                        raise TimeoutError(
                            f"__rsgi_init__ did not finish within startup_timeout={self.startup_timeout}s"
                        ) from None
                    logger.info("__rsgi_init__ done in %.3fs", time.perf_counter() - t0)
            except BaseException:
                self.state = NEW  # a later attempt may succeed
                raise
            self.state = RUNNING
            _EXIT.register(self)
            if self.inner_lifespan is not None:
                self._inner = _InnerLifespan(self.inner_lifespan)
                try:
                    await self._inner.startup()
                except BaseException:
                    await self.shutdown()
                    raise

    def watch_loop_end(self) -> None:
        """Without ASGI lifespan: run del when the serving loop cancels its tasks at exit."""
        if self._sentinel is None and self.state == RUNNING:
            self._sentinel = asyncio.get_running_loop().create_task(self._sentinel_wait())

    async def _sentinel_wait(self) -> None:
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            logger.info("serving loop is ending without a lifespan shutdown")
            try:
                await self.shutdown()
            except Exception:
                logger.exception("__rsgi_del__ failed")

    # -- shutdown --------------------------------------------------------------

    async def drain(self) -> None:
        """Wait for in-flight requests, up to ``drain_timeout``; then cancel the rest."""
        if self.inflight == 0:
            logger.info("drain: no request in flight")
            return
        logger.info("drain: waiting for %d in-flight request(s)", self.inflight)
        t0 = time.perf_counter()
        self._idle = idle = asyncio.Event()
        try:
            await asyncio.wait_for(idle.wait(), self.drain_timeout)
            logger.info("drain: done in %.3fs", time.perf_counter() - t0)
            return
        except (asyncio.TimeoutError, TimeoutError):
            pass
        left = [t for t in self.tasks if not t.done()]
        logger.warning(
            "drain: %d request(s) still running after drain_timeout=%ss: cancelling them (abandoned)",
            self.inflight,
            self.drain_timeout,
        )
        for t in left:
            t.cancel()
        if left:
            await asyncio.wait(left, timeout=5)

    async def shutdown(self) -> None:
        """Drain, then run del exactly once if init succeeded; raise if del failed."""
        if self.state != RUNNING:
            return
        self.state = STOPPING
        sentinel = self._sentinel
        if sentinel is not None and sentinel is not asyncio.current_task():
            sentinel.cancel()
        _EXIT.unregister(self)
        try:
            await self.drain()
            if self._inner is not None:
                await self._inner.shutdown()
        finally:
            self.state = STOPPED
            await self._run_del()

    async def _run_del(self) -> None:
        if self.del_hook is None:
            return
        loop = asyncio.get_running_loop()
        logger.info("__rsgi_del__ starting")
        t0 = time.perf_counter()
        try:
            await call_hook(self.del_hook, loop, self.shutdown_timeout, "del")
        except (asyncio.TimeoutError, TimeoutError):
            raise TimeoutError(
                f"__rsgi_del__ did not finish within shutdown_timeout={self.shutdown_timeout}s"
            ) from None
        logger.info("__rsgi_del__ done in %.3fs", time.perf_counter() - t0)

    def shutdown_at_exit(self) -> None:
        """Process exit without lifespan shutdown: drain what can run, then del."""
        if self.state != RUNNING:
            return
        self.state = STOPPED
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = asyncio.new_event_loop()
        elif loop.is_running():  # another thread still runs it: nothing safe to do
            logger.error("__rsgi_del__ skipped at exit: the serving loop is still running")
            return
        logger.info("process exiting: running __rsgi_del__")
        try:
            if self.inflight:
                loop.run_until_complete(self.drain())
            if self.del_hook is not None:
                call_hook_stopped(self.del_hook, loop)
                logger.info("__rsgi_del__ done")
        except Exception:
            logger.exception("__rsgi_del__ failed at exit")

    # -- ASGI lifespan -------------------------------------------------------------

    async def serve(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        """Answer the ASGI lifespan protocol."""
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "lifespan.startup":
                try:
                    await self.startup()
                except BaseException as exc:
                    logger.error("startup failed: %s", _describe(exc), exc_info=exc)
                    await send({"type": "lifespan.startup.failed", "message": _describe(exc)})
                    if not isinstance(exc, Exception):
                        raise
                    return
                await send({"type": "lifespan.startup.complete"})
            elif kind == "lifespan.shutdown":
                try:
                    await self.shutdown()
                except Exception as exc:
                    logger.error("shutdown failed: %s", _describe(exc), exc_info=exc)
                    await send({"type": "lifespan.shutdown.failed", "message": _describe(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _InnerLifespan:
    """Drive the lifespan of a wrapped ASGI app from inside ours."""

    def __init__(self, app: Callable[[dict[str, Any], ASGIReceive, ASGISend], Awaitable[None]]) -> None:
        self._app = app
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._supported = True

    async def _run(self) -> None:
        try:
            await self._app(
                {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}},
                self._to_app.get,
                self._from_app.put,
            )
        except Exception as exc:
            if self._supported:
                logger.info("wrapped ASGI app does not support lifespan (%s)", _describe(exc))
            self._supported = False
        finally:
            await self._from_app.put({"type": "_ended"})

    async def _step(self, message: str) -> None:
        if not self._supported:
            return
        await self._to_app.put({"type": message})
        reply = await self._from_app.get()
        if reply["type"].endswith(".failed"):
            raise RuntimeError(reply.get("message") or f"wrapped ASGI app: {reply['type']}")

    async def startup(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self._step("lifespan.startup")

    async def shutdown(self) -> None:
        await self._step("lifespan.shutdown")
        if self._task is not None:
            await asyncio.wait([self._task], timeout=5)


class _ExitRegistry:
    """Lifecycles still running, finished at interpreter exit."""

    def __init__(self) -> None:
        self._live: weakref.WeakSet[Lifecycle] = weakref.WeakSet()
        self._hooked = False

    def register(self, lc: Lifecycle) -> None:
        self._live.add(lc)
        if not self._hooked:
            self._hooked = True
            atexit.register(self.run)

    def unregister(self, lc: Lifecycle) -> None:
        self._live.discard(lc)

    def run(self) -> None:
        for lc in list(self._live):
            lc.shutdown_at_exit()


_EXIT = _ExitRegistry()
