"""The one sanitiser for text shown on a terminal, and the rule for names people type.

Why: a printed name, record field or registry entry comes from files anyone may have written (an
envelope from an unregistered key, a copied run directory). Sent raw to a terminal, ESC and CSI
sequences can clear the screen and draw a fake "Bundle VALID"; bidi overrides and zero-width
characters make two different names look identical to a reviewer. Everything the command line
prints that did not come from our own literals goes through ``for_terminal`` (plain text) or
``for_markup`` (text placed inside a rich markup string), which show such characters escaped
(``\\x1b``, ``\\u202e``) instead of interpreting them.

What it does not do: it does not decide what is true. The exit code and the verdict lines are
still what a script must rely on.
"""

from __future__ import annotations

import unicodedata

# Categories shown escaped: Cc = C0, DEL and C1 controls; Cf = format (bidi embeddings/overrides/
# isolates, zero-width space/joiners, BOM, soft hyphen...); Zl/Zp = line/paragraph separators;
# Co/Cs/Cn = private use, lone surrogates, unassigned (a terminal may render any of them oddly).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"})
_KEEP_IN_MULTILINE = frozenset("\n\t")


def _escaped(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def is_unsafe_char(ch: str) -> bool:
    """Would this character be interpreted (or hidden) by a terminal rather than shown?"""
    return unicodedata.category(ch) in _UNSAFE_CATEGORIES


def for_terminal(value: object, *, multiline: bool = False) -> str:
    """``str(value)`` with every control, format, bidi and zero-width character shown escaped.

    A backslash is left alone (the escapes are for a human to see, not to be decoded). With
    ``multiline``, newlines and tabs are kept (error messages listing several problems).
    """
    text = value if isinstance(value, str) else str(value)
    if text.isascii() and text.isprintable():
        return text  # the common case, without a per-character walk
    keep = _KEEP_IN_MULTILINE if multiline else frozenset()
    return "".join(_escaped(c) if c not in keep and is_unsafe_char(c) else c for c in text)


def for_markup(value: object) -> str:
    """``for_terminal`` and then rich markup escaping: for text placed inside a rich markup string."""
    from rich.markup import escape

    return escape(for_terminal(value))


def hidden_characters(text: str) -> str:
    """The control and invisible formatting characters in ``text``, named ("" when none)."""
    found = sorted({c for c in text if is_unsafe_char(c)})
    return ", ".join(f"U+{ord(c):04X} ({unicodedata.name(c, 'control character')})" for c in found)


def name_problem(text: object, what: str, *, max_chars: int = 200) -> str | None:
    """Why ``text`` cannot be a printed name/operator (shown with signatures and records), or None.

    Same rule as station strings: not empty, not too long, no control or invisible formatting
    characters (they would let two different names look the same, or rewrite the terminal).
    """
    if not isinstance(text, str) or not text.strip():
        return f"{what} must be a non-empty name"
    if len(text) > max_chars:
        return f"{what} is {len(text)} characters long; at most {max_chars} are allowed"
    hidden = hidden_characters(text)
    if hidden:
        return f"{what} {for_terminal(text)!r} contains control or invisible characters: {hidden}"
    if text != text.strip():
        return f"{what} {text!r} has leading or trailing spaces"
    return None
