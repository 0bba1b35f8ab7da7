"""Every code example in README.md and docs/*.md runs, as the reader would run it.

The convention (docs/development.md, "Code examples are tested"): the line before each fenced
block, in any language, is an HTML comment, invisible on GitHub and in the built site:

- ``<!-- run -->``: the block is a script; it runs in a fresh interpreter and must exit 0.
- ``<!-- run pytest -->``: the block is a test module (named by a first line ``# name.py``); pytest
  runs it in an empty directory and every test must pass (no test collected is a failure).
- ``with="..."``: code run before the block (what the page assumes already exists);
  ``then="..."``: code run after it, which uses what the block built (``tests/docs/doccheck.py``
  has helpers that serve an app the block made); statements are separated by ``; ``;
  ``group="name"``: the ``run pytest`` blocks of a page with the same group go into one directory
  (a ``conftest.py`` and the tests that use it); ``args="..."``: extra pytest arguments.
- ``<!-- run by tests/test_x.py as NAME -->``: another test file runs the block (a shell command, a
  config, a recipe), finding it by ``NAME``: the file must exist and contain ``NAME`` and the page's
  file name. Without ``as NAME``, the file must contain each command line of the block.
- ``<!-- not run: reason -->``: the block is not executed, for the reason given.

An unmarked block fails ``test_every_block_is_marked``. ``from myproject import ...``
resolves to ``tests/docs/myproject``, small apps standing in for the reader's project.
Besides the python blocks, this file runs the quick-start commands of the README and the
overview page and the uvicorn log config of the lifecycle page against real servers.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.servers import PY, ROOT, Server, free_port

DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MYPROJECT = ROOT / "tests" / "docs"
PYTHON_LANGS = {"python", "py"}
MARK = re.compile(r"^<!--\s*(run by|run|not run)\b(.*?)-->\s*$")
RUN_BY = re.compile(r"^(tests/test_\w+\.py)(?:\s+as\s+(\S+))?$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)(.*)$")
ATTR = re.compile(r'(\w+)="([^"]*)"')
ATTRS = {"with", "then", "group", "args"}


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    mark: str | None = None  # the marker comment's text, None when the block is unmarked
    problems: list[str] = field(default_factory=list)
    mode: str = ""  # "script", "pytest", "run by" or "not run"
    attrs: dict[str, str] = field(default_factory=dict)
    run_by: str = ""  # "run by": the test file that runs the block
    run_as: str = ""  # "run by ... as NAME": the name that file finds the block by

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def parse_mark(block: Block, text: str) -> None:
    m = MARK.match(text.strip())
    assert m is not None
    kind, rest = m.group(1), m.group(2).strip()
    block.mark = text.strip()
    if kind == "not run":
        reason = rest.removeprefix(":").strip()
        block.mode = "not run"
        if not rest.startswith(":") or not reason:
            block.problems.append("'not run' needs a reason: <!-- not run: why -->")
        return
    if kind == "run by":
        block.mode = "run by"
        m = RUN_BY.match(rest)
        if m is None:
            block.problems.append("cannot read the marker: write <!-- run by tests/test_x.py as NAME -->")
            return
        block.run_by, block.run_as = m.group(1), m.group(2) or ""
        test_file = ROOT / block.run_by
        text = test_file.read_text() if test_file.is_file() else ""
        if not text:
            block.problems.append(f"{block.run_by} does not exist")
        elif block.run_as:  # the test finds the block on this page by its name
            if missing := [word for word in (block.run_as, block.path.name) if word not in text]:
                block.problems.append(f"{block.run_by} never mentions {', '.join(missing)}: it cannot run this block")
        elif missing := [line for line in command_lines(block.code) if line not in text]:
            block.problems.append(f"{block.run_by} does not contain {missing}: it cannot run this block")
        return
    block.mode = "script"
    if rest.startswith("pytest"):
        block.mode, rest = "pytest", rest.removeprefix("pytest").strip()
    block.attrs = dict(ATTR.findall(rest))
    if ATTR.sub("", rest).strip():
        block.problems.append(f"cannot read the marker {block.mark!r}")
    if unknown := set(block.attrs) - ATTRS:
        block.problems.append(f"unknown marker attribute(s) {sorted(unknown)}")
    if block.lang not in PYTHON_LANGS:
        block.problems.append(f"only python blocks are run, this one is {block.lang or 'plain'!r}")


def command_lines(code: str) -> list[str]:
    """The lines of a shell block that are commands (not blank, not a comment)."""
    return [line.strip() for line in code.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a markdown file, with the marker comment that precedes each."""
    lines = path.read_text().split("\n")
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.group(1), m.group(2), m.group(3).lower()
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not re.match(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[i]):
            body.append(lines[i].removeprefix(indent))
            i += 1
        i += 1
        block = Block(path, start + 1, lang, "\n".join(body) + "\n")
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        if before >= 0 and MARK.match(lines[before].strip()):
            parse_mark(block, lines[before])
        found.append(block)
    return found


