"""Import strings: ``module:attribute`` naming an RSGI app, and ``wrap(...)`` in a server's app string.

:func:`load_target` resolves an import string and checks it names an RSGI application; the
``rsgi-bridge`` command, ``wrap("module:attribute")`` and the servers' app strings all use it.
:func:`parse_wrap_call` reads the text ``wrap(module:attribute, option=literal, ...)`` that
uvicorn, daphne and Granian hand to ``rsgi_bridge``'s attribute lookup: the target is a name, every
option a Python literal (``ast.literal_eval``); nothing is ever evaluated.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import sys
from typing import Any

from .bridge import detect_interface, wrap

__all__ = ["WRAP_OPTIONS", "TargetError", "load_target", "parse_wrap_call"]

WRAP_OPTIONS = tuple(p.name for p in inspect.signature(wrap).parameters.values() if p.kind is p.KEYWORD_ONLY)
"""The keyword options of :func:`rsgi_bridge.wrap`, the only names an app string may set (read from its signature)."""


class TargetError(ValueError):
    """The import string does not name an RSGI application (the message says why)."""


def _import(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise TargetError(f"could not import module {module_name!r}: {exc}") from exc
        raise  # the module exists but failed to import: its own traceback is the useful one


def _import_dotted(spec: str) -> tuple[Any, str, list[str]]:
    """``pkg.mod.attr``: import the longest importable module prefix (as ``pkgutil.resolve_name``)."""
    parts = spec.split(".")
    module_name = parts[0]
    module = _import(module_name)
    i = 1
    while i < len(parts):
        candidate = f"{module_name}.{parts[i]}"
        try:
            module = importlib.import_module(candidate)
        except ModuleNotFoundError as exc:
            if exc.name != candidate:
                raise
            break
        module_name = candidate
        i += 1
    return module, module_name, parts[i:]


def load_target(spec: str) -> Any:
    """Import ``module:attribute`` (attribute may be dotted) and check it is an RSGI app.

    Where a server's syntax cannot carry a colon (hypercorn), ``module.attribute`` is accepted too:
    the longest importable prefix is the module, the rest attributes. Raises :class:`TargetError`
    naming the problem.
    """
    if not isinstance(spec, str):
        raise TypeError(f"an import string must be a str, not {type(spec).__name__}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, sep, attr = spec.partition(":")
    if sep:
        if not module_name or not attr:
            raise TargetError(f"import string {spec!r} must be in the form 'module:attribute'")
        module = _import(module_name)
        names = attr.split(".")
    else:
        if "." not in spec or not all(spec.split(".")):
            raise TargetError(f"import string {spec!r} must be in the form 'module:attribute'")
        module, module_name, names = _import_dotted(spec)
        attr = ".".join(names)
        if not names:
            raise TargetError(f"import string {spec!r} names a module, not an attribute: use 'module:attribute'")
    obj: Any = module
    for part in names:
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"attribute {attr!r} not found in module {module_name!r}") from None
    try:
        kind = detect_interface(obj)
    except TypeError as exc:
        raise TargetError(str(exc)) from None
    if kind != "rsgi" and not (hasattr(obj, "__rsgi_init__") or hasattr(obj, "__rsgi_del__")):
        raise TargetError(f"{spec!r} is an ASGI application, not an RSGI one: serve it with an ASGI server directly")
    return obj


def parse_wrap_call(text: str) -> tuple[str, dict[str, Any]]:
    """``wrap(mod:app, drain_timeout=5)`` -> ``("mod:app", {"drain_timeout": 5})``.

    The target may be quoted or bare (an import string has no comma or parenthesis); the options
    are keyword arguments whose values are Python literals. Raises :class:`TargetError`.
    """
    if not text.startswith("wrap(") or not text.endswith(")"):
        raise TargetError(f"{text!r} must be in the form 'wrap(module:attribute, option=value, ...)'")
    inner = text[len("wrap(") : -1].strip()
    if inner[:1] in ("'", '"'):
        call = f"f({inner})"
    else:
        target, _, rest = inner.partition(",")
        call = f"f({target.strip()!r}, {rest})"
    options: dict[str, Any] = {}
    try:
        node = ast.parse(call, mode="eval").body
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "f"):
            raise TargetError(f"{text!r} must be one call: 'wrap(module:attribute, option=value, ...)'")
        args = [ast.literal_eval(a) for a in node.args]
        for kw in node.keywords:
            if kw.arg not in WRAP_OPTIONS:
                known = ", ".join(WRAP_OPTIONS)
                raise TargetError(f"unknown option {kw.arg or '**'!r} in {text!r}: wrap accepts {known}")
            options[kw.arg] = ast.literal_eval(kw.value)
    except (SyntaxError, ValueError, TypeError) as exc:
        if isinstance(exc, TargetError):
            raise
        raise TargetError(
            f"cannot read {text!r}: options must be name=literal (a number, a string, True/False, None)"
        ) from None
    if len(args) != 1 or not isinstance(args[0], str) or not args[0]:
        raise TargetError(f"{text!r} must name one RSGI app as 'module:attribute', then options as name=value")
    return args[0], options


def _fail(problem: object) -> SystemExit:
    """A bad app string, found while a server imports it: one line on stderr, the process exits."""
    return SystemExit(f"rsgi-bridge: error: {problem}")


def _complete(text: str) -> bool:
    return text.endswith(")") and text.count("(") == text.count(")")


def app_string_attribute(text: str) -> Any:
    """``getattr(rsgi_bridge, text)`` for a ``text`` starting with ``wrap(``.

    uvicorn, daphne and Granian resolve ``rsgi_bridge:wrap(myproject.main:app)`` by splitting the
    part after the colon on dots and looking each piece up in turn: ``wrap(myproject``, then
    ``main:app)``. The pieces are joined back until the parentheses close; then the call is read
    (literals only) and the bridge built. A bad string ends the server with one line naming the problem.
    """
    if not _complete(text):
        return _PendingWrap(text)
    try:
        target, options = parse_wrap_call(text)
        app = load_target(target)  # the module's own import errors keep their traceback
    except TargetError as exc:
        raise _fail(exc) from None
    try:
        return wrap(app, **options)
    except (TypeError, ValueError) as exc:  # an option's value
        raise _fail(exc) from None


class _PendingWrap:
    """``wrap(...`` looked up so far, waiting for the next dotted piece of the app string."""

    __slots__ = ("_shown", "_text")

    def __init__(self, text: str, shown: str | None = None) -> None:
        self._text = text
        self._shown = shown or text  # what the error names: the string up to its target, not a server's probes

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        text = f"{self._text}.{name}"
        if not _complete(text):
            return _PendingWrap(text, self._shown if ":" in self._text else text)
        return app_string_attribute(text)

    def _unfinished(self) -> SystemExit:
        shown = f"rsgi_bridge:{self._shown}"
        return _fail(f"{shown!r} is missing its closing ')': write 'rsgi_bridge:wrap(module:attribute)'")

    # A server probing the app it loaded (is it callable? a flag set?): the string ended too soon.
    @property
    def __call__(self) -> Any:
        raise self._unfinished()

    def __bool__(self) -> bool:
        raise self._unfinished()

    def __repr__(self) -> str:
        return f"<rsgi_bridge app string {self._text!r}: unfinished>"
