"""The one-line deployment: ``rsgi_bridge:wrap(module:app)`` in each server's own app string.

Each form is what that server's loader accepts (read from its source: uvicorn, daphne and Granian
look up dotted attributes; gunicorn calls ``name(literals)``; hypercorn evaluates an expression and
takes two colons for ``mode:module:app``), started as a real server subprocess.
"""

from __future__ import annotations

import concurrent.futures
import inspect
import json
import os
import re
import shlex
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

import rsgi_bridge
from rsgi_bridge.imports import TargetError, parse_wrap_call
from tests.apps.eco.myproject.main import STREAM
from tests.rawhttp import parse, raw_exchange, req
from tests.servers import PY, ROOT, Server, free_port, self_signed_cert, server_argv, wait_for
from tests.test_docs import ALL_BLOCKS, command_lines

APP = "tests.apps.oneliner_app"

# (server, app string): every form the deployment page names.
FORMS = [
    ("uvicorn", f"rsgi_bridge:wrap({APP}:app)"),
    ("uvicorn", f"rsgi_bridge:wrap({APP}:Nested.inner.app)"),
    ("uvicorn", f"rsgi_bridge:wrap('{APP}:app')"),
    ("uvicorn", f"rsgi_bridge:wrap('{APP}.app')"),
    ("daphne", f"rsgi_bridge:wrap({APP}:app)"),
    ("daphne", f"rsgi_bridge:wrap('{APP}.app')"),
    ("granian-asgi", f"rsgi_bridge:wrap({APP}:app)"),
    ("granian-asgi", f"rsgi_bridge:wrap('{APP}.app')"),
    ("gunicorn", f"rsgi_bridge:wrap('{APP}:app')"),
    ("gunicorn", f"rsgi_bridge:wrap('{APP}:Nested.inner.app')"),
    ("gunicorn", f"rsgi_bridge:wrap('{APP}.app')"),
    ("hypercorn", f"rsgi_bridge:wrap('{APP}.app')"),
    ("hypercorn", f"rsgi_bridge:wrap('{APP}.Nested.inner.app')"),
    ("hypercorn", f"asgi:rsgi_bridge:wrap('{APP}.app')"),
]


@pytest.mark.parametrize(("kind", "target"), FORMS)
def test_server_serves_the_rsgi_app_named_in_its_app_string(kind: str, target: str) -> None:
    with Server(kind, target) as s:
        r = httpx.get(f"{s.url}/here", timeout=10)
    assert r.status_code == 200
    assert r.text == "1.1 http /here ready=True"  # served through the bridge, __rsgi_init__ ran


# Options ride along where the syntax carries keywords; startup_timeout is one a user can see.
OPTION_FORMS = [
    ("uvicorn", f"rsgi_bridge:wrap({APP}:app, startup_timeout=0.3)"),
    ("uvicorn", f"rsgi_bridge:wrap('{APP}:app', startup_timeout=0.3, drain_timeout=None)"),
    ("granian-asgi", f"rsgi_bridge:wrap({APP}:app, startup_timeout=0.3)"),
    ("gunicorn", f"rsgi_bridge:wrap('{APP}:app', startup_timeout=0.3)"),
    ("hypercorn", f"rsgi_bridge:wrap('{APP}.app', startup_timeout=0.3)"),
    ("daphne", f"rsgi_bridge:wrap({APP}:app, startup_timeout=0.3)"),
]
TIMED_OUT = "did not finish within startup_timeout=0.3s"


@pytest.mark.parametrize(("kind", "target"), OPTION_FORMS)
def test_keyword_options_in_the_app_string_are_applied(kind: str, target: str) -> None:
    """A 1 s ``__rsgi_init__`` against ``startup_timeout=0.3``: startup fails, saying so.

    daphne has no lifespan: init runs at the first request, which gets a 500; daphne stays up.
    """
    s = Server(kind, target, env={"ONELINER_INIT_DELAY": "1"})
    try:
        if kind == "daphne":
            s.start()
            assert httpx.get(f"{s.url}/here", timeout=10).status_code == 500
            assert wait_for(lambda: TIMED_OUT in s.output(), timeout=5), s.output()
            return
        s.start(wait=False)
        try:
            s.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{kind} kept running after its startup failed:\n{s.output()}")
        assert TIMED_OUT in s.output()
    finally:
        s.__exit__()


