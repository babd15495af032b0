"""``audit.toml``: which checks run, their parameters, and the failure threshold.

Example::

    [audit]
    checks = ["performance", "robustness"]   # default: every check that applies to the model
    fail_on = "high"                         # info | low | medium | high | critical
    seed = 0
    quick = false
    batch_size = 256
    samples = 2000                           # every sample cap (or "all"); default: each check's

    [checks.performance]
    ece_medium = 0.05

Unknown tables or keys are errors that name the key (exit code 4). Command-line flags override
the file.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.checks import all_checks, get_check, make_params
from audit.crosscheck import CROSSCHECK
from audit.errors import ConfigError
from audit.result import Severity
from audit.sample_budget import Samples, parse_samples

_AUDIT_KEYS = {"checks", "fail_on", "seed", "quick", "batch_size", "scale_budgets", "samples"}


@dataclass
class AuditConfig:
    """Settings of one audit run (after merging the file and the command line)."""

    checks: list[str] | None = None
    fail_on: Severity = Severity.HIGH
    seed: int = 0
    quick: bool = False
    batch_size: int = 256
    scale_budgets: bool = True
    samples: Samples = None
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"checks": self.checks, "fail_on": self.fail_on.value, "seed": self.seed,
                "quick": self.quick, "batch_size": self.batch_size,
                "scale_budgets": self.scale_budgets, "samples": self.samples,
                "params": self.params,
                "source": self.source}


def parse_config(data: Any, where: str = "audit.toml") -> AuditConfig:
    """Validate a parsed TOML document; raises :class:`ConfigError` naming the bad key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a TOML document")
    unknown = sorted(set(data) - {"audit", "checks"})
    if unknown:
        raise ConfigError(f"{where}: unknown table or key {unknown[0]!r}; use [audit] and "
                          "[checks.NAME]")
    cfg = AuditConfig(source=where)
    top = data.get("audit", {})
    if not isinstance(top, dict):
        raise ConfigError(f"{where}: 'audit' must be a table")
    bad = sorted(set(top) - _AUDIT_KEYS)
    if bad:
        raise ConfigError(f"{where}: unknown key {bad[0]!r} in [audit]; known keys: "
                          f"{', '.join(sorted(_AUDIT_KEYS))}")
    if "checks" in top:
        checks = top["checks"]
        if not isinstance(checks, list) or not all(isinstance(c, str) for c in checks):
            raise ConfigError(f"{where}: [audit] checks must be a list of check names")
        for c in checks:
            if c != CROSSCHECK:  # the cross-checks' section, asked for by name
                _known_check(c, where)
        cfg.checks = list(checks)
    if "fail_on" in top:
        try:
            cfg.fail_on = Severity.parse(top["fail_on"])
        except Exception:
            raise ConfigError(f"{where}: [audit] fail_on must be one of info, low, medium, "
                              f"high, critical; got {top['fail_on']!r}") from None
    for key in ("seed", "batch_size"):
        if key in top:
            v = top[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if key == "batch_size"
                                                                        else 0):
                raise ConfigError(f"{where}: [audit] {key} must be a non-negative integer"
                                  if key == "seed" else
                                  f"{where}: [audit] {key} must be a positive integer")
            setattr(cfg, key, v)
    for key in ("quick", "scale_budgets"):
        if key in top:
            if not isinstance(top[key], bool):
                raise ConfigError(f"{where}: [audit] {key} must be true or false")
            setattr(cfg, key, top[key])
    if "samples" in top:
        cfg.samples = parse_samples(top["samples"], f"{where}: [audit]")
    tables = data.get("checks", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{where}: 'checks' must be a table of [checks.NAME] tables")
    for name, params in tables.items():
        cls = _known_check(name, where)
        if not isinstance(params, dict):
            raise ConfigError(f"{where}: [checks.{name}] must be a table")
        make_params(cls, params, quick=False, where=where)  # validate keys and types now
        cfg.params[name] = dict(params)
    return cfg


def _known_check(name: str, where: str) -> Any:
    try:
        return get_check(name)
    except Exception:
        raise ConfigError(f"{where}: unknown check {name!r}; available checks: "
                          f"{', '.join(all_checks())}") from None


def resolve_config(config: AuditConfig | str | Path | None, *, seed: int | None = None,
                   quick: bool | None = None, fail_on: str | Severity | None = None,
                   samples: Samples = None) -> AuditConfig:
    """A new :class:`AuditConfig` from an object or a file, with command-line values on top;
    ``config`` itself is never modified."""
    base = config if isinstance(config, AuditConfig) else load_config(config)
    # A copy: the caller's config (reused across audits, e.g. by ``audit examples``) stays as
    # it was, including its per-check params tables.
    return dataclasses.replace(
        base,
        checks=list(base.checks) if base.checks is not None else None,
        params={name: dict(values) for name, values in base.params.items()},
        seed=base.seed if seed is None else seed,
        quick=base.quick if quick is None else quick,
        fail_on=base.fail_on if fail_on is None else Severity.parse(fail_on),
        samples=base.samples if samples is None else parse_samples(samples, "samples"),
    )


def load_config(path: Path | str | None) -> AuditConfig:
    """Read ``audit.toml``; ``None`` gives the defaults."""
    if path is None:
        return AuditConfig()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {p}: {e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML: {e}") from None
    return parse_config(data, where=str(p))
