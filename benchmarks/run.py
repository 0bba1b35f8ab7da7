#!/usr/bin/env python
"""Throughput benchmark: native ASGI vs RSGI-through-rsgi-bridge on the same uvicorn.

Runs the work of ``benchmarks/apps.py`` four ways -- native ASGI on uvicorn, the RSGI app
wrapped by ``rsgi_bridge.wrap`` on uvicorn, the RSGI app on Granian and a Starlette
equivalent on uvicorn -- side by side, in alternating order (and the Emmett55 peers: one Emmett55
app through its own ASGI interface and as RSGI through the bridge, both on uvicorn), with ``wrk`` as the load
generator (websockets: a small asyncio client in this file). Server and load generator
are pinned to different CPUs with ``taskset`` when it exists.

    python benchmarks/run.py                         # full run, results in benchmarks/results/
    python benchmarks/run.py -d 3 -r 3 -w plain,echo # quick look
    python benchmarks/run.py --help

Needs ``wrk`` (Debian/Ubuntu: ``apt-get install wrk``; macOS: ``brew install wrk``),
uvicorn with httptools and uvloop, granian, starlette, and matplotlib for the chart.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable

KIB = 1024
MIB = 1024 * 1024


@dataclass(frozen=True)
class ServerSpec:
    key: str
    label: str
    kind: str  # "uvicorn", "hypercorn" or "granian"
    target: str
    compare: str = ""  # --compare: directory of another copy of the rsgi_bridge package to wrap with
    peer: bool = False  # serves the Emmett55 peer workloads only (and only it serves them)
    options: tuple[str, ...] = ()  # more server options
    env: tuple[tuple[str, str], ...] = ()  # more environment variables
    base: str = ""  # the server this one is compared with, if not the workload's baseline (BASELINE)
    extra: bool = False  # run only when named with -s, and left out of the chart


SERVERS = {
    "asgi": ServerSpec("asgi", "native ASGI / uvicorn", "uvicorn", "apps:asgi_app"),
    "bridge": ServerSpec("bridge", "RSGI via rsgi-bridge / uvicorn", "uvicorn", "apps:bridged_app"),
    "granian": ServerSpec("granian", "RSGI / Granian", "granian", "apps:rsgi_app"),
    "starlette": ServerSpec("starlette", "Starlette / uvicorn", "uvicorn", "apps:starlette_app"),
    # The generic path: every accelerator off, on uvicorn and on hypercorn (which has none).
    "bridge-generic": ServerSpec(
        "bridge-generic", "rsgi-bridge, accelerators off / uvicorn", "uvicorn", "apps:bridged_app",
        env=(("RSGI_BRIDGE_ACCELERATE", "0"),), extra=True,
    ),
    "asgi-hypercorn": ServerSpec(
        "asgi-hypercorn", "native ASGI / hypercorn", "hypercorn", "apps:asgi_app", extra=True
    ),
    "bridge-hypercorn": ServerSpec(
        "bridge-hypercorn", "RSGI via rsgi-bridge / hypercorn", "hypercorn", "apps:bridged_app",
        base="asgi-hypercorn", extra=True,
    ),
    # uvicorn's pure-Python h11 protocol (its default where httptools is not installed): the plain-response
    # accelerator and the departed-client check apply there, not the stream and file writers.
    "asgi-h11": ServerSpec(
        "asgi-h11", "native ASGI / uvicorn h11", "uvicorn", "apps:asgi_app", options=("--http", "h11"), extra=True
    ),
    "bridge-h11": ServerSpec(
        "bridge-h11", "RSGI via rsgi-bridge / uvicorn h11", "uvicorn", "apps:bridged_app",
        options=("--http", "h11"), base="asgi-h11", extra=True,
    ),
    "bridge-h11-generic": ServerSpec(
        "bridge-h11-generic", "rsgi-bridge, accelerators off / uvicorn h11", "uvicorn", "apps:bridged_app",
        options=("--http", "h11"), env=(("RSGI_BRIDGE_ACCELERATE", "0"),), base="asgi-h11", extra=True,
    ),
    # Peers: the same Emmett55 app through its own ASGI interface, and as RSGI through the bridge.
    # (Emmett's App.__call__ is not an ``async def``: uvicorn would take it for ASGI 2 without --interface.)
    "emmett-asgi": ServerSpec(
        "emmett-asgi",
        "Emmett55 ASGI / uvicorn",
        "uvicorn",
        "apps:emmett_asgi",
        peer=True,
        options=("--interface", "asgi3"),
    ),
    "emmett-bridge": ServerSpec(
        "emmett-bridge", "Emmett55 RSGI via rsgi-bridge / uvicorn", "uvicorn", "apps:emmett_bridged", peer=True
    ),
}
# For each kind of workload: the server the others are compared with, and the one compared.
BASELINE = {False: ("asgi", "bridge"), True: ("emmett-asgi", "emmett-bridge")}


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    method: str
    path: str
    connections: int
    body: int = 0  # request body size
    expect: int = 0  # response body size
    ws: bool = False
    peer: bool = False  # served by the Emmett55 peers (SERVERS' peer=True) only


WORKLOADS = {
    w.key: w
    for w in (
        Workload("plain", "GET 13 B", "GET", "/plain", 64, expect=13),
        Workload("10k", "GET 10 KiB", "GET", "/10k", 64, expect=10 * KIB),
        Workload("echo", "POST 10 KiB echo (await protocol())", "POST", "/echo", 64, body=10 * KIB, expect=10 * KIB),
        Workload(
            "echo-stream", "POST 10 KiB echo (async for, streamed)", "POST", "/echo-stream", 64, 10 * KIB, 10 * KIB
        ),
        Workload("stream", "GET 1 MiB streamed", "GET", "/stream", 16, expect=MIB),
        Workload("file", "GET 1 MiB file", "GET", "/file", 16, expect=MIB),
        Workload("ws", "websocket echo, 13 B messages", "WS", "/ws", 64, ws=True),
        Workload("emmett-1", "Emmett55 GET 13 B, 1 connection", "GET", "/plain", 1, expect=13, peer=True),
        Workload("emmett-8", "Emmett55 GET 13 B, 8 connections", "GET", "/plain", 8, expect=13, peer=True),
        Workload("emmett-64", "Emmett55 GET 13 B, 64 connections", "GET", "/plain", 64, expect=13, peer=True),
    )
}

# ---------------------------------------------------------------------------------------------
# environment


def cpu_model() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "implementation": platform.python_implementation()}
    for name in ("rsgi-bridge", "uvicorn", "granian", "starlette", "uvloop", "httptools", "websockets"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        w = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
        m = re.search(r"wrk (\S+)", w.stdout + w.stderr)
        if m:
            out["wrk"] = m.group(1)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        if rev.returncode == 0:
            out["rsgi-bridge git"] = rev.stdout.strip()
    return out


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "hostname": platform.node(),
    }


def load1() -> float:
    return os.getloadavg()[0]


def wait_idle(max_minutes: float, threshold: float = 1.0, poll: float = 30.0) -> bool:
    """Wait until the 1-minute load average is below ``threshold``; False if it never was."""
    deadline = time.monotonic() + max_minutes * 60
    while True:
        now = load1()
        if now < threshold:
            print(f"load average {now:.2f} < {threshold}: starting", flush=True)
            return True
        if time.monotonic() >= deadline:
            print(f"load average still {now:.2f} after {max_minutes} min: running anyway", flush=True)
            return False
        print(f"load average {now:.2f} >= {threshold}: waiting {poll:.0f} s", flush=True)
        time.sleep(poll)


# ---------------------------------------------------------------------------------------------
# servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cpu is not None else []


class RunningServer:
    """One server subprocess, pinned, listening on 127.0.0.1:port."""

    def __init__(self, spec: ServerSpec, cpu: int | None) -> None:
        self.spec = spec
        self.port = free_port()
        p = str(self.port)
        if spec.kind == "uvicorn":
            cmd = [
                PY, "-m", "uvicorn", spec.target, "--host", "127.0.0.1", "--port", p,
                "--http", "httptools", "--loop", "uvloop", "--workers", "1",
                "--no-access-log", "--log-level", "warning", *spec.options,
            ]  # fmt: skip
        elif spec.kind == "hypercorn":
            cmd = [
                PY, "-m", "hypercorn", spec.target, "--bind", f"127.0.0.1:{p}", "--worker-class", "uvloop",
                "--workers", "1", "--log-level", "warning", *spec.options,
            ]  # fmt: skip
        else:
            cmd = [
                PY, "-m", "granian", "--interface", "rsgi", "--host", "127.0.0.1", "--port", p,
                "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop",
                "--no-access-log", "--log-level", "warning", spec.target,
            ]  # fmt: skip
        self.argv = pin(cpu) + cmd
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.update(spec.env)
        if spec.compare:
            env["RSGI_BENCH_COMPARE"] = spec.compare
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{spec.key}-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.argv, cwd=HERE, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{spec.label} exited with {self.proc.returncode}:\n{self.output()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{spec.label} did not listen within 30 s:\n{self.output()}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        proc = self.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers of this server's own process group
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


def check_server(server: RunningServer, workloads: list[Workload]) -> None:
    """Fail loudly unless every workload gives the expected bytes on this server."""
    sys.path.insert(0, str(HERE))
    import apps

    expected = {
        "/plain": apps.PLAIN,
        "/10k": apps.BODY_10K,
        "/stream": apps.CHUNK * apps.STREAM_CHUNKS,
        "/file": Path(apps.FILE).read_bytes(),
    }
    payload = os.urandom(10 * KIB)
    for w in workloads:
        if w.peer != server.spec.peer:
            continue
        if w.ws:
            got = asyncio.run(ws_roundtrip(server.port, w.path, b"Hello, world!"))
            if got != b"Hello, world!":
                raise RuntimeError(f"{server.spec.label}: websocket echo returned {got!r}")
            continue
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            body = payload if w.method == "POST" else None
            headers = {"content-type": "application/octet-stream"} if body is not None else {}
            conn.request(w.method, w.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        want = payload if w.method == "POST" else expected[w.path]
        if resp.status != 200 or data != want:
            raise RuntimeError(
                f"{server.spec.label} {w.method} {w.path}: status {resp.status}, {len(data)} bytes "
                f"(want 200 and {len(want)} bytes)"
            )


# ---------------------------------------------------------------------------------------------
# wrk


_UNITS = {"B": 1, "KB": KIB, "MB": MIB, "GB": KIB * MIB, "TB": MIB * MIB}
_TIME = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * _TIME[m.group(2)] if m else float("nan")


def parse_wrk(out: str) -> dict[str, Any]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    tps = re.search(r"Transfer/sec:\s+([\d.]+)([KMGT]?B)", out)
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
    if not rps or not tps or not total:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    res: dict[str, Any] = {
        "rps": float(rps.group(1)),
        "mib_s": float(tps.group(1)) * _UNITS[tps.group(2)] / MIB,
        "requests": int(total.group(1)),
        "errors": 0,
        "non_2xx": 0,
    }
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errs:
        res["errors"] = sum(int(x) for x in errs.groups())
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        res["non_2xx"] = int(bad.group(1))
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        if m:
            res[f"p{pct}_ms"] = _ms(m.group(1))
    return res


def wrk_script(tmp: Path, size: int) -> Path:
    path = tmp / f"post-{size}.lua"
    if not path.exists():
        path.write_text(
            f'wrk.method = "POST"\n'
            f'wrk.body = string.rep("x", {size})\n'
            f'wrk.headers["Content-Type"] = "application/octet-stream"\n'
        )
    return path


def run_wrk(
    server: RunningServer, w: Workload, duration: float, cpu: int | None, tmp: Path, connections: int | None
) -> dict[str, Any]:
    argv = [*pin(cpu), "wrk", "-t1", f"-c{connections or w.connections}", f"-d{max(1, round(duration))}s"]
    argv += ["--timeout", "10s", "--latency"]
    if w.body:
        argv += ["-s", str(wrk_script(tmp, w.body))]
    argv.append(server.url + w.path)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return parse_wrk(proc.stdout)


# ---------------------------------------------------------------------------------------------
# websocket client: raw frames over asyncio protocols, cheap enough not to be the bottleneck

_WS_KEY = base64.b64encode(b"rsgi-bridge-benc").decode()  # 16 bytes, as RFC 6455 wants


def _client_frame(payload: bytes) -> bytes:
    # FIN + text opcode, masked with the all-zero key (legal, and the payload stays as is).
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


class _WSClient(asyncio.Protocol):
    def __init__(self, host: str, path: str, frame: bytes, state: dict[str, Any], ready: asyncio.Future[None]) -> None:
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {_WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.frame = frame
        self.state = state
        self.ready = ready
        self.buf = bytearray()
        self.open = False
        self.transport: asyncio.Transport | None = None
        self.last: bytes = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                if not self.ready.done():
                    self.ready.set_exception(RuntimeError(f"handshake refused: {head[:80]!r}"))
                return
            self.open = True
            if not self.ready.done():
                self.ready.set_result(None)
            self.transport.write(self.frame)  # type: ignore[union-attr]
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            if n >= 126:  # not expected for small messages
                hdr = 4 if n == 126 else 10
                if len(buf) < hdr:
                    return
                n = int.from_bytes(buf[2:hdr], "big")
            else:
                hdr = 2
            if len(buf) < hdr + n:
                return
            self.last = bytes(buf[hdr : hdr + n])
            del buf[: hdr + n]
            st = self.state
            if st["counting"]:
                st["count"] += 1
            if not st["stop"]:
                self.transport.write(self.frame)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionError("closed during handshake"))


async def ws_roundtrip(port: int, path: str, payload: bytes) -> bytes:
    """One echo, for the correctness check."""
    loop = asyncio.get_running_loop()
    state = {"counting": False, "count": 0, "stop": True}
    ready: asyncio.Future[None] = loop.create_future()
    transport, proto = await loop.create_connection(
        lambda: _WSClient(f"127.0.0.1:{port}", path, _client_frame(payload), state, ready), "127.0.0.1", port
    )
    try:
        await asyncio.wait_for(ready, 10)
        for _ in range(200):
            if proto.last:
                break
            await asyncio.sleep(0.01)
        return proto.last
    finally:
        transport.close()


async def ws_load(port: int, path: str, connections: int, duration: float, warmup: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    frame = _client_frame(b"Hello, world!")
    state: dict[str, Any] = {"counting": False, "count": 0, "stop": False}
    conns = []
    for _ in range(connections):
        ready: asyncio.Future[None] = loop.create_future()
        transport, _p = await loop.create_connection(
            lambda r=ready: _WSClient(f"127.0.0.1:{port}", path, frame, state, r), "127.0.0.1", port
        )
        await asyncio.wait_for(ready, 10)
        conns.append(transport)
    await asyncio.sleep(warmup)
    state["counting"] = True
    t0 = time.perf_counter()
    await asyncio.sleep(duration)
    state["counting"] = False
    elapsed = time.perf_counter() - t0
    state["stop"] = True
    await asyncio.sleep(0.2)
    for t in conns:
        with contextlib.suppress(Exception):
            t.write(b"\x88\x82\0\0\0\0\x03\xe8")  # close 1000
    await asyncio.sleep(0.2)
    for t in conns:
        t.close()
    return {"rps": state["count"] / elapsed, "mib_s": 0.0, "requests": state["count"], "errors": 0, "non_2xx": 0}


def run_ws(
    server: RunningServer, w: Workload, duration: float, cpu: int | None, connections: int | None
) -> dict[str, Any]:
    argv = [*pin(cpu), PY, str(Path(__file__).resolve()), "--ws-client", str(server.port), w.path]
    argv += [str(connections or w.connections), str(duration)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"websocket client failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def ws_client_main(argv: list[str]) -> None:
    port, path, conns, duration = int(argv[0]), argv[1], int(argv[2]), float(argv[3])
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    print(json.dumps(asyncio.run(ws_load(port, path, conns, duration, warmup=min(1.0, duration / 4)))))


# ---------------------------------------------------------------------------------------------
# report


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    rps = [r["rps"] for r in rounds]
    mib = [r["mib_s"] for r in rounds]
    return {
        "rps_median": statistics.median(rps),
        "rps_min": min(rps),
        "rps_max": max(rps),
        "mib_s_median": statistics.median(mib),
        "errors": sum(r["errors"] + r["non_2xx"] for r in rounds),
    }


def base_of(s: str) -> str:
    """The server ``s`` is compared with: its own ``base``, else its kind's baseline (BASELINE)."""
    spec = SERVERS[s]
    return spec.base or BASELINE[spec.peer][0]