@pytest.mark.parametrize("kind", ["uvicorn", "daphne"])
def test_the_same_string_without_the_option_starts(kind: str) -> None:
    """The control for the test above: the slow init alone does not fail startup."""
    with Server(kind, f"rsgi_bridge:wrap({APP}:app)", env={"ONELINER_INIT_DELAY": "1"}) as s:
        assert httpx.get(f"{s.url}/here", timeout=10).text.endswith("ready=True")


# Every option of wrap, not only those above: header_decoding and accelerate through the app
# strings that uvicorn, daphne and granian hand to rsgi_bridge (gunicorn and hypercorn call wrap).
LATIN1_REQUEST = req("GET", "/x-name", b"X-Name: caf\xe9\r\n")


@pytest.mark.parametrize(
    ("options", "x_name", "bridge"),
    [
        (", accelerate=False, header_decoding='latin-1'", "café", {"accelerate": False, "header_decoding": "latin-1"}),
        ("", None, {"accelerate": True, "header_decoding": "granian"}),  # defaults: the value left out, as Granian
    ],
    ids=["options", "defaults"],
)
@pytest.mark.parametrize("kind", ["uvicorn", "daphne", "granian-asgi"])
def test_header_decoding_and_accelerate_in_the_app_string(
    kind: str, options: str, x_name: str | None, bridge: dict[str, object]
) -> None:
    with Server(kind, f"rsgi_bridge:wrap({APP}:app{options})", env={"RSGI_BRIDGE_ACCELERATE": "1"}) as s:
        seen = parse(raw_exchange(s.port, LATIN1_REQUEST))
        bridges = httpx.get(f"{s.url}/options", timeout=10).json()
    assert seen.status == 200
    assert json.loads(seen.body) == x_name  # what the RSGI app sees of a latin-1 header value
    assert bridges == [bridge]  # the options of the one bridge the server built from its app string


