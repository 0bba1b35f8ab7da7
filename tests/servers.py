"""Start real ASGI/RSGI servers as subprocesses on 127.0.0.1 and stop them reliably."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def _port_range() -> range:
    """Where test servers listen: ``RSGI_TEST_PORTS`` ("low-high"), else 10000-32767.

    Below Linux's ephemeral range (32768 and up), so that no client connection's own port is ever
    the one a server is about to bind; CI gives each Python's session a range of its own, so that
    sessions running at once never pick the same port (a server found listening is then ours).
    """
    low, _, high = os.environ.get("RSGI_TEST_PORTS", "10000-32767").partition("-")
    return range(int(low), int(high) + 1)


_PORTS = _port_range()


def free_port() -> int:
    """A port of this session's range that nothing is bound to now."""
    for _ in range(1000):
        port = random.choice(_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use, or in TIME_WAIT from an earlier server
            return port
    raise RuntimeError(f"no free port in {_PORTS}")


def server_argv(kind: str, app: str, port: int, extra: Sequence[str] = ()) -> list[str]:
    """The command line that serves ``app`` (an import string) with server ``kind``."""
    host = "127.0.0.1"
    if kind == "uvicorn":
        return [PY, "-m", "uvicorn", app, "--host", host, "--port", str(port), "--no-access-log", *extra]
    if kind == "hypercorn":
        return [PY, "-m", "hypercorn", app, "--bind", f"{host}:{port}", *extra]
    if kind == "daphne":
        return [PY, "-m", "daphne", "-b", host, "-p", str(port), *extra, app]
    if kind == "gunicorn":
        return [
            PY, "-m", "gunicorn", app, "-k", "uvicorn_worker.UvicornWorker",
            "-b", f"{host}:{port}", "--graceful-timeout", "30", *extra,
        ]  # fmt: skip
    if kind == "granian-rsgi":
        return [PY, "-m", "granian", "--interface", "rsgi", "--host", host, "--port", str(port), *extra, app]
    if kind == "granian-asgi":
        return [PY, "-m", "granian", "--interface", "asgi", "--host", host, "--port", str(port), *extra, app]
    if kind == "rsgi-bridge":
        return [PY, "-m", "rsgi_bridge", app, "--host", host, "--port", str(port), "--no-access-log", *extra]
    raise ValueError(kind)


class Server:
    """A server subprocess. Use as a context manager: started, port awaited, always stopped."""

    def __init__(
        self,
        kind: str,
        app: str,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
        port: int | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.kind = kind
        self.app = app
        self.port = port or free_port()
        self.argv = server_argv(kind, app, self.port, extra)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix=f"rsgi-bridge-{kind}-", suffix=".log", delete=False)  # noqa: SIM115
        self.returncode: int | None = None
        self._final: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> Server:
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        if wait:
            self.wait_port()
        return self

    def wait_port(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode} before listening:\n{self.output()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.kind} did not listen on {self.port} within {self.start_timeout}s:\n{self.output()}")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        self.returncode = self.proc.wait(timeout)
        return self.returncode

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then kill the whole process group."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # leftover workers of the group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self.returncode = proc.returncode
        return self.returncode

    def output(self) -> str:
        """Everything the server printed so far (still readable after the server stopped)."""
        if self._final is not None:
            return self._final
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._final = self.output()
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)


class ServerPool:
    """Servers started on first use and kept for a test module (``module_pool`` fixture), all stopped at its end."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._servers: dict[tuple[str, str, tuple[str, ...], str], Server] = {}

    def get(self, kind: str, app: str, args: Sequence[str] = (), tag: str = "") -> Server:
        """The server ``kind`` serving ``app`` with ``args`` (``tag`` tells apart otherwise equal ones)."""
        key = (kind, app, tuple(args), tag)
        if key not in self._servers:
            self._servers[key] = self._stack.enter_context(Server(kind, app, list(args)))
        return self._servers[key]

    def close(self) -> None:
        self._stack.close()


@contextlib.contextmanager
def module_pool() -> Iterator[ServerPool]:
    """A :class:`ServerPool`, closed on exit (for a module-scoped fixture)."""
    pool = ServerPool()
    try:
        yield pool
    finally:
        pool.close()


@contextlib.contextmanager
def serve(kind: str, app: str, extra: Sequence[str] = (), env: dict[str, str] | None = None) -> Iterator[Server]:
    with Server(kind, app, extra, env) as server:
        yield server


@contextlib.contextmanager
def fast_and_generic(app: str, args: Sequence[str]) -> Iterator[tuple[Server, Server]]:
    """Two uvicorn servers of ``app`` with ``args``: the bridge's accelerators on in one, off in the other."""
    with (
        Server("uvicorn", app, args, env={"RSGI_BRIDGE_ACCELERATE": "1"}) as fast,
        Server("uvicorn", app, args, env={"RSGI_BRIDGE_ACCELERATE": "0"}) as generic,
    ):
        yield fast, generic


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A key and a self-signed certificate for 127.0.0.1 in ``directory`` (made by the openssl command)."""
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return key, cert


def wait_for(predicate: object, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll ``predicate()`` until true or ``timeout``; return the last result."""
    deadline = time.monotonic() + timeout
    while True:
        ok = bool(predicate())  # type: ignore[operator]
        if ok or time.monotonic() >= deadline:
            return ok
        time.sleep(interval)


def get_during_sigterm(server: Server, url: str, started: Callable[[], bool]) -> Any:
    """GET ``url`` in a thread; once ``started()`` holds, SIGTERM ``server``.

    Returns ``(status, text)`` of the response, or the client error's repr.
    """
    import httpx

    result: dict[str, Any] = {}

    def get() -> None:
        try:
            r = httpx.get(url, timeout=15)
            result["response"] = (r.status_code, r.text)
        except httpx.HTTPError as exc:
            result["response"] = repr(exc)

    thread = threading.Thread(target=get)
    thread.start()
    try:
        assert wait_for(started, timeout=10), server.output()
        server.signal(signal.SIGTERM)
    finally:
        thread.join(20)
    return result.get("response")
