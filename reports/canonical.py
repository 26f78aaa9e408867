"""Canonical JSON (RFC 8785 style) and SHA-256 helpers.

Why canonical: results.json, manifest.json and signature statements are hashed and signed, so the
same content must always give the same bytes: sorted keys, no insignificant whitespace, UTF-8,
no NaN/Infinity, and numbers in the shortest round-trip form written the ECMAScript way
(``1.0`` -> ``1``, ``1e-07`` -> ``1e-7``), independent of Python version.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from rig.safeio import json_depth_problem


class CanonicalJSONError(ValueError):
    """A value that has no canonical JSON form (NaN, Infinity, non-string key, unknown type)."""


def format_number(x: int | float) -> str:
    """ECMAScript Number::toString of ``x`` (what JCS prescribes), from Python's shortest repr."""
    if isinstance(x, bool):
        raise CanonicalJSONError("booleans are not numbers")
    if isinstance(x, int):
        return str(x)
    if math.isnan(x) or math.isinf(x):
        raise CanonicalJSONError(f"{x!r} has no JSON form; record a missing value as null")
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    text = repr(abs(x))
    mantissa, _, exp_text = text.partition("e")
    exponent = int(exp_text) if exp_text else 0
    whole, _, frac = mantissa.partition(".")
    all_digits = whole + frac
    digits = all_digits.lstrip("0")
    # value = 0.<digits> x 10**point
    point = len(whole) + exponent - (len(all_digits) - len(digits))
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= point <= 21:
        body = digits + "0" * (point - k)
    elif 0 < point <= 21:
        body = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        body = "0." + "0" * (-point) + digits
    else:
        e = point - 1
        e_text = f"e{'+' if e >= 0 else '-'}{abs(e)}"
        body = (digits if k == 1 else digits[0] + "." + digits[1:]) + e_text
    return sign + body


def _encode(value: Any, out: list[str], where: str) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, (int, float)):
        try:
            out.append(format_number(value))
        except CanonicalJSONError as exc:
            raise CanonicalJSONError(f"{where}: {exc}") from None
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value)):
            if not isinstance(key, str):
                raise CanonicalJSONError(f"{where}: object key {key!r} is not a string")
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _encode(value[key], out, f"{where}.{key}")
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out, f"{where}[{i}]")
        out.append("]")
    else:
        raise CanonicalJSONError(f"{where}: {type(value).__name__} has no JSON form")


def canonical_json(value: Any) -> bytes:
    """The canonical UTF-8 bytes of ``value``; raises CanonicalJSONError naming the bad field."""
    out: list[str] = []
    _encode(value, out, "$")
    return "".join(out).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_json_bytes(data: bytes, what: str) -> Any:
    """Parse JSON strictly (no NaN/Infinity constants); ValueError names ``what``."""

    def _reject(constant: str) -> Any:
        raise ValueError(f"{what}: {constant} is not allowed")

    too_deep = json_depth_problem(data, what)
    if too_deep:
        raise ValueError(too_deep)
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{what} is not valid UTF-8 JSON: {exc}") from None
    except RecursionError:  # belt and braces: the depth check above should have caught it
        raise ValueError(f"{what} nests too deeply") from None
