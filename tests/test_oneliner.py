"""The one-line deployment: ``rsgi_bridge:wrap(module:app)`` in each server's own app string.

Each form is what that server's loader accepts (read from its source: uvicorn, daphne and Granian
look up dotted attributes; gunicorn calls ``name(literals)``; hypercorn evaluates an expression and
takes two colons for ``mode:module:app``), started as a real server subprocess.
"""

from __future__ import annotations

import subprocess

import httpx
import pytest

import rsgi_bridge
from rsgi_bridge.imports import TargetError, parse_wrap_call
from tests.servers import ROOT, Server, free_port, server_argv

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
]


@pytest.mark.parametrize(("kind", "target"), OPTION_FORMS)
def test_keyword_options_in_the_app_string_are_applied(kind: str, target: str) -> None:
    """A 1 s ``__rsgi_init__`` against ``startup_timeout=0.3``: startup fails, saying so."""
    s = Server(kind, target, env={"ONELINER_INIT_DELAY": "1"})
    try:
        s.start(wait=False)
        try:
            s.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{kind} kept running after its startup failed:\n{s.output()}")
        assert "did not finish within startup_timeout=0.3s" in s.output()
    finally:
        s.__exit__()


def test_the_same_string_without_the_option_starts() -> None:
    """The control for the test above: the slow init alone does not fail startup."""
    with Server("uvicorn", f"rsgi_bridge:wrap({APP}:app)", env={"ONELINER_INIT_DELAY": "1"}) as s:
        assert httpx.get(s.url, timeout=10).text.endswith("ready=True")


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


@pytest.mark.parametrize(
    "text",
    ["wrap(a:b, **x)", "wrap(a:b, 5)", "wrap()", "wrap(a:b, chunk_size=1+1)", "wrap(a:b, x=print('x'))", "nope(a:b)"],
)
def test_parse_wrap_call_reads_literals_only(text: str) -> None:
    with pytest.raises(TargetError):
        parse_wrap_call(text)


def test_other_attributes_of_the_package_are_unaffected() -> None:
    assert not hasattr(rsgi_bridge, "wrapper")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rsgi_bridge.nope  # type: ignore[attr-defined]  # noqa: B018