@pytest.mark.parametrize(("options", "accelerated"), [(", accelerate=False", "0"), ("", "2")])
def test_accelerate_false_in_uvicorns_app_string_turns_its_accelerator_off(options: str, accelerated: str) -> None:
    """uvicorn has accelerators: with ``accelerate=False`` none of its one-write responses is used."""
    target = f"rsgi_bridge:wrap(tests.apps.accel_app:app{options})"
    env = {"RSGI_BRIDGE_ACCELERATE": "1"}
    with (
        Server("uvicorn", target, ["--http", "httptools"], env=env) as s,
        httpx.Client(base_url=s.url, timeout=10) as c,
    ):
        assert [c.get("/r/hello").text for _ in range(2)] == ["Hello, world!"] * 2
        assert c.get("/_accelerated").text == accelerated  # responses written by the accelerator


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("wrap(no_such_module_xyz:app, drain_timeout=5)", "could not import module 'no_such_module_xyz'"),
        (f"wrap({APP}:nope)", f"attribute 'nope' not found in module '{APP}'"),
        (f"wrap({APP}:app, bogus=1)", "unknown option 'bogus'"),
        (f"wrap({APP}:app, drain_timeout=__import__('os'))", "options must be name=literal"),
        (f"wrap({APP}:app, drain_timeout=-1)", "drain_timeout must be a positive number"),
        ("wrap(tests.apps.http_app:asgi)", "is an ASGI application, not an RSGI one"),
        (f"wrap({APP}:app", "is missing its closing ')'"),
    ],
)
@pytest.mark.parametrize("kind", ["uvicorn", "daphne", "granian-asgi"])
def test_a_bad_app_string_ends_the_server_with_one_clear_line(kind: str, text: str, message: str) -> None:
    argv = server_argv(kind, f"rsgi_bridge:{text}", free_port())
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    lines = [line for line in (r.stderr + r.stdout).splitlines() if line.startswith("rsgi-bridge: error:")]
    assert lines and message in lines[0], r.stderr + r.stdout
    if kind != "granian-asgi":  # granian's worker prints the traceback of a failure at its first call
        assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("kind", "target"),
    [
        ("gunicorn", "rsgi_bridge:wrap('no_such_module_xyz:app')"),
        ("hypercorn", "rsgi_bridge:wrap('no_such_module_xyz.app')"),
    ],
)
def test_servers_that_call_wrap_themselves_report_the_target_error(kind: str, target: str) -> None:
    """gunicorn and hypercorn call ``wrap`` themselves: their traceback ends with the reason."""
    r = subprocess.run(server_argv(kind, target, free_port()), cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert "TargetError: could not import module 'no_such_module_xyz'" in r.stderr + r.stdout


# wrap(import string) in-process: the same loader as the CLI and the servers.


def test_wrap_accepts_an_import_string() -> None:
    from tests.apps.oneliner_app import app

    for spec in (f"{APP}:app", f"{APP}:Nested.inner.app", f"{APP}.app", f"{APP}.Nested.inner.app"):
        assert rsgi_bridge.wrap(spec).app is app


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nocolon", "must be in the form 'module:attribute'"),
        (f"{APP}:", "must be in the form 'module:attribute'"),
        (APP, "names a module, not an attribute"),
        ("no_such_module_xyz:app", "could not import module 'no_such_module_xyz'"),
        (f"{APP}:nope", f"attribute 'nope' not found in module '{APP}'"),
        (f"{APP}.nope", f"attribute 'nope' not found in module '{APP}'"),
        (f"{APP}:time", "neither an RSGI nor an ASGI"),
    ],
)
def test_wrap_names_the_problem_with_a_bad_import_string(spec: str, message: str) -> None:
    with pytest.raises(TargetError) as info:
        rsgi_bridge.wrap(spec)
    assert isinstance(info.value, ValueError)
    assert message in str(info.value)


def test_an_import_error_inside_the_module_is_not_hidden(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "broken_mod_xyz.py"  # type: ignore[operator]
    path.write_text("import no_such_dependency_xyz\napp = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        rsgi_bridge.wrap("broken_mod_xyz:app")
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        rsgi_bridge.wrap("broken_mod_xyz.app")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("wrap(a.b:c)", ("a.b:c", {})),
        (
            "wrap( a.b:c.d , drain_timeout=2.5, interface='rsgi')",
            ("a.b:c.d", {"drain_timeout": 2.5, "interface": "rsgi"}),
        ),
        ("wrap('a.b:c', startup_timeout=None)", ("a.b:c", {"startup_timeout": None})),
    ],
)
def test_parse_wrap_call(text: str, expected: tuple[str, dict[str, object]]) -> None:
    assert parse_wrap_call(text) == expected


def test_parse_wrap_call_takes_every_keyword_option_of_wrap() -> None:
    """The app string's options are ``wrap``'s own: a new option of ``wrap`` cannot be missing here."""
    names = [p.name for p in inspect.signature(rsgi_bridge.wrap).parameters.values() if p.kind is p.KEYWORD_ONLY]
    assert {"drain_timeout", "header_decoding", "accelerate"} <= set(names)
    for name in names:
        assert parse_wrap_call(f"wrap(a.b:c, {name}=None)") == ("a.b:c", {name: None})
    with pytest.raises(TargetError, match=r"unknown option 'bogus' .*: wrap accepts drain_timeout, .*accelerate"):
        parse_wrap_call("wrap(a.b:c, bogus=1)")


