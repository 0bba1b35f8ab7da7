"""CI sessions: the test suite once per supported Python, lint and type-check once.

``nox -s tests-3.12`` runs the README's test command (``python -m pytest``) in a fresh venv of
that interpreter with the test extra installed; ``nox -s lint`` runs ruff and mypy. ``.ci/run``
calls them all. A missing interpreter is an error, never a skip.
"""

from __future__ import annotations

import nox

PYTHONS = ["3.11", "3.12", "3.13"]  # keep in step with requires-python and the classifiers

nox.needs_version = ">=2024.10.9"  # reuse_venv
nox.options.sessions = ["lint", "docs", *(f"tests-{python}" for python in PYTHONS), "uvicorn-oldest"]
nox.options.error_on_missing_interpreters = True
nox.options.reuse_venv = "yes"  # a local rerun reuses its venvs; a fresh clone creates them
nox.options.default_venv_backend = "uv|virtualenv"  # uv when installed (as .ci/run does): much faster


# -- issue 16: server accelerators (rsgi_bridge/servers/) ---------------------------------------
# The suite must pass with every accelerator off as well as on. A fourth whole run would not fit
# CI's time, so one of the three Python sessions runs with them off (RSGI_BRIDGE_ACCELERATE=0; the
# server subprocesses inherit it) and the other two with them on. tests/test_accelerator.py sets
# the variable per server itself (so does tests/test_accelerator_ws.py), so they compare both paths in
# every session.
ACCELERATORS_OFF = "3.12"
# The oldest uvicorn the accelerator's guards accept and the suite supports (pyproject.toml's floor).
UVICORN_OLDEST = "0.53.0"


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite on one interpreter (extra pytest arguments after ``--``)."""
    session.install("-e", ".[test]")
    env = {"RSGI_BRIDGE_ACCELERATE": "0"} if session.python == ACCELERATORS_OFF else {}
    session.run("python", "-m", "pytest", *session.posargs, env=env)


@nox.session(name="uvicorn-oldest", python=PYTHONS[0])
def uvicorn_oldest(session: nox.Session) -> None:
    """uvicorn's bytes with and without the bridge's accelerators, on the oldest supported uvicorn (~20 s)."""
    session.install("-e", ".[test]", f"uvicorn[standard]=={UVICORN_OLDEST}")
    session.run("python", "-m", "pytest", "tests/test_accelerator.py", "tests/test_accelerator_ws.py", *session.posargs)


@nox.session(python=PYTHONS[0])
def lint(session: nox.Session) -> None:
    """ruff and mypy (strict), as in the README's Development section."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", "rsgi_bridge", "tests", "examples", "benchmarks", "noxfile.py")
    session.run("mypy", "rsgi_bridge")


@nox.session(python=PYTHONS[0])
def docs(session: nox.Session) -> None:
    """The docs site, built as CI builds it: every warning (a broken link or anchor) is an error."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "-q", "-d", session.create_tmp(), env={"NO_MKDOCS_2_WARNING": "1"})
