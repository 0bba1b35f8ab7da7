"""The ``rsgi-bridge`` command and ``python -m rsgi_bridge``."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from tests.servers import ROOT, Server


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rsgi_bridge", *args], cwd=ROOT, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nocolon", "must be in the form 'module:attribute'"),
        ("no_such_module_xyz:app", "could not import module 'no_such_module_xyz'"),
        ("examples.hello:nope", "attribute 'nope' not found"),
        ("examples.hello:HERE", "neither an RSGI nor an ASGI"),
        ("tests.apps.http_app:asgi", "is an ASGI application, not an RSGI one"),
    ],
)
def test_bad_targets_exit_2_with_a_clear_message(target: str, message: str) -> None:
    r = run_cli(target)
    assert r.returncode == 2
    assert message in r.stderr


def test_help_lists_options() -> None:
    r = run_cli("--help")
    assert r.returncode == 0
    for opt in ("--host", "--port", "--workers", "--log-level", "--root-path", "--reload", "--server"):
        assert opt in r.stdout


@pytest.mark.parametrize("extra", [[], ["--server", "hypercorn"], ["--workers", "2"], ["--root-path", "/p"]])
def test_cli_serves_the_example(extra: list[str]) -> None:
    with Server("rsgi-bridge", "examples.hello:app", extra) as s, httpx.Client(base_url=s.url, timeout=10) as c:
        assert c.get("/").text == "Hello, world!"  # greeting set by __rsgi_init__ via run_until_complete
        assert c.post("/echo", content=b"abc").content == b"abc"
        assert c.get("/stream").text == "".join(f"chunk {i}\n" for i in range(5))
        assert c.get("/file").content == (ROOT / "examples" / "hello.py").read_bytes()
    assert s.returncode == 0  # SIGTERM: graceful shutdown, then a clean exit
    out = s.output()
    assert out.count("hello: init") == out.count("hello: del") >= 1