def compared_with(per: dict[str, Any]) -> dict[str, str]:
    """For each served bridge (and Emmett peer) among ``per``'s servers, the server it is compared with."""
    return {
        s: base_of(s)
        for s in per
        if (s.startswith("bridge") or s == BASELINE[SERVERS[s].peer][1]) and base_of(s) in per
    }


def other_ratios(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Workload -> compared server -> ratio of medians, for the pairs besides the main one (see ratios)."""
    out: dict[str, dict[str, float]] = {}
    for wkey, per in results.items():
        main = BASELINE[WORKLOADS[wkey].peer][1]
        for s, base in compared_with(per).items():
            if s != main and per[base]["summary"]["rps_median"]:
                out.setdefault(wkey, {})[s] = per[s]["summary"]["rps_median"] / per[base]["summary"]["rps_median"]
    return out


def ratios(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """bridge/native per workload (Emmett55 peers: bridged/Emmett's ASGI): ratio of medians, and the
    min-max of the per-round ratios."""
    out = {}
    for wkey, per in results.items():
        base, compared = BASELINE[WORKLOADS[wkey].peer]
        if base in per and compared in per:
            a, b = per[base], per[compared]
            paired = [x["rps"] / y["rps"] for x, y in zip(b["rounds"], a["rounds"], strict=False) if y["rps"]]
            out[wkey] = {
                "ratio": b["summary"]["rps_median"] / a["summary"]["rps_median"],
                "round_min": min(paired),
                "round_max": max(paired),
            }
    return out


def fmt_rps(s: dict[str, Any]) -> str:
    return f"{s['rps_median']:,.0f} ({s['rps_min']:,.0f}-{s['rps_max']:,.0f})"


def markdown(doc: dict[str, Any]) -> str:
    meta = doc["meta"]
    res = doc["results"]
    keys = [k for k in SERVERS if any(k in per for per in res.values())]
    lines = [
        f"Date: {meta['date']} · CPU: {meta['machine']['cpu']} ({meta['machine']['cpus']} CPUs) · "
        f"{meta['machine']['os']}",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
        f"Settings: {meta['settings']['rounds']} rounds of {meta['settings']['duration']} s per server and workload "
        f"(after a {meta['settings']['warmup']} s warm-up), alternating order; server on CPU "
        f"{meta['settings']['server_cpu']}, load generator on CPU {meta['settings']['client_cpu']}; "
        f"1-minute load average {meta['load_before']:.2f} before, {meta['load_after']:.2f} after.",
        "",
        "Requests/s (websocket: messages/s), median of the rounds (min-max):",
        "",
        "| workload | "
        + " | ".join(SERVERS[k].label for k in keys)
        + " | bridge / native (Emmett55: bridged / its ASGI) |",
        "|---|" + "---:|" * (len(keys) + 1),
    ]
    rat = doc["ratios"]
    for wkey, per in res.items():
        cells = []
        for k in keys:
            if k not in per:
                cells.append("-")
                continue
            s = per[k]["summary"]
            cell = fmt_rps(s)
            if s["mib_s_median"] >= 50:
                cell += f" · {s['mib_s_median']:,.0f} MiB/s"
            if s["errors"]:
                cell += f" · **{s['errors']} errors**"
            cells.append(cell)
        r = rat.get(wkey)
        ratio = f"**{r['ratio']:.3f}** ({r['round_min']:.3f}-{r['round_max']:.3f})" if r else "-"
        lines.append(f"| {WORKLOADS[wkey].label} | " + " | ".join(cells) + f" | {ratio} |")
    others = doc.get("other_ratios") or {}
    if others:
        lines += ["", "Other ratios (median over median):", ""]
        for wkey, per in others.items():
            for s, r in per.items():
                pair = f"{SERVERS[s].label} / {SERVERS[base_of(s)].label}"
                lines.append(f"- {WORKLOADS[wkey].label}: {pair} = **{r:.3f}**")
    return "\n".join(lines) + "\n"


def chart(doc: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install matplotlib)", file=sys.stderr)
        return False
    res = doc["results"]
    wkeys = [w for w in res if BASELINE[WORKLOADS[w].peer][0] in res[w]]
    skeys = [k for k in SERVERS if not SERVERS[k].extra and any(k in res[w] for w in wkeys)]
    if not wkeys:
        return False
    fig, ax = plt.subplots(figsize=(11, 5.2))
    width = 0.8 / len(skeys)
    colors = {"asgi": "#4c72b0", "bridge": "#dd8452", "granian": "#55a868", "starlette": "#8172b2",
              "emmett-asgi": "#4c72b0", "emmett-bridge": "#dd8452"}  # fmt: skip
    for i, sk in enumerate(skeys):
        xs, ys, lo, hi = [], [], [], []
        for j, wk in enumerate(wkeys):
            if sk not in res[wk]:
                continue
            base = res[wk][BASELINE[WORKLOADS[wk].peer][0]]["summary"]["rps_median"]
            s = res[wk][sk]["summary"]
            xs.append(j + (i - (len(skeys) - 1) / 2) * width)
            ys.append(s["rps_median"] / base)
            lo.append((s["rps_median"] - s["rps_min"]) / base)
            hi.append((s["rps_max"] - s["rps_median"]) / base)
        bars = ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=SERVERS[sk].label, color=colors.get(sk))
        if sk in ("bridge", "emmett-bridge"):
            for b, y in zip(bars, ys, strict=True):
                ax.annotate(f"{y:.2f}", (b.get_x() + b.get_width() / 2, y), ha="center", va="bottom", fontsize=8,
                            xytext=(0, 3), textcoords="offset points")  # fmt: skip
    ax.axhline(0.95, color="red", linestyle="--", linewidth=0.8, label="target 0.95x native")
    labels = [WORKLOADS[w].label.replace(" (", "\n(").replace(", ", ",\n") for w in wkeys]
    ax.set_xticks(range(len(wkeys)), labels, fontsize=8)
    ax.set_ylabel("requests/s relative to native ASGI on uvicorn\n(Emmett55: to Emmett's own ASGI interface)")
    meta = doc["meta"]
    ax.set_title(
        f"rsgi-bridge {meta['versions'].get('rsgi-bridge', '?')} · {meta['date']} · {meta['machine']['cpu']} · "
        f"Python {meta['versions']['python']} · uvicorn {meta['versions']['uvicorn']} · "
        f"granian {meta['versions']['granian']}",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="upper left", ncols=3)
    ax.set_ylim(0, max(1.3, ax.get_ylim()[1]))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-d", "--duration", type=float, default=10.0, help="seconds per measured run (default 10)")
    p.add_argument("-r", "--rounds", type=int, default=3, help="measured rounds per server and workload (default 3)")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per server and workload (default 2)")
    p.add_argument(
        "-w", "--workloads", default=",".join(WORKLOADS), help=f"comma-separated subset of {','.join(WORKLOADS)}"
    )
    p.add_argument(
        "-s", "--servers", default=",".join(k for k, v in SERVERS.items() if not v.extra),
        help=f"comma-separated subset of {','.join(SERVERS)} (default: all but "
        + ", ".join(k for k, v in SERVERS.items() if v.extra) + ")",
    )
    p.add_argument("-c", "--connections", type=int, default=None, help="override connections per workload")
    p.add_argument("--server-cpu", type=int, default=0, help="CPU for the servers (default 0)")
    p.add_argument("--client-cpu", type=int, default=1, help="CPU for wrk / the websocket client (default 1)")
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="MIN",
                   help="first wait up to MIN minutes for the 1-minute load average to fall below 1.0")  # fmt: skip
    p.add_argument("--out", type=Path, default=HERE / "results", help="directory for JSON/Markdown/PNG results")
    p.add_argument("--no-save", action="store_true", help="print the results only")
    p.add_argument("--tag", default="", help="suffix for the result file names")
    p.add_argument("--all", action="store_true", help="also run micro.py and memory.py and include their results")
    p.add_argument("--compare", type=Path, action="append", default=[], metavar="DIR",
                   help="also serve rsgi_app wrapped by another copy of the package in DIR (any name), for A/B "
                   "tests of a change on the real server")  # fmt: skip
    p.add_argument("--chart-from", type=Path, default=None, metavar="JSON", help="only redraw the chart of a saved run")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--ws-client"]:
        ws_client_main(argv[1:])
        return 0
    args = parse_args(argv)
    if args.chart_from:
        doc = json.loads(args.chart_from.read_text())
        png = args.chart_from.with_suffix(".png")
        print(f"chart: {png}" if chart(doc, png) else "no chart")
        return 0
    wkeys = [w.strip() for w in args.workloads.split(",") if w.strip()]
    skeys = [s.strip() for s in args.servers.split(",") if s.strip()]
    for d in args.compare:
        d = d.resolve()
        key = f"bridge@{d.name}"
        SERVERS[key] = ServerSpec(key, f"rsgi-bridge from {d.name} / uvicorn", "uvicorn", "apps:compare_app", str(d))
        skeys.append(key)
    bad = [w for w in wkeys if w not in WORKLOADS] + [s for s in skeys if s not in SERVERS]
    if bad or args.rounds < 1:
        print(f"unknown workload/server {bad} or rounds < 1", file=sys.stderr)
        return 2
    workloads = [WORKLOADS[w] for w in wkeys]
    if any(not w.ws for w in workloads) and shutil.which("wrk") is None:
        print(
            "wrk is not installed. Install it and rerun:\n"
            "  Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y wrk\n"
            "  Fedora: sudo dnf install wrk    macOS: brew install wrk\n"
            "  or build it from https://github.com/wg/wrk",
            file=sys.stderr,
        )
        return 1
    pinning = not args.no_pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    server_cpu = args.server_cpu if pinning else None
    client_cpu = args.client_cpu if pinning else None
    if not pinning:
        print("note: not pinning server and load generator to CPUs (taskset missing, --no-pin or 1 CPU)")

    idle = wait_idle(args.wait_idle) if args.wait_idle > 0 else load1() < 1.0
    meta: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "settings": {
            "duration": args.duration,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "server_cpu": server_cpu,
            "client_cpu": client_cpu,
            "connections": {w.key: args.connections or w.connections for w in workloads},
            "uvicorn": "--http httptools --loop uvloop --workers 1 --no-access-log",
            "granian": "--interface rsgi --workers 1 --runtime-threads 1 --loop uvloop --no-access-log",
            "wrk": "-t1 --latency",
        },
        "load_before": load1(),
        "idle_at_start": idle,
    }
    print(f"{meta['machine']['cpu']} · Python {meta['versions']['python']} · load {meta['load_before']:.2f}")
    results: dict[str, dict[str, Any]] = {w.key: {} for w in workloads}
    servers: dict[str, RunningServer] = {}
    tmp = Path(tempfile.mkdtemp(prefix="rsgi-bench-"))
    try:
        for s in skeys:
            servers[s] = RunningServer(SERVERS[s], server_cpu)
        for s in skeys:
            check_server(servers[s], workloads)
        print(f"servers up and answering correctly: {', '.join(SERVERS[s].label for s in skeys)}")

        def measure(s: str, w: Workload, duration: float) -> dict[str, Any]:
            if w.ws:
                return run_ws(servers[s], w, duration, client_cpu, args.connections)
            return run_wrk(servers[s], w, duration, client_cpu, tmp, args.connections)

        for w in workloads:
            wservers = [s for s in skeys if SERVERS[s].peer == w.peer]
            if not wservers:
                continue
            print(f"\n== {w.label}")
            for s in wservers:
                if args.warmup > 0:
                    measure(s, w, args.warmup)
            per: dict[str, list[dict[str, Any]]] = {s: [] for s in wservers}
            for r in range(args.rounds):
                order = wservers if r % 2 == 0 else wservers[::-1]  # alternate who goes first
                for s in order:
                    res = measure(s, w, args.duration)
                    per[s].append(res)
                    extra = f" {res['mib_s']:8.1f} MiB/s" if res["mib_s"] >= 50 else ""
                    errs = f"  ERRORS {res['errors']}+{res['non_2xx']}" if res["errors"] or res["non_2xx"] else ""
                    print(f"  round {r + 1} {SERVERS[s].label:32s} {res['rps']:10.0f} req/s{extra}{errs}", flush=True)
            for s in wservers:
                results[w.key][s] = {"rounds": per[s], "summary": summarize(per[s])}
            for s, base_key in compared_with(per).items():
                base = results[w.key][base_key]["summary"]["rps_median"]
                if base:
                    ra = results[w.key][s]["summary"]["rps_median"] / base
                    print(f"  -> {s} / {SERVERS[base_key].label} = {ra:.3f}")
    finally:
        for srv in servers.values():
            srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    results = {k: v for k, v in results.items() if v}  # workloads no chosen server serves
    meta["load_after"] = load1()
    doc: dict[str, Any] = {
        "meta": meta, "results": results, "ratios": ratios(results), "other_ratios": other_ratios(results)
    }
    day = dt.date.today().isoformat()
    tag = f"-{args.tag}" if args.tag else ""
    extra_md = ""
    if args.all:
        extra_md = run_companions(args, day, tag, doc)
    md = markdown(doc) + extra_md
    print("\n" + md)
    if not args.no_save:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = f"{day}-throughput{tag}"
        (args.out / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
        (args.out / f"{stem}.md").write_text(md)
        made = chart(doc, args.out / f"{stem}.png")
        print(f"saved {args.out / stem}.json/.md" + ("/.png" if made else ""))
    return 0


def run_companions(args: argparse.Namespace, day: str, tag: str, doc: dict[str, Any]) -> str:
    """Run micro.py and memory.py too (``--all``); their JSON goes next to ours. Returns Markdown."""
    out = args.out if not args.no_save else Path(tempfile.mkdtemp(prefix="rsgi-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    md = []
    micro_json = out / f"{day}-micro{tag}.json"
    print("\n== in-process cost per request (micro.py)", flush=True)
    subprocess.run([*pin(args.server_cpu if not args.no_pin else None), PY, str(HERE / "micro.py"),
                    "--save", str(micro_json)], check=True)  # fmt: skip
    micro = json.loads(micro_json.read_text())
    doc["micro"] = micro
    md += ["", "In-process cost per request (µs; uvicorn's request cycle on a null transport; "
           "min over trials of the median of batches):", "",
           "| workload | native ASGI | bridged | added | ratio |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for r in micro["results"].values():
        md.append(
            f"| {r['label']} | {r['native_us']:.2f} | {r['bridged_us']:.2f} | {r['added_us']:.2f} | {r['ratio']:.2f} |"
        )
    memory_json = out / f"{day}-memory{tag}.json"
    print("\n== memory, 1 GiB each way (memory.py)", flush=True)
    subprocess.run([PY, str(HERE / "memory.py"), "--save", str(memory_json)], check=True)
    memory = json.loads(memory_json.read_text())
    doc["memory"] = memory
    md += ["", f"Server peak RSS growth, {memory['meta']['size_mib']} MiB streamed each way on uvicorn "
           f"(target for the bridge: < {memory['meta']['target_growth_mib']} MiB):", "",
           "| app | upload growth | upload MiB/s | download growth | download MiB/s |",
           "|---|---:|---:|---:|---:|"]  # fmt: skip
    for key, r in memory["results"].items():
        up, down = r["upload"], r["download"]
        md.append(
            f"| {key} | {up['growth_mib']:.1f} MiB | {up['mib_s']:.0f} | {down['growth_mib']:.1f} MiB | "
            f"{down['mib_s']:.0f} |"
        )
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
