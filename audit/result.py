"""The result model: Severity, Finding, Figure, Table, Section, AuditResult (torch-free).

The JSON form of :class:`AuditResult` is the single source of truth of an audit; every report
format renders it and nothing else. Its shape is published as ``audit/schema/result.schema.json``.
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import Enum, StrEnum
from typing import Any, Literal

import numpy as np

from audit.errors import UsageError

SCHEMA_VERSION = "1.0"

SectionStatus = Literal["pass", "warn", "fail", "error", "skipped"]


class Severity(StrEnum):
    """How much a finding matters, from ``info`` to ``critical``."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for info up to 4 for critical."""
        return SEVERITIES.index(self)

    @classmethod
    def parse(cls, value: str | Severity) -> Severity:
        """Parse a severity name; raises :class:`UsageError` naming the valid names."""
        if isinstance(value, Severity):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            names = ", ".join(s.value for s in SEVERITIES)
            raise UsageError(f"unknown severity {value!r}; use one of: {names}") from None


# The one severity order, least severe first; ranks, display order (most severe first) and
# the names accepted in settings all derive from it.
SEVERITIES: tuple[Severity, ...] = tuple(Severity)
SeverityName = Literal["info", "low", "medium", "high", "critical"]


@dataclass
class Finding:
    """One thing the audit found; ``id`` is stable across runs (``performance.weak-class.3``)."""

    id: str
    severity: Severity
    title: str
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)
    recommendation: str = ""
    category: str = ""
    """The severity policy's category of its kind (:mod:`audit.policy`); empty in results
    written before the policy."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["severity"] = self.severity.value
        d["evidence"] = jsonable(self.evidence)
        if not self.category:
            d.pop("category")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        return cls(
            id=d["id"],
            severity=Severity.parse(d["severity"]),
            title=d["title"],
            detail=d["detail"],
            evidence=dict(d.get("evidence", {})),
            recommendation=d.get("recommendation", ""),
            category=str(d.get("category", "") or ""),
        )


@dataclass
class Figure:
    """An inlined image: ``data`` is base64 of an SVG or PNG; ``mime`` says which."""

    id: str
    title: str
    mime: Literal["image/svg+xml", "image/png"]
    data: str
    caption: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Figure:
        return cls(id=d["id"], title=d["title"], mime=d["mime"], data=d["data"],
                   caption=d.get("caption", ""))


Cell = str | int | float | bool | None


@dataclass
class Table:
    """A small table shown in the report (per-class metrics, per-group rates, ...)."""

    id: str
    title: str
    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "columns": list(self.columns),
                "rows": [[jsonable(c) for c in row] for row in self.rows], "caption": self.caption}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Table:
        return cls(id=d["id"], title=d["title"], columns=list(d["columns"]),
                   rows=[list(r) for r in d["rows"]], caption=d.get("caption", ""))


@dataclass
class Section:
    """What one check produced. ``metrics`` is a flat map of name to number.

    ``outcomes`` (optional, left out of the JSON when empty) records per-sample successes of
    some of the rates in ``metrics`` so that two results can be compared with a paired test
    on the same samples: the block :func:`audit.stats.outcomes_block` writes (data sha256,
    evaluated rows and one bitset per rate; described in the published schema).
    """

    check: str
    title: str
    status: SectionStatus = "pass"
    summary: str = ""
    reading: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    error: str | None = None
    outcomes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "check": self.check,
            "title": self.title,
            "status": self.status,
            "summary": self.summary,
            "reading": self.reading,
            "metrics": {k: _finite(v) for k, v in self.metrics.items()},
            "findings": [f.to_dict() for f in self.findings],
            "figures": [f.to_dict() for f in self.figures],
            "tables": [t.to_dict() for t in self.tables],
            "params": jsonable(self.params),
            "duration_s": round(self.duration_s, 3),
            "error": self.error,
        }
        if self.outcomes:
            d["outcomes"] = jsonable(self.outcomes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Section:
        return cls(
            check=d["check"], title=d.get("title", d["check"]), status=d["status"],
            summary=d.get("summary", ""), reading=d.get("reading", ""),
            metrics={k: (math.nan if v is None else float(v)) for k, v in d["metrics"].items()},
            findings=[Finding.from_dict(f) for f in d["findings"]],
            figures=[Figure.from_dict(f) for f in d["figures"]],
            tables=[Table.from_dict(t) for t in d.get("tables", [])],
            params=dict(d.get("params", {})), duration_s=float(d.get("duration_s", 0.0)),
            error=d.get("error"), outcomes=dict(d.get("outcomes") or {}),
        )


@dataclass
class AuditResult:
    """The whole audit. ``to_dict()`` is the JSON document described by the published schema."""

    tool: dict[str, str]
    model: dict[str, Any]
    data: dict[str, Any]
    config: dict[str, Any]
    summary: dict[str, Any]
    sections: list[Section]
    card: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    schema_version: str = SCHEMA_VERSION

    def findings(self) -> Iterator[tuple[Section, Finding]]:
        """Every finding with its section, in report order."""
        for s in self.sections:
            for f in s.findings:
                yield s, f

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "tool": dict(self.tool),
            "model": jsonable(self.model),
            "data": jsonable(self.data),
            "config": jsonable(self.config),
            "summary": jsonable(self.summary),
            "card": jsonable(self.card),
            "run": jsonable(self.run),
            "sections": [s.to_dict() for s in self.sections],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AuditResult:
        return cls(
            schema_version=d["schema_version"], tool=d["tool"], model=d["model"], data=d["data"],
            config=d["config"], summary=d["summary"], card=d.get("card", {}),
            run=d.get("run", {}), sections=[Section.from_dict(s) for s in d["sections"]],
        )


def summarize(sections: list[Section], fail_on: Severity, duration_s: float) -> dict[str, Any]:
    """The ``summary`` block: verdict, counts by severity and by section status."""
    counts = {s.value: 0 for s in SEVERITIES}
    failing = 0
    for sec in sections:
        for f in sec.findings:
            counts[f.severity.value] += 1
            if f.severity.rank >= fail_on.rank:
                failing += 1
    statuses: dict[str, int] = {}
    for sec in sections:
        statuses[sec.status] = statuses.get(sec.status, 0) + 1
    return {
        "status": "fail" if failing else "pass",
        "fail_on": fail_on.value,
        "failing_findings": failing,
        "counts": counts,
        "sections": statuses,
        "duration_s": round(duration_s, 3),
    }


def section_status(section: Section, fail_on: Severity) -> SectionStatus:
    """pass (no findings above info), warn (findings below fail_on), fail (at or above)."""
    if section.status in ("error", "skipped"):
        return section.status
    ranks = [f.severity.rank for f in section.findings]
    if any(r >= fail_on.rank for r in ranks):
        return "fail"
    if any(r > Severity.INFO.rank for r in ranks):
        return "warn"
    return "pass"


def _finite(v: float) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None


def jsonable(obj: Any) -> Any:
    """Convert numpy/torch scalars, tuples and enums into plain JSON types; NaN becomes None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return _finite(float(obj))
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    torch_mod = sys.modules.get("torch")  # torch is only imported where tensors exist
    if torch_mod is not None and isinstance(obj, torch_mod.Tensor):
        return jsonable(obj.detach().cpu().tolist())
    return obj


def sha256_bytes(*chunks: bytes) -> str:
    """sha256 hex digest of the concatenated chunks."""
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def rejudged(doc: dict[str, Any], fail_on: Severity) -> dict[str, Any]:
    """A copy of the JSON result ``doc`` judged at another ``fail_on``: section statuses,
    the summary's verdict and counts, and the recorded threshold all follow it."""
    res = AuditResult.from_dict(doc)
    for sec in res.sections:
        sec.status = section_status(sec, fail_on)
    duration = float((doc.get("summary") or {}).get("duration_s", 0.0) or 0.0)
    out = res.to_dict()
    out["summary"] = summarize(res.sections, fail_on, duration)
    out["config"] = {**(doc.get("config") or {}), "fail_on": fail_on.value}
    return out
