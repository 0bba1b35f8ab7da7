"""Property tests (hypothesis, in-process, no sockets).

1. Any ASGI HTTP/websocket scope a server can produce becomes an RSGI scope whose every
   attribute reads without raising, with the documented types and values, and whose headers
   round-trip preserving order and repetition (latin-1, lossless).
2. The same random scopes served end to end through ``wrap(...)`` with asgiref's
   ``ApplicationCommunicator``: the app sees the same values.
3. Any response header list is either accepted and appears on ``http.response.start`` exactly
   (lower-cased name, UTF-8 value) or raises ``ValueError``/``TypeError`` in the app, which then
   answers a bare 500: CR, LF, NUL and the other control characters but HTAB never reach the server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import urllib.parse
from typing import Any

from asgiref.testing import ApplicationCommunicator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rsgi_bridge import Headers, Scope, wrap

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

# -- scopes ---------------------------------------------------------------------------------

# Header names: lower-case bytes as servers deliver them; a small pool makes repetition likely.
_common = st.sampled_from([b"host", b"x-a", b"cookie", b"accept", b"content-type", b":authority"])
header_names = st.one_of(_common, st.binary(min_size=1, max_size=12).map(bytes.lower))
header_values = st.binary(max_size=40)  # any bytes, most of them not UTF-8
headers = st.lists(st.tuples(header_names, header_values), max_size=16)

no_surrogates = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
raw_bytes_path = st.binary(max_size=30).map(lambda b: "/" + urllib.parse.unquote(urllib.parse.quote(b)))
latin1_path = st.binary(max_size=30).map(lambda b: "/" + b.decode("latin-1"))
paths = st.one_of(no_surrogates.map(lambda t: "/" + t), raw_bytes_path, latin1_path, no_surrogates)

ports = st.integers(0, 65535)
ipv4 = st.tuples(st.ip_addresses(v=4).map(str), ports)
ipv6 = st.tuples(st.ip_addresses(v=6).map(str), ports)
unix = st.tuples(st.text(st.characters(exclude_categories=["Cs"]), max_size=20).map(lambda p: "/tmp/" + p), st.none())
addresses = st.one_of(st.none(), ipv4, ipv6, unix)

HTTP_VERSIONS = {"1.0": "1", "1.1": "1.1", "2": "2", "3": "3"}
methods = st.one_of(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
    st.from_regex(r"[A-Za-z]{1,10}", fullmatch=True),
)


@st.composite
def asgi_scopes(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["http", "websocket"]))
    path = draw(paths)
    root = draw(
        st.one_of(
            st.just(""),
            st.integers(0, len(path)).map(lambda n: path[:n]),  # a prefix, as uvicorn's --root-path
            no_surrogates.map(lambda t: "/" + t),
        )
    )
    scope: dict[str, Any] = {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": draw(st.sampled_from(list(HTTP_VERSIONS))),
        "scheme": draw(st.sampled_from(["http", "https"] if kind == "http" else ["ws", "wss"])),
        "path": path,
        "raw_path": draw(st.binary(max_size=30)),
        "root_path": root,
        "query_string": draw(st.binary(max_size=40)),
        "headers": draw(headers),
        "client": draw(addresses),
        "server": draw(addresses),
    }
    if kind == "http":
        scope["method"] = draw(methods)
    return scope


def _addr(addr: Any) -> str:
    """The RSGI address string, written out independently of the bridge."""
    if addr is None:
        return ""
    host, port = addr
    if port is None:
        return str(host)
    if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _expected_path(path: str, root: str) -> str:
    if root and path.startswith(root):
        rest = path[len(root) :]
        if not rest:
            return "/"
        if rest.startswith("/"):
            return rest
    return path


VISIBLE = re.compile(rb"[\t\x20-\x7e]*")


def shown_pairs(raw: list[tuple[bytes, bytes]], latin1: bool) -> list[tuple[str, str]]:
    """The (name, value) pairs RSGI headers show, as Granian: a repeated name's values together (names in
    first-seen order), values that are not visible ASCII left out."""
    grouped: dict[bytes, list[bytes]] = {}
    for n, v in raw:
        grouped.setdefault(n, []).append(v)
    pairs = [(n, v) for n, vs in grouped.items() for v in vs]
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in pairs if latin1 or VISIBLE.fullmatch(v)]


def check_headers(h: Any, raw: list[tuple[bytes, bytes]], latin1: bool = False) -> None:
    pairs = shown_pairs(raw, latin1)
    names = list(dict.fromkeys(n.decode("latin-1") for n, _ in raw))  # every name, whatever its values
    assert h.items() == pairs  # order and repetition kept
    assert all(type(n) is str and type(v) is str for n, v in h.items())
    assert list(h.keys()) == names and list(h) == names
    assert h.values() == [v for _, v in pairs]
    assert len(h) == len(names)
    for name in names:
        values = [v for n, v in pairs if n == name]
        assert h.get_all(name) == values
        first = next(v for n, v in raw if n.decode("latin-1") == name)
        if latin1 or VISIBLE.fullmatch(first):  # get(): the first value, unless it is hidden (as Granian)
            assert h.get(name) == values[0] and h[name] == values[0]
        else:
            assert h.get(name, "dflt") == "dflt"
        assert name in h
    assert h.get("x-never-sent-\x00", "dflt") == "dflt"
    assert "x-never-sent-\x00" not in h


def check_scope(s: Scope, asgi: dict[str, Any]) -> None:
    proto = "http" if asgi["type"] == "http" else "ws"
    assert s.proto == proto
    assert s.rsgi_version == "1.6"
    assert s.http_version == HTTP_VERSIONS[asgi["http_version"]]
    assert s.scheme == ("https" if asgi["scheme"] in ("https", "wss") else "http")
    assert s.method == asgi.get("method", "GET") and type(s.method) is str  # as sent, as Granian
    assert s.path == _expected_path(asgi["path"], asgi["root_path"]) and type(s.path) is str
    assert s.query_string == asgi["query_string"].decode("latin-1")
    assert s.client == _addr(asgi["client"]) and s.server == _addr(asgi["server"])
    assert isinstance(s.client.split(":")[0], str)  # what frameworks do with it
    check_headers(s.headers, asgi["headers"])
    if s.http_version in ("1", "1.1"):
        assert s.authority is None
    else:
        # HTTP/2 and 3: the host header (ASGI servers turn :authority into it), else :authority
        # get() semantics: the first value of the name, unless that one is hidden
        host = [v.decode("latin-1") for n, v in asgi["headers"] if n == b"host"][:1]
        auth = [v.decode("latin-1") for n, v in asgi["headers"] if n == b":authority"][:1]
        host = [v for v in host if VISIBLE.fullmatch(v.encode("latin-1"))]
        auth = [v for v in auth if VISIBLE.fullmatch(v.encode("latin-1"))]
        assert s.authority == ((host[0] if host else None) or (auth[0] if auth else None))
    assert isinstance(repr(s), str)


@SETTINGS
@given(asgi_scopes())
def test_any_asgi_scope_becomes_a_readable_rsgi_scope(asgi: dict[str, Any]) -> None:
    check_scope(Scope(asgi, "http" if asgi["type"] == "http" else "ws"), asgi)


@SETTINGS
@given(st.lists(st.tuples(st.binary(max_size=12).map(bytes.lower), st.binary(max_size=24)), max_size=30))
def test_headers_round_trip_any_bytes(raw: list[tuple[bytes, bytes]]) -> None:
    # any bytes, names lower-cased (ASCII) as every ASGI server delivers them
    h = Headers(raw)
    check_headers(h, raw)
    check_headers(Headers(raw, latin1=True), raw, latin1=True)  # the opt-in: every value, lossless
    # lookups are case-insensitive for ASCII names (servers deliver names lower-cased)
    for n, _ in raw:
        name = n.decode("latin-1")
        if name.isascii() and name == name.lower():
            assert h.get_all(name.upper()) == h.get_all(name)


# -- the same scopes served through the bridge ----------------------------------------------------


def _dump(scope: Any) -> dict[str, Any]:
    return {
        "proto": scope.proto,
        "http_version": scope.http_version,
        "scheme": scope.scheme,
        "method": scope.method,
        "path": scope.path,
        "query_string": scope.query_string,
        "client": scope.client,
        "server": scope.server,
        "authority": scope.authority,
        "items": scope.headers.items(),
    }


async def _dump_app(scope: Any, protocol: Any) -> None:
    protocol.response_str(200, [("content-type", "application/json")], json.dumps(_dump(scope)))


async def _serve(asgi: dict[str, Any]) -> list[dict[str, Any]]:
    comm = ApplicationCommunicator(wrap(_dump_app), asgi)
    await comm.send_input({"type": "http.request", "body": b"", "more_body": False})
    out = [await comm.receive_output(5), await comm.receive_output(5)]
    await comm.wait(5)
    return out


@settings(max_examples=150, deadline=None, database=None)
@given(asgi_scopes().filter(lambda s: s["type"] == "http"))
def test_any_asgi_http_scope_served_through_the_bridge(asgi: dict[str, Any]) -> None:
    start, body = asyncio.run(_serve(asgi))
    assert start["type"] == "http.response.start" and start["status"] == 200, start
    if asgi["method"] == "HEAD":  # no body bytes for HEAD, as Granian
        assert body["body"] == b"", body
        return
    seen = json.loads(body["body"])
    s = Scope(asgi, "http")
    assert seen == json.loads(json.dumps(_dump(s)))
    assert seen["items"] == [list(p) for p in shown_pairs(asgi["headers"], latin1=False)]


# -- response headers -------------------------------------------------------------------------------

TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
any_text = st.text(st.characters(), max_size=12)  # any code point but lone surrogates
tricky_text = st.text(
    st.sampled_from(["a", "B", "-", " ", ":", "\r", "\n", "\x00", "\t", "\x01", "\x1f", "\x7f", "é", "€", "\ud800"]),
    max_size=8,
)
header_name_str = st.one_of(st.from_regex(TOKEN, fullmatch=True), any_text, tricky_text)
header_value_str = st.one_of(any_text, tricky_text, st.text(max_size=40))
response_headers = st.one_of(
    st.lists(st.tuples(header_name_str, header_value_str), max_size=8),
    st.lists(st.tuples(header_name_str, header_value_str), max_size=8).map(tuple),
)


CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # RFC 9110: no control character but HTAB in a value


def _valid(headers: Any) -> bool:
    for name, value in headers:
        if TOKEN.fullmatch(name) is None or CONTROL.search(value):
            return False
        try:
            value.encode()
        except UnicodeEncodeError:  # a lone surrogate cannot go on the wire
            return False
    return True


async def _respond(headers: Any) -> tuple[BaseException | None, dict[str, Any], dict[str, Any]]:
    raised: list[BaseException] = []

    async def app(scope: Any, protocol: Any) -> None:
        try:
            protocol.response_bytes(200, headers, b"x")
        except Exception as exc:
            raised.append(exc)
            raise

    comm = ApplicationCommunicator(wrap(app), {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/", "raw_path": b"/", "root_path": "", "query_string": b"", "headers": [],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
    })  # fmt: skip
    await comm.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await comm.receive_output(5)
    body = await comm.receive_output(5)
    await comm.wait(5)
    return (raised[0] if raised else None), start, body


@settings(max_examples=400, deadline=None, database=None)
@given(response_headers)
def test_response_headers_exact_or_refused(headers: Any) -> None:
    exc, start, body = asyncio.run(_respond(headers))
    for name, value in start["headers"]:
        assert not re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", name + value), start  # CR, LF, NUL and co never pass
    if _valid(headers):
        assert exc is None, exc
        want = [(n.lower().encode("ascii"), v.encode("utf-8")) for n, v in headers]
        if not any(n == b"content-length" for n, _ in want):
            want.append((b"content-length", b"1"))
        assert start == {"type": "http.response.start", "status": 200, "headers": want}
        assert body["body"] == b"x"
    else:
        assert isinstance(exc, (ValueError, TypeError)), exc
        # nothing of the refused response: a bare 500
        assert start["status"] == 500 and start["headers"] == [(b"content-length", b"0")]
        assert body["body"] == b""


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.one_of(
        st.dictionaries(any_text, any_text, max_size=3),
        st.lists(st.one_of(st.lists(any_text, min_size=2, max_size=2), st.tuples(st.binary(), st.binary()),
                           st.tuples(any_text), st.tuples(any_text, any_text, any_text),
                           st.tuples(any_text, st.integers())), min_size=1, max_size=3),
        st.text(max_size=5),
        st.none(),
        st.integers(),
    )
)  # fmt: skip
def test_malformed_header_containers_are_type_errors(headers: Any) -> None:
    exc, start, _ = asyncio.run(_respond(headers))
    assert isinstance(exc, (TypeError, ValueError)), (headers, exc)
    # a dict (even an empty one), a str, None, an int; list pairs, 1- and 3-tuples: TypeError
    # (checks go pair by pair: a bad name in an earlier (str, x) pair is a ValueError)
    if not isinstance(headers, list) or not (isinstance(headers[0], tuple) and len(headers[0]) == 2):
        assert isinstance(exc, TypeError), (headers, exc)
    assert start["status"] == 500 and start["headers"] == [(b"content-length", b"0")]