@pytest.mark.parametrize(
    "text",
    [
        "wrap(a:b, **x)",
        "wrap(a:b, 5)",
        "wrap()",
        "wrap(a:b, chunk_size=1+1)",
        "wrap(a:b, x=print('x'))",
        "nope(a:b)",
        "wrap('a:b', drain_timeout=1) + wrap('c:d')",
        "wrap('a:b')('c')",
        "wrap(a:b, interface=('rsgi'))('x')",
    ],
)
def test_parse_wrap_call_reads_literals_only(text: str) -> None:
    with pytest.raises(TargetError):
        parse_wrap_call(text)


def test_other_attributes_of_the_package_are_unaffected() -> None:
    assert not hasattr(rsgi_bridge, "wrapper")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rsgi_bridge.nope  # type: ignore[attr-defined]  # noqa: B018


# --- docs/deployment.md: every command on the page, run as written (host and port, key files swapped in) ---

PAGE = ROOT / "docs" / "deployment.md"
MARKER = re.compile(r"^<!-- run by tests/test_oneliner\.py as (cmd_\S+) -->$")
ECO = ROOT / "tests" / "apps" / "eco"  # myproject.main: the app the pages name
COMMANDS = {
    "cmd_uvicorn",
    "cmd_daphne",
    "cmd_granian",
    "cmd_gunicorn",
    "cmd_hypercorn",
    "cmd_tls",
    "cmd_http2",
    "cmd_limit_concurrency",
}


def page_commands() -> dict[str, str]:
    lines = PAGE.read_text().splitlines()
    found: dict[str, str] = {}
    for i, line in enumerate(lines):
        m = MARKER.match(line.strip())
        if m:
            assert lines[i + 1] == "```bash" and lines[i + 3] == "```", f"deployment.md:{i + 2}: one command"
            found[m.group(1)] = lines[i + 2]
    return found


BLOCKS = page_commands()


def test_every_command_on_the_deployment_page_is_run() -> None:
    assert set(BLOCKS) == COMMANDS
    text = PAGE.read_text()
    bash_blocks = text.count("```bash")
    assert bash_blocks == len(COMMANDS)  # no command on the page goes untested


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    key, cert = self_signed_cert(tmp_path_factory.mktemp("tls"))
    return {"key.pem": str(key), "cert.pem": str(cert)}


def page_server(name: str, tls: dict[str, str] | None = None) -> Server:
    """The page's command ``name`` as a :class:`Server` on a free port, run with this interpreter."""
    port = free_port()
    swap = {"8000": str(port), "8443": str(port), **(tls or {})}
    argv = []
    for token in shlex.split(BLOCKS[name]):
        host, sep, p = token.rpartition(":")
        argv.append(f"{host}:{swap[p]}" if sep and host == "127.0.0.1" else swap.get(token, token))
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(ECO), str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    s = Server("uvicorn", "unused", env=env, port=port)
    s.kind, s.argv = argv[0], [PY, "-m", *argv]
    return s


@pytest.mark.parametrize("name", ["cmd_uvicorn", "cmd_daphne", "cmd_granian", "cmd_gunicorn", "cmd_hypercorn"])
def test_the_one_liner_of_each_server(name: str) -> None:
    with page_server(name) as s, httpx.Client(base_url=s.url, timeout=20) as c:
        seen = c.get("/seen").json()
        assert seen["client"].startswith("127.0.0.1:") and seen["scheme"] == "http"
        assert c.get("/users/7").text == "user 7"
        stream = c.get("/stream")
        assert stream.content == STREAM and "content-length" not in stream.headers


def test_tls_on_uvicorn(tls_files: dict[str, str]) -> None:
    ctx = ssl.create_default_context(cafile=tls_files["cert.pem"])
    with page_server("cmd_tls", tls_files) as s, httpx.Client(verify=ctx, timeout=20) as c:
        seen = c.get(f"https://127.0.0.1:{s.port}/seen").json()
    assert seen["scheme"] == "https"


