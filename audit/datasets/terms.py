"""Identity-term lists as swap pairs, and the whole-word swaps a counterfactual test makes."""

from __future__ import annotations

import re
from collections.abc import Sequence


def _pattern(term: str) -> str:
    return rf"(?<![\w']){re.escape(term)}(?![\w'])"


def mentions(text: str, terms: Sequence[str]) -> bool:
    """Whether ``text`` holds one of ``terms`` as whole words (case-insensitive)."""
    return any(re.search(_pattern(t), text, flags=re.IGNORECASE) for t in terms)


def swap_terms(text: str, source: Sequence[str], target: Sequence[str]) -> str:
    """``text`` with each term of ``source`` (whole words, case-insensitive) replaced by the
    term at the same index of ``target``, in one pass, so a replacement is never replaced
    again; a capitalised term stays capitalised."""
    if len(source) != len(target):
        raise ValueError(f"term lists differ in length: {len(source)} and {len(target)}")
    lookup = {s.lower(): t for s, t in zip(source, target, strict=True)}
    # longest first, so "my wife" wins over a shorter term inside it
    alternatives = "|".join(_pattern(s) for s in sorted(lookup, key=len, reverse=True))
    if not alternatives:
        return text

    def repl(m: re.Match[str]) -> str:
        new = lookup[m.group(0).lower()]
        return new[:1].upper() + new[1:] if m.group(0)[:1].isupper() else new

    return re.sub(alternatives, repl, text, flags=re.IGNORECASE)
