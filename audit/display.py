"""Strings from models, cards and data on a display: shown, never obeyed.

Every format (HTML, Markdown, JUnit, figures, the terminal) passes such strings through
:func:`shown`, so a class name cannot send terminal escapes or reorder the text around it with
bidi controls; the JSON result keeps the strings as they were.
"""

from __future__ import annotations

import re

__all__ = ["shorten", "shown"]

# Characters a string from a model, card or data file must not get to act on a display:
# C0 controls (but tab and newline), DEL and C1 (terminal escapes), and the bidi controls
# (embeddings, overrides, isolates, marks) that would reorder the text around them.
_ACTING = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e"
                     "\u2066-\u2069]")


def shown(value: str) -> str:
    """``value`` with every control and bidi-control character replaced by its visible
    escape (``\\x1b``, ``\\u202e``): displayed, never obeyed, in every format."""
    return _ACTING.sub(lambda m: (f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100
                                  else f"\\u{ord(m[0]):04x}"), value)


def shorten(value: str, limit: int) -> str:
    """``value`` cut to at most ``limit`` characters, the last one an ellipsis (``limit`` 0:
    no limit)."""
    return value if not limit or len(value) <= limit else value[: limit - 1] + "…"