ALL_BLOCKS = [b for path in DOC_FILES for b in blocks(path)]


def test_the_docs_have_python_examples() -> None:
    """The parser sees the pages' blocks (a broken parser must not make every other test vacuous)."""
    python = [b for b in ALL_BLOCKS if b.lang in PYTHON_LANGS]
    assert len(python) >= 10
    assert {b.path.name for b in python} >= {"README.md", "index.md", "testing.md", "servers.md", "lifecycle.md"}
    assert {b.lang for b in ALL_BLOCKS} >= {"bash", "json", "yaml", "text"}  # and the others


def test_every_block_is_marked() -> None:
    """Every fenced block, in any language, says how it runs (or why it does not)."""
    problems = [f"{b.where}: {p}" for b in ALL_BLOCKS for p in b.problems]
    problems += [
        f"{b.where}: {b.lang or 'plain'} block without <!-- run -->, <!-- run by tests/test_x.py as NAME --> "
        "or <!-- not run: reason --> on the line before it"
        for b in ALL_BLOCKS
        if b.mark is None
    ]
    for path in DOC_FILES:  # a marker must stand right before a block (a typo'd fence would hide it)
        lines = path.read_text().split("\n")
        marked = {b.line for b in ALL_BLOCKS if b.path == path and b.mark is not None}
        for n, text in enumerate(lines, 1):
            if MARK.match(text.strip()):
                nxt = next((k for k in range(n, len(lines)) if lines[k].strip()), None)
                if nxt is None or nxt + 1 not in marked:
                    problems.append(f"{path.relative_to(ROOT)}:{n}: marker not followed by a fenced block")
    assert not problems, "\n".join(problems)


def cases() -> list[pytest.param]:
    out: list[pytest.param] = []
    groups: dict[tuple[Path, str], list[Block]] = {}
    for b in ALL_BLOCKS:
        if b.mode == "script":
            out.append(pytest.param([b], id=b.where))
        elif b.mode == "pytest":
            key = (b.path, b.attrs.get("group") or f"line {b.line}")
            if key not in groups:
                groups[key] = []
                out.append(pytest.param(groups[key], id=b.where))
            groups[key].append(b)
    return out


def run(argv: list[str], cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": f"{MYPROJECT}:{ROOT}", "PYTHONDONTWRITEBYTECODE": "1", "PATH": str(Path(PY).parent)}
    env.update({k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "TMPDIR")})
    env.update(extra_env or {})
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def source(block: Block) -> str:
    setup = block.attrs.get("with", "").replace("; ", "\n")
    check = block.attrs.get("then", "").replace("; ", "\n")
    return f"{setup}\n{block.code}\n{check}\n" if setup or check else block.code


def prepare(group: list[Block], where: Path) -> list[str]:
    """Write the example's files into ``where``; the command that runs it there."""
    first = group[0]
    if first.mode == "script":
        (where / "example.py").write_text(source(first))
        return [PY, "example.py"]
    (where / "pytest.ini").write_text("[pytest]\n")  # the reader's defaults, not this project's options
    for n, b in enumerate(group):
        m = re.match(r"#\s*(\S+\.py)\b", b.code)
        (where / (m.group(1) if m else f"test_example_{n}.py")).write_text(source(b))
    # Only the plugins the examples use (autoloading every installed plugin costs ~3 s per run).
    plugins = ["-p", "pytest_asyncio.plugin", "-p", "pytest_timeout", "-p", "no:cacheprovider"]
    return [PY, "-m", "pytest", "-q", *plugins, "--timeout", "30", *shlex.split(first.attrs.get("args", ""))]


