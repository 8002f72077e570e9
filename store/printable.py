"""One way to show text that came from a user's file: escaped, on one line, and short.

Backslashes are left alone: the aim is a safe terminal, not a reversible encoding.

Column names, values quoted in error messages and file names all pass through
:func:`printable` before they reach a terminal, a log or a page, so a file cannot move the
cursor, ring the bell or rewrite the screen (ESC, BEL, C1 controls, bidi overrides), and a
megabyte of binary garbage shows as a short excerpt.
"""

from __future__ import annotations

import unicodedata

# Longest excerpt shown by default, in characters after escaping.
DEFAULT_MAX_CHARS = 80
# Unicode categories that are never shown raw: controls, format characters (bidi overrides,
# zero-width), surrogates, private use, unassigned, and line/paragraph separators.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    if unicodedata.category(ch) not in _HIDDEN_CATEGORIES:
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(value: object, *, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """``value`` as one printable line: control and format characters escaped, cut to ``max_chars``.

    Bytes are decoded as UTF-8 with undecodable bytes shown as ``\\xNN``. A cut excerpt ends
    with ``…`` and how many characters of the original were left out.

    Args:
        value: anything; non-strings are shown with ``str``.
        max_chars: longest result before the "left out" note.

    Returns:
        A string without raw control characters.

    Example:
        >>> printable("caf\\x1b[31mé\\x07")
        'caf\\\\x1b[31mé\\\\x07'
        >>> printable("x" * 100, max_chars=5)
        'xxxxx… (95 more characters)'
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        # Undecodable bytes become "\\xNN" here already.
        text = bytes(value).decode("utf-8", errors="backslashreplace")
    else:
        text = value if isinstance(value, str) else str(value)
    parts, shown = [], 0
    for i, ch in enumerate(text):
        piece = _escape_char(ch)
        if shown + len(piece) > max_chars:
            return "".join(parts) + f"… ({len(text) - i} more characters)"
        parts.append(piece)
        shown += len(piece)
    return "".join(parts)


def printable_message(text: str) -> str:
    """A whole message (already built from escaped parts) made safe once more, without cutting it.

    For error handlers: whatever reached an exception's text, it leaves on one line with no
    raw control characters.
    """
    return printable(text, max_chars=max(len(text) * 10, 1))
