"""The API's JSON parser: DRF's, refusing two kinds of body that used to end in a 500.

- Nesting: Python's decoder recurses once per ``[`` or ``{``, so ``[[[[...`` a thousand or so
  deep (two kilobytes) raised RecursionError, a 500, or under a raised recursion limit crashed
  the process. Where exactly depends on how deep the stack already is, and later steps (schema
  validation, ``json.dumps``) recurse too; no API body needs more than a handful of levels, so
  anything past `MAX_DEPTH` is refused outright: `check_nesting` counts brackets before parsing.
- Lone UTF-16 surrogates (``"\\ud800"``): legal JSON escapes, but not Unicode text. Echoed back
  in an error ("unknown field '\\ud800'") they made the UTF-8 response itself fail, a 500 again.

Both are ``400 parse_error``, like any other body that is not JSON.
"""
from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_DEPTH = 32


class JSONParser(parsers.JSONParser):
    """``application/json`` bodies, at most `MAX_DEPTH` levels deep and valid Unicode throughout."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        raw = stream.read()
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        check_nesting(raw.decode(encoding, errors="replace"))
        try:
            data = super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested more than {MAX_DEPTH} levels deep") from None
        check_shape(data)
        return data


# A string (possessive: an unterminated one runs to the end in one linear pass) or a bracket.
_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]++|\\.)*+"?|[\[\]{}]', re.S)


def check_nesting(text: str) -> None:
    """Raise ParseError if the JSON ``text`` opens more than `MAX_DEPTH` levels, before it is parsed.

    The decoder's own guard is the interpreter's recursion limit, and that is not ours to rely on:
    a library in the same process may raise it (py-evm, through py_ecc, sets it to 100,000 on
    import), and then a deep enough body overflows the C stack, which kills the process instead
    of raising RecursionError.
    """
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise ParseError(f"JSON parse error - nested more than {MAX_DEPTH} levels deep")
        elif token in ("]", "}"):
            depth -= 1


def check_shape(data: Any) -> None:
    """Raise ParseError if ``data`` nests deeper than `MAX_DEPTH` or holds a string that is not Unicode.

    Walks with an explicit stack: recursing here would fail on the very input it guards against.
    """
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                raise ParseError(f"JSON parse error - nested more than {MAX_DEPTH} levels deep")
            if isinstance(value, dict):
                for key in value:
                    _check_text(key)
            items: Iterable[Any] = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ParseError("JSON parse error - a string holds a lone UTF-16 surrogate, which is not text") from None
