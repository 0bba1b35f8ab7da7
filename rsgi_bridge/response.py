"""A committed RSGI response: the record the app's ``response_*`` call makes, and the checks behind it.

Everything here is pure (no I/O): status, header and framing checks raise ``TypeError``/``ValueError``
naming the problem, at the app's call, before the server sees anything.
"""

from __future__ import annotations

import os
import re
from enum import Enum
from typing import NamedTuple

__all__ = [
    "Head",
    "Kind",
    "Response",
    "check_bytes",
    "check_path",
    "check_range",
    "check_status",
    "check_str",
    "encode_head",
]

# RFC 9110 token characters.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Control characters a header value must not hold (RFC 9110 allows HTAB only): CR/LF would split the
# response; uvicorn refuses the others after marking the response started, hypercorn and daphne send them.
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS = re.compile(r"[0-9]{1,19}")

Wire = tuple[tuple[bytes, bytes], ...]


class Kind(Enum):
    """What carries the body of a response."""

    PLAIN = "plain"  # response_empty / response_str / response_bytes
    FILE = "file"  # response_file / response_file_range
    STREAM = "stream"  # response_stream


class Head(NamedTuple):
    """Response headers checked and encoded for ASGI, with what they say about framing."""

    headers: Wire  # (name, value) in wire form; a repeated content-length is left out (as Granian)
    length: int | None  # the app's content-length
    chunked: bool  # the app's ``transfer-encoding: chunked``


class Response:
    """The response an app committed: the first ``response_*`` call of an exchange.

    A slotted class, not a NamedTuple: made once per request, and a NamedTuple's generated
    ``__new__`` cost ~1.5k instructions more (benchmarks/instructions.py).
    """

    __slots__ = ("body", "end", "head", "kind", "path", "start", "status")

    def __init__(
        self,
        kind: Kind,
        status: int,
        head: Head,
        body: bytes = b"",  # PLAIN
        path: str = "",  # FILE
        start: int = 0,  # FILE: first byte
        end: int | None = None,  # FILE: end of the range (exclusive); None for the whole file
    ) -> None:
        self.kind = kind
        self.status = status
        self.head = head
        self.body = body
        self.path = path
        self.start = start
        self.end = end

    def __repr__(self) -> str:
        return f"Response({self.kind.name}, {self.status}, {self.head!r})"


# Header lists already checked, by value (tuples of str pairs), with their Head: a dict lookup
# instead of the checks for the header sets an app sends again and again. Bounded; values immutable.
_HEADS: dict[tuple[tuple[str, str], ...], Head] = {}
_HEADS_MAX = 1024
_HEAD_PAIRS_MAX = 16
_HEAD_VALUE_MAX = 256
_NO_HEADERS = Head((), None, False)


def check_status(status: object) -> int:
    """Return ``status`` if it is an int in 100-999, else raise naming the problem."""
    if type(status) is not int:
        if isinstance(status, int) and not isinstance(status, bool):
            status = int(status)
        else:
            raise TypeError(f"response status must be an int, not {type(status).__name__}")
    if not 100 <= status <= 999:
        raise ValueError(f"response status {status} is outside 100-999")
    return status


def encode_head(headers: object) -> Head:
    """Check RSGI response headers and encode them for ASGI.

    Accepts a list or tuple of ``(str, str)`` pairs (any tuple of two, as Granian), repeated
    names in order. Framing headers are checked: a content-length is decimal digits (of several,
    only the first is kept, as Granian does); a transfer-encoding is ``chunked``, and not next to
    a content-length.
    """
    if type(headers) is tuple or type(headers) is list:
        if not headers:
            return _NO_HEADERS
        try:
            key = headers if type(headers) is tuple else tuple(headers)
            hit = _HEADS.get(key)
        except TypeError:  # something unhashable in it: the full check says what is wrong
            hit = key = None
        if hit is not None:
            return hit
    elif isinstance(headers, (list, tuple)):
        key = None
    else:
        raise TypeError(
            f"response headers must be a list or tuple of (name, value) pairs, not {type(headers).__name__}"
        )
    wire: list[tuple[bytes, bytes]] = []
    length: int | None = None
    chunked = False
    plain = True  # only exact str pairs of modest size are remembered
    for pair in headers:
        if not isinstance(pair, tuple) or len(pair) != 2:
            if not isinstance(pair, tuple):
                raise TypeError(
                    f"each response header must be a (name, value) tuple, not {type(pair).__name__}: {pair!r}"
                )
            raise TypeError(f"each response header must be a (name, value) pair, got {len(pair)} items: {pair!r}")
        name, value = pair
        if not isinstance(name, str):
            raise TypeError(f"header name must be str, not {type(name).__name__}: {name!r}")
        if not isinstance(value, str):
            raise TypeError(f"header {name!r} value must be str, not {type(value).__name__}")
        if _TOKEN.fullmatch(name) is None:
            raise ValueError(f"header name {name!r} is not a valid HTTP token")
        if not (value.isascii() and value.isprintable()) and _BAD_VALUE.search(value) is not None:
            if "\r" in value or "\n" in value or "\0" in value:
                raise ValueError(f"header {name!r} value contains CR, LF or NUL: {value!r}")
            raise ValueError(f"header {name!r} value contains a control character (only HTAB is allowed): {value!r}")
        lower = name.lower()
        if lower == "content-length":
            if _DIGITS.fullmatch(value) is None:
                raise ValueError(f"content-length {value!r} is not a decimal number of bytes")
            if length is not None:
                continue  # as Granian: only the first content-length goes out
            length = int(value)
        elif lower == "transfer-encoding":
            if value.strip().lower() != "chunked":
                raise ValueError(f"transfer-encoding {value!r} is not supported: only 'chunked' is")
            chunked = True
        plain = plain and type(name) is str and type(value) is str and len(value) <= _HEAD_VALUE_MAX
        wire.append((lower.encode("ascii"), value.encode()))
    if chunked and length is not None:
        raise ValueError("a response cannot carry both transfer-encoding and content-length")
    head = Head(tuple(wire), length, chunked)
    if key is not None and plain and len(wire) <= _HEAD_PAIRS_MAX and len(_HEADS) < _HEADS_MAX:
        _HEADS[key] = head
    return head


def check_bytes(data: object, what: str) -> bytes:
    """Return ``data`` as bytes if it is bytes-like, else raise ``TypeError``."""
    if type(data) is bytes:
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} takes bytes, bytearray or memoryview, not {type(data).__name__}")


def check_str(data: object, what: str) -> str:
    """Return ``data`` if it is a str, else raise ``TypeError``."""
    if isinstance(data, str):
        return data
    raise TypeError(f"{what} takes str, not {type(data).__name__}")


def check_path(file: object) -> str:
    """Return a file response's path as str, else raise ``TypeError``."""
    if isinstance(file, str):
        return file
    if isinstance(file, os.PathLike):
        path = os.fspath(file)
        if isinstance(path, str):
            return path
    raise TypeError(f"file path must be str or os.PathLike, not {type(file).__name__}")


def check_range(start: object, end: object) -> tuple[int, int]:
    """Check ``response_file_range``'s bounds: ints, ``0 <= start < end``."""
    for name, v in (("start", start), ("end", end)):
        if type(v) is not int:
            raise TypeError(f"response_file_range {name} must be an int, not {type(v).__name__}")
    assert isinstance(start, int) and isinstance(end, int)
    if start < 0:
        raise ValueError(f"response_file_range start {start} is negative")
    if start >= end:
        raise ValueError(f"response_file_range start {start} must be lower than end {end}")
    return start, end
