#!/usr/bin/env python
"""Server memory while 1 GiB streams through the bridge, each way.

Serves ``benchmarks/apps.py`` with uvicorn (httptools, uvloop, one worker) and sends

* a 1 GiB upload to ``POST /upload`` (the RSGI app reads it with ``async for`` and
  answers the byte count), then
* a 1 GiB download from ``GET /download`` (the RSGI app streams it with
  ``response_stream`` in 64 KiB chunks),

over a raw socket, checking the sizes. The server's peak resident set size is read
from ``/proc/PID/status`` (``VmHWM``, reset through ``/proc/PID/clear_refs`` before
each transfer) and also sampled every 10 ms; the growth over the idle, warmed-up
server is reported. Target for the bridge: under 16 MiB. The native ASGI app is
measured the same way for comparison.

    python benchmarks/memory.py                  # bridge and native, 1 GiB each way
    python benchmarks/memory.py --size-mib 256   # quicker
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MIB = 1024 * 1024
TARGET_MIB = 16

APPS = {"bridge": "apps:bridged_app", "native": "apps:asgi_app"}


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Sampler:
    """Samples the RSS of ``pid`` every 10 ms in a thread; ``peak`` in KiB."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, RuntimeError):
                self.peak = max(self.peak, status_kib(self.pid, "VmRSS"))
            self._stop.wait(0.01)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and the bytes read past them."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise RuntimeError(f"connection closed in the response head: {buf[:200]!r}")
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, rest


def upload(port: int, size: int) -> float:
    """POST ``size`` bytes to /upload; returns the seconds it took."""
    block = b"u" * (256 * 1024)
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            f"POST /upload HTTP/1.1\r\nHost: bench\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {size}\r\nConnection: close\r\n\r\n".encode()
        )
        left = size
        view = memoryview(block)
        while left:
            n = min(left, len(block))
            sock.sendall(view[:n])
            left -= n
        status, headers, rest = read_head(sock)
        body = rest
        while len(body) < int(headers.get("content-length", "0")):
            data = sock.recv(65536)
            if not data:
                break
            body += data
    if status != 200 or body != str(size).encode():
        raise RuntimeError(f"upload: status {status}, body {body[:80]!r} (want the size {size})")
    return time.perf_counter() - t0


def download(port: int, size: int) -> float:
    """GET ``size`` bytes from /download and discard them; returns the seconds it took."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET /download?{size} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        status, headers, rest = read_head(sock)
        got = len(rest)
        buf = bytearray(1024 * 1024)
        while True:
            n = sock.recv_into(buf)
            if not n:
                break
            got += n
    if status != 200 or got != size or int(headers.get("content-length", "-1")) != size:
        raise RuntimeError(f"download: status {status}, {got} bytes (want {size})")
    return time.perf_counter() - t0


def measure(app: str, size: int, server_cpu: int | None, client_cpu: int | None) -> dict[str, Any]:
    port = _free_port()
    argv = [
        sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
        "--http", "httptools", "--loop", "uvloop", "--workers", "1", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    if server_cpu is not None:
        argv = ["taskset", "-c", str(server_cpu), *argv]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(argv, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"server exited: {log.read().decode(errors='replace')}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        if client_cpu is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, {client_cpu})
        # warm-up: imports, buffers, first-request work
        upload(port, 16 * MIB)
        download(port, 16 * MIB)
        time.sleep(0.3)
        out: dict[str, Any] = {"app": app}
        for name, run in (("upload", upload), ("download", download)):
            base = status_kib(proc.pid, "VmRSS")
            exact = reset_peak(proc.pid)
            with Sampler(proc.pid) as sampler:
                seconds = run(port, size)
            hwm = status_kib(proc.pid, "VmHWM") if exact else 0
            peak = max(hwm, sampler.peak)
            out[name] = {
                "rss_before_mib": base / 1024,
                "peak_rss_mib": peak / 1024,
                "growth_mib": (peak - base) / 1024,
                "peak_source": "VmHWM + 10 ms samples" if exact else "10 ms samples",
                "seconds": seconds,
                "mib_s": size / MIB / seconds,
            }
            time.sleep(0.3)
        return out
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=int, default=1024, help="bytes to send each way, in MiB (default 1024)")
    p.add_argument("--apps", default="bridge,native", help="bridge,native (default both)")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--save", type=Path, default=None, help="write the results as JSON to this file")
    args = p.parse_args(argv)
    if not Path("/proc/self/status").exists():
        print("memory.py reads /proc/PID/status: Linux only", file=sys.stderr)
        return 1
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    size = args.size_mib * MIB
    results: dict[str, Any] = {}
    for key in args.apps.split(","):
        r = measure(APPS[key], size, args.server_cpu if pin else None, args.client_cpu if pin else None)
        results[key] = r
        for name in ("upload", "download"):
            m = r[name]
            verdict = ""
            if key == "bridge":
                verdict = "  OK" if m["growth_mib"] < TARGET_MIB else f"  OVER {TARGET_MIB} MiB"
            print(
                f"{key:7s} {name:8s} {args.size_mib} MiB in {m['seconds']:.1f} s ({m['mib_s']:.0f} MiB/s): "
                f"RSS {m['rss_before_mib']:.1f} -> peak {m['peak_rss_mib']:.1f} MiB, "
                f"growth {m['growth_mib']:.1f} MiB{verdict}",
                flush=True,
            )
    if args.save:
        doc = {
            "meta": {
                "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                "python": platform.python_version(),
                "versions": {n: metadata.version(n) for n in ("rsgi-bridge", "uvicorn", "uvloop", "httptools")},
                "size_mib": args.size_mib,
                "target_growth_mib": TARGET_MIB,
            },
            "results": results,
        }
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"saved {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
