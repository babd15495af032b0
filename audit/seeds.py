"""Seed derivation shared by every layer: one stable function so that a stage's random draws
depend only on the audit seed and the stage's name, never on process or hash state."""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, salt: str) -> int:
    """A stable 63-bit seed from a base seed and a string (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256(f"{seed}:{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
