"""Writing ``audit.toml``: TOML literals and the effective configuration of a result as a file
that reproduces it (the inverse of :mod:`audit.config.parse`). Torch-free and check-free, so
renderers may use it."""

from __future__ import annotations

import json
import math
import re
from typing import Any


def text(value: Any) -> str:
    """Any value as text (``None`` is empty)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def toml_value(v: Any) -> str:
    """A TOML literal for a JSON-like value (None has no TOML form and gives ``""``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        items = [f"{_toml_key(k)} = {toml_value(x)}" for k, x in v.items() if x is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    return json.dumps(text(v), ensure_ascii=False)


def _toml_key(k: Any) -> str:
    s = text(k)
    return s if re.fullmatch(r"[A-Za-z0-9_-]+", s) else json.dumps(s, ensure_ascii=False)


def config_toml(config: dict[str, Any]) -> str:
    """The effective configuration of a result written as an ``audit.toml`` that reproduces it.

    Keys whose value is ``None`` are written as comments (TOML has no null).
    """
    lines = ["[audit]"]
    for key in ("checks", "fail_on", "seed", "quick", "batch_size", "scale_budgets"):
        if key in config:
            v = config[key]
            lines.append(f"# {key} = (default)" if v is None else f"{key} = {toml_value(v)}")
    params = config.get("params") or {}
    if isinstance(params, dict):
        for check, values in params.items():
            if not isinstance(values, dict):
                continue
            lines.append("")
            lines.append(f"[checks.{_toml_key(check)}]")
            for k, v in values.items():
                lines.append(f"# {_toml_key(k)} = (none)" if v is None
                             else f"{_toml_key(k)} = {toml_value(v)}")
    return "\n".join(lines) + "\n"