def test_http2_on_hypercorn(tls_files: dict[str, str]) -> None:
    ctx = ssl.create_default_context(cafile=tls_files["cert.pem"])
    with page_server("cmd_http2", tls_files) as s, httpx.Client(verify=ctx, http2=True, timeout=20) as c:
        r = c.get(f"https://127.0.0.1:{s.port}/seen")
        assert r.http_version == "HTTP/2"
        assert r.json()["http_version"] == "2"
        assert r.json()["scheme"] == "https"
        assert c.get(f"https://127.0.0.1:{s.port}/stream").content == STREAM


def test_limit_concurrency_on_uvicorn() -> None:
    """``--limit-concurrency 2``: uvicorn counts open connections, the new one included."""
    with page_server("cmd_limit_concurrency") as s:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(httpx.get, f"{s.url}/slow?s=3", timeout=20)
            time.sleep(1)  # the slow request is being served
            over = httpx.get(f"{s.url}/users/1", timeout=10)
            assert over.status_code == 503
            assert over.text == "Service Unavailable"  # uvicorn's own answer
            assert slow.result().text == "slow done"
        assert httpx.get(f"{s.url}/users/1", timeout=10).text == "user 1"  # below the limit again


def test_the_bad_app_strings_the_deployment_page_shows() -> None:
    """The page's ``$ command`` lines, run (host and port added): each prints the line shown after it."""
    name = "test_the_bad_app_strings_the_deployment_page_shows"
    (shown,) = [b for b in ALL_BLOCKS if b.path == PAGE and b.run_as == name]
    lines = shown.code.splitlines()
    examples = [(line[2:], lines[i + 1]) for i, line in enumerate(lines) if line.startswith("$ ")]
    assert len(examples) == 2 and len(lines) == 2 * len(examples), shown.code
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ECO), str(ROOT)])}
    for command, printed in examples:
        argv = [PY, "-m", *shlex.split(command), "--host", "127.0.0.1", "--port", str(free_port())]
        r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=30, env=env)
        assert r.returncode != 0
        assert printed in r.stderr.splitlines(), r.stderr


# The README and the overview page show server commands: each one is a command a test of
# docs/deployment.md (this file) or docs/middleware.md (tests/test_ecosystem.py) runs.
SHOWN = [b for b in ALL_BLOCKS if b.run_as == "test_the_commands_shown_are_tested_ones"]
TESTED = [
    shlex.split(b.code)
    for b in ALL_BLOCKS
    if b.run_by in ("tests/test_oneliner.py", "tests/test_ecosystem.py") and b.run_as.startswith("cmd_")
]


def test_the_commands_shown_are_tested_ones() -> None:
    assert {b.path.name for b in SHOWN} == {"README.md", "index.md"}
    assert len(TESTED) == len(COMMANDS) + 1  # + cmd_proxy_headers of docs/middleware.md
    for block in SHOWN:
        for line in command_lines(block.code):
            assert shlex.split(line) in TESTED, f"{block.where}: {line!r} is not a command the tests run"
    (readme,) = [b for b in SHOWN if b.path.name == "README.md"]
    shown = set(shlex.split(readme.code, comments=True))
    assert {"--ssl-keyfile", "--proxy-headers", "--limit-concurrency", "hypercorn", "--certfile"} <= shown  # issue 15


def test_a_failing_app_module_keeps_its_traceback(tmp_path: Path) -> None:
    """Only a bad app string is one line: an error raised by the app's own module is shown in full."""
    (tmp_path / "failing_mod_xyz.py").write_text("def setup():\n    raise ValueError('module-level bug')\n\nsetup()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    argv = server_argv("uvicorn", "rsgi_bridge:wrap(failing_mod_xyz:app)", free_port())
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode != 0
    assert "Traceback" in r.stderr and "in setup" in r.stderr
    assert "ValueError: module-level bug" in r.stderr