@pytest.fixture(scope="module")
def results(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[subprocess.CompletedProcess[str]]]]:
    """The selected examples started at once (each in its own directory and interpreter), awaited by their tests."""
    selected = [
        item.callspec.params["group"]
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.originalname == "test_example_runs"
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {}
        for group in selected:
            where = tmp_path_factory.mktemp("example")
            argv = prepare(group, where)
            futures[group[0].where] = pool.submit(run, argv, where, {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
        yield futures


@pytest.mark.parametrize("group", cases())
def test_example_runs(group: list[Block], results: dict[str, Future[subprocess.CompletedProcess[str]]]) -> None:
    r = results[group[0].where].result(timeout=90)
    where = ", ".join(b.where for b in group)
    assert r.returncode == 0, f"{where}: exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    if group[0].mode == "pytest":
        assert re.search(r"\d+ passed", r.stdout) and "skipped" not in r.stdout, r.stdout


# The README and the overview page (index.md) show the same quick start.
QUICK_START_PAGES = [ROOT / "README.md", ROOT / "docs" / "index.md"]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def quick_start(page: Path) -> list[Block]:
    """The page's two quick-start blocks: install an extra, then serve the example / run the suite."""
    found = [b for b in ALL_BLOCKS if b.path == page and b.code.startswith('pip install -e ".[')]
    assert len(found) == 2, f"{page.name}: the quick start is two blocks, found {len(found)}"
    return found


def test_the_readme_starts_with_the_quick_start() -> None:
    readme = QUICK_START_PAGES[0]
    assert [b for b in ALL_BLOCKS if b.path == readme][:2] == quick_start(readme)


@pytest.mark.parametrize("page", QUICK_START_PAGES, ids=lambda p: p.name)
def test_quick_start_installs_existing_extras(page: Path) -> None:
    extras = PROJECT["optional-dependencies"]
    serve, test = quick_start(page)
    assert serve.lang == test.lang == "bash"
    for block, extra, command in ((serve, "server", "rsgi-bridge"), (test, "test", "python -m pytest")):
        install, run_it = (part.strip() for part in block.code.strip().split("&&"))
        assert install == f'pip install -e ".[{extra}]"' and extra in extras, block.code
        assert run_it.startswith(command), block.code


def test_quick_start_venv_step(tmp_path: Path) -> None:
    """The step before the quick start, as written, makes a venv whose pip installs there (a system
    Python may refuse, PEP 668); the pages name the Python the project requires."""
    minimum = PROJECT["requires-python"].removeprefix(">=")
    steps = set()
    for page in QUICK_START_PAGES:
        text = page.read_text()
        assert f"Python ≥ {minimum}" in text, page.name
        steps.update(re.findall(r"`(python3 -m venv [^`]*)`", text))
    (venv,) = steps  # one step, the same on both pages
    required = tuple(int(n) for n in minimum.split("."))
    script = f"{venv} && command -v pip && python -c 'import sys; print(sys.version_info >= {required})'"
    env = {"PATH": f"{Path(PY).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    r = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(tmp_path / ".venv" / "bin" / "pip"), "True"], r.stdout


@pytest.mark.parametrize("page", QUICK_START_PAGES, ids=lambda p: p.name)
def test_quick_start_serves_the_example(page: Path) -> None:
    """The quick start's first command, as written (only the port changed), serves examples/hello.py."""
    argv = shlex.split(quick_start(page)[0].code.split("&&")[1])
    assert argv[0] == "rsgi-bridge" and argv[argv.index("--port") + 1] == "8000", argv
    port = free_port()
    argv[argv.index("--port") + 1] = str(port)
    script = Path(PY).parent / "rsgi-bridge"
    argv[:1] = [str(script)] if script.exists() else [PY, "-m", "rsgi_bridge"]
    server = Server("rsgi-bridge", "examples.hello:app", port=port)
    server.argv = argv
    with server, httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.get("/").text == "Hello, world!"
    assert server.returncode == 0, server.output()


def test_lifecycle_log_config_shows_the_bridge_lines_on_uvicorn(tmp_path: Path) -> None:
    """docs/lifecycle.md's JSON log config, given to uvicorn, shows the bridge's INFO lines."""
    (config,) = [b for b in ALL_BLOCKS if b.path.name == "lifecycle.md" and b.lang == "json"]
    path = tmp_path / "logging.json"
    path.write_text(json.dumps(json.loads(config.code)))
    with Server("uvicorn", "examples.hello:asgi_app", ["--log-config", str(path)]) as server:
        httpx.get(server.url, timeout=10).raise_for_status()
    out = server.output()
    assert "__rsgi_init__ done in" in out and "__rsgi_del__ done in" in out, out
    assert "INFO" in out, out


if __name__ == "__main__":  # list the blocks and their markers
    for b in ALL_BLOCKS:
        print(b.where, b.lang, b.mode or "-", b.attrs or "", file=sys.stderr)
