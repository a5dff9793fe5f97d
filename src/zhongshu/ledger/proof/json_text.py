"""Reading JSON text strictly, as a bundle and a trusted genesis are read (docs/proof-format.md §6).

Python's ``json`` keeps the last of two equal keys silently, reads lone surrogates (``"\\ud800"``)
into strings that cannot be written back as UTF-8, and accepts ``NaN`` and ``Infinity``. Another
reader may keep the first of two keys, so a document with a repeated key means two different
things to two verifiers: it is refused, as is everything else that is not plain UTF-8 JSON.
"""

from __future__ import annotations

import json
from typing import Any


class JsonTextError(ValueError):
    """Text that is not one strict JSON document; the message says where and why."""


def _refuse_constant(name: str) -> Any:
    raise JsonTextError(f"{name} is not a JSON value")


def _check_text(value: str, what: str) -> None:
    # A string is Unicode that UTF-8 can write: no lone surrogate.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonTextError(f"{what} {value!r} holds a lone surrogate, which is not Unicode text") from None


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        _check_text(key, "the key")
        # Each key appears once in its object.
        if key in out:
            raise JsonTextError(f"the key {key!r} appears twice in one object")
        out[key] = value
    return out


def _check_strings(doc: Any) -> None:
    """Every string value, at any depth, is Unicode text (keys were checked while reading)."""
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            _check_text(node, "the string")
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def decode_strict_json(data: bytes | str) -> Any:
    """The one JSON value in ``data``; raise JsonTextError unless it is strict JSON.

    Strict: UTF-8 without a byte-order mark, no key twice in one object at any depth, no lone
    surrogate in a key or string, no ``NaN``/``Infinity``, nesting Python can read.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonTextError(
                f"not UTF-8 text: byte {data[exc.start]:#04x} at offset {exc.start}"
            ) from None
    else:
        text = data
    try:
        doc = json.loads(text, object_pairs_hook=_object, parse_constant=_refuse_constant)
    except JsonTextError:
        raise
    except RecursionError:
        raise JsonTextError("nested too deeply") from None
    except ValueError as exc:
        # json.JSONDecodeError, or an integer too long for Python to convert.
        raise JsonTextError(f"not JSON: {exc}") from None
    _check_strings(doc)
    return doc
