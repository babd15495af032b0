"""Turn a result document into the plain, normalised view that every report format shows.

The view is built in Python, not in templates, so that every format (HTML, Markdown, JUnit,
diff) reads the same numbers, the same ranking of findings and the same unique anchors, and so
that a document with odd or hostile content (missing keys, unknown severities, figures that are
not base64, names full of markup) still renders: values are converted to text here and escaped
by the format's renderer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from audit.config.write import config_toml
from audit.report.text import (
    CATEGORY_LABEL,
    SEVERITY_ORDER,
    STATUSES,
    as_float,
    clean_severity,
    clean_status,
    compact,
    expectation,
    fmt_number,
    fmt_value,
    headline,
    nice_time,
    severity_rank,
    slug,
    text,
)

_MIMES = {"image/svg+xml", "image/png"}
_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
TOP_FINDINGS = 8


class Anchors:
    """Unique HTML ids: the same base twice gets ``-2``, ``-3``, ... appended."""

    def __init__(self, reserved: tuple[str, ...] = ()) -> None:
        self._used: set[str] = set(reserved)

    def new(self, prefix: str, value: Any) -> str:
        base = f"{prefix}-{slug(value)}"
        anchor, n = base, 1
        while anchor in self._used:
            n += 1
            anchor = f"{base}-{n}"
        self._used.add(anchor)
        return anchor


@dataclass
class KV:
    """One labelled value; ``block`` values are shown preformatted."""

    key: str
    value: str
    block: bool = False
    code: bool = False


@dataclass
class FindingView:
    """A finding ready to show."""

    id: str
    anchor: str
    severity: str
    title: str
    detail: str
    recommendation: str
    evidence: list[KV]
    check: str
    section_title: str
    section_anchor: str
    blocking: bool
    order: int
    category: str = ""


@dataclass
class MetricView:
    """A metric name with its formatted value (``raw`` is None when missing or not finite)."""

    name: str
    value: str
    raw: float | None


@dataclass
class TableView:
    """A section table with every cell formatted; ``numeric`` flags right-aligned columns."""

    anchor: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    numeric: list[bool]
    caption: str


@dataclass
class FigureView:
    """An inlined figure; ``src`` is a ``data:`` URI, or empty when the data was unusable."""

    anchor: str
    title: str
    caption: str
    src: str
    mime: str
    problem: str = ""


@dataclass
class SectionView:
    """One check's section, normalised."""

    check: str
    title: str
    anchor: str
    status: str
    summary: str
    reading: str
    error: str
    findings: list[FindingView]
    metrics: list[MetricView]
    tables: list[TableView]
    figures: list[FigureView]
    params: list[KV]
    duration: str
    counts: dict[str, int]
    seconds: float = 0.0


@dataclass
class ReportView:
    """Everything a report shows, in display order."""

    title: str
    model: dict[str, Any]
    data: dict[str, Any]
    status: str
    fail_on: str
    failing: int
    counts: dict[str, int]
    total_findings: int
    status_counts: dict[str, int]
    headline: str
    expectation: str
    sections: list[SectionView]
    findings: list[FindingView]
    top: list[FindingView]
    card: list[KV]
    card_metrics: list[MetricView]
    recipe: list[KV]
    repro: list[KV]
    config_toml: str
    tool: str
    created: str


def _get(d: Any, key: str, default: Any = None) -> Any:
    return d.get(key, default) if isinstance(d, dict) else default


def _evidence(ev: Any) -> list[KV]:
    if not isinstance(ev, dict):
        return [] if ev in (None, "", [], {}) else [KV("value", fmt_value(ev))]
    out = []
    for k, v in ev.items():
        if k == "traceback" or (isinstance(v, str) and "\n" in v):
            out.append(KV(text(k), text(v)[-4000:], block=True))
        else:
            out.append(KV(text(k), fmt_value(v)))
    return out


def _figure(fig: Any, anchor: str) -> FigureView:
    title = text(_get(fig, "title", "")).strip()
    if title and title[-1] not in ".!?:":
        title += "."
    caption = text(_get(fig, "caption", "")).strip()
    mime = text(_get(fig, "mime", ""))
    data = _get(fig, "data", "")
    if mime not in _MIMES:
        return FigureView(anchor, title, caption, "", mime, f"unsupported image type {mime!r}")
    if not isinstance(data, str) or not data or not _BASE64.match(data):
        return FigureView(anchor, title, caption, "", mime, "image data is not base64")
    return FigureView(anchor, title, caption, f"data:{mime};base64,{data}", mime)


def _table(t: Any, anchor: str) -> TableView:
    columns = [text(c) for c in (_get(t, "columns") or [])]
    raw_rows = [r if isinstance(r, list) else [r] for r in (_get(t, "rows") or [])]
    width = max([len(columns), *(len(r) for r in raw_rows)]) if raw_rows or columns else 0
    columns += [""] * (width - len(columns))
    numeric = [bool(raw_rows) and all(
        i >= len(r) or r[i] is None or (isinstance(r[i], int | float)
                                        and not isinstance(r[i], bool))
        for r in raw_rows) for i in range(width)]
    rows = [[fmt_value(c, 200) for c in r] + [""] * (width - len(r)) for r in raw_rows]
    return TableView(anchor, text(_get(t, "title", "")), columns, rows, numeric,
                     text(_get(t, "caption", "")))


def _kvs(d: Any) -> list[KV]:
    if not isinstance(d, dict):
        return []
    return [KV(text(k), compact(v), block=isinstance(v, dict) and bool(v))
            for k, v in d.items()]


def _requested(config: Any) -> list[str] | None:
    """The checks of an audit that ran a requested subset (``None``: the default audit)."""
    if not isinstance(config, dict) or config.get("selection") != "requested":
        return None
    return [text(c) for c in config.get("checks") or [] if c != "crosscheck"]


def build_view(doc: dict[str, Any]) -> ReportView:
    """The normalised view of a result document (the dict form of an ``AuditResult``)."""
    summary = _get(doc, "summary", {}) or {}
    fail_on = clean_severity(_get(summary, "fail_on", _get(_get(doc, "config"), "fail_on",
                                                             "high")))
    anchors = Anchors(("top", "at-a-glance", "top-findings", "checks", "identity",
                       "model-card", "reproduce", "contents"))
    sections: list[SectionView] = []
    findings: list[FindingView] = []
    order = 0
    for raw in _get(doc, "sections", []) or []:
        if not isinstance(raw, dict):
            continue
        check = text(raw.get("check", "")) or "check"
        title = text(raw.get("title", "")) or check
        sec_anchor = anchors.new("sec", check)
        sec_findings = []
        counts = dict.fromkeys(SEVERITY_ORDER, 0)
        for f in raw.get("findings") or []:
            if not isinstance(f, dict):
                continue
            sev = clean_severity(f.get("severity"))
            counts[sev] += 1
            fid = text(f.get("id", "")) or f"{check}.finding"
            fv = FindingView(
                id=fid, anchor=anchors.new("f", fid), severity=sev,
                title=text(f.get("title", "")) or fid, detail=text(f.get("detail", "")),
                recommendation=text(f.get("recommendation", "")),
                evidence=_evidence(f.get("evidence")), check=check, section_title=title,
                section_anchor=sec_anchor, blocking=severity_rank(sev) >= severity_rank(fail_on),
                order=order, category=CATEGORY_LABEL.get(text(f.get("category", "")), ""))
            order += 1
            sec_findings.append(fv)
        metrics = [MetricView(text(k), fmt_number(as_float(v)) if as_float(v) is not None
                              else fmt_value(v), as_float(v))
                   for k, v in (raw.get("metrics") or {}).items()] \
            if isinstance(raw.get("metrics"), dict) else []
        tables = [_table(t, anchors.new("t", f"{check}-{_get(t, 'id', i)}"))
                  for i, t in enumerate(raw.get("tables") or [])]
        figures = [_figure(fig, anchors.new("fig", f"{check}-{_get(fig, 'id', i)}"))
                   for i, fig in enumerate(raw.get("figures") or [])]
        duration = as_float(raw.get("duration_s"))
        sections.append(SectionView(
            check=check, title=title, anchor=sec_anchor, status=clean_status(raw.get("status")),
            summary=text(raw.get("summary", "")), reading=text(raw.get("reading", "")),
            error=text(raw.get("error", "")), findings=sec_findings, metrics=metrics,
            tables=tables, figures=figures, params=_kvs(raw.get("params")),
            duration=f"{duration:.2f} s" if duration is not None else "–", counts=counts,
            seconds=max(duration or 0.0, 0.0)))
        findings.extend(sec_findings)
    ranked = sorted(findings, key=lambda f: (-severity_rank(f.severity), f.order))
    counts = dict.fromkeys(SEVERITY_ORDER, 0)
    for f in findings:
        counts[f.severity] += 1
    failing = sum(1 for f in findings if f.blocking)
    status_counts = dict.fromkeys(STATUSES, 0)
    for s in sections:
        status_counts[s.status] += 1
    status = text(_get(summary, "status", "")) or ("fail" if failing else "pass")
    status = status if status in ("pass", "fail") else "fail"
    model = _model(doc)
    return ReportView(
        title=f"Audit of {model['name']}: {status.upper()}",
        model=model, data=_data(doc), status=status, fail_on=fail_on, failing=failing,
        counts=counts, total_findings=len(findings), status_counts=status_counts,
        headline=headline(status, fail_on, failing, counts,
                          [sec.status for sec in sections]),
        expectation=expectation(_get(doc, "card", {}) or {}, status, fail_on,
                                _requested(_get(doc, "config", {}) or {})),
        sections=sections, findings=ranked, top=_top(ranked),
        card=_card(_get(doc, "card", {}) or {}),
        card_metrics=[MetricView(text(k), fmt_value(v), as_float(v))
                      for k, v in (_get(_get(doc, "card"), "metrics") or {}).items()],
        recipe=_kvs(_get(_get(doc, "card"), "recipe")),
        repro=_repro(doc), config_toml=config_toml(_get(doc, "config", {}) or {}),
        tool=f"{text(_get(_get(doc, 'tool'), 'name', 'audit'))} "
             f"{text(_get(_get(doc, 'tool'), 'version', '?'))}",
        created=nice_time(_get(_get(doc, "run"), "created_at", "")),
    )


def _top(ranked: list[FindingView]) -> list[FindingView]:
    """The findings worth reading first: the most severe, info only when nothing else."""
    above_info = [f for f in ranked if f.severity != "info"]
    return (above_info or ranked)[:TOP_FINDINGS]


def _model(doc: dict[str, Any]) -> dict[str, Any]:
    m = _get(doc, "model", {}) or {}
    inp = _get(m, "input", {}) or {}
    shape = _get(inp, "shape") or []
    rng = _get(inp, "range") or []
    classes = [text(c) for c in (_get(m, "classes") or [])]
    input_text = text(_get(inp, "kind", ""))
    if shape:
        input_text += " " + "×".join(text(s) for s in shape)
    if isinstance(rng, list) and len(rng) == 2:
        input_text += f", values in [{fmt_number(rng[0])}, {fmt_number(rng[1])}]"
    if _get(inp, "mean") is not None:
        input_text += "; normalised by the loader"
    return {
        "name": text(_get(m, "name", "")) or "model",
        "path": text(_get(m, "path", "")), "format": text(_get(m, "format", "")),
        "arch": text(_get(m, "arch", "")), "sha256": text(_get(m, "sha256", "")),
        "parameters": (f"{_get(m, 'parameters'):,}" if isinstance(_get(m, "parameters"), int)
                       else fmt_number(_get(m, "parameters"))),
        "input": input_text.strip(), "classes": classes,
        "classes_text": ", ".join(classes[:30]) + (", …" if len(classes) > 30 else ""),
        "features": [text(f) for f in (_get(inp, "feature_names") or [])],
    }


def _data(doc: dict[str, Any]) -> dict[str, Any]:
    d = _get(doc, "data", {}) or {}
    return {"name": text(_get(d, "name", "")), "source": text(_get(d, "source", "")),
            "size": fmt_number(_get(d, "size")), "kind": text(_get(d, "kind", "")),
            "sha256": text(_get(d, "sha256", "")),
            "shape": "×".join(text(s) for s in (_get(d, "shape") or []))}


_CARD_FIELDS = (
    ("description", "Description", ""),
    ("intended_use", "Intended use", "Not stated in the card."),
    ("limitations", "Limitations", "Not stated in the card."),
    ("dataset", "Data", "Not stated in the card."),
    ("training_data", "Training data", ""),
    ("task", "Task", ""),
    ("target", "Target column", ""),
    ("sensitive", "Sensitive attributes", ""),
    ("robustness", "Robustness budgets", ""),
    ("parent", "Derived from", ""),
    ("checks", "Checks named by the card", ""),
    ("extra", "More", ""),
)


def _card(card: dict[str, Any]) -> list[KV]:
    out = []
    for key, label, missing in _CARD_FIELDS:
        v = card.get(key)
        if v in (None, "", [], {}):
            if missing:
                out.append(KV(label, missing))
            continue
        out.append(KV(label, compact(v), block=isinstance(v, dict)))
    return out


def _repro(doc: dict[str, Any]) -> list[KV]:
    run = _get(doc, "run", {}) or {}
    cfg = _get(doc, "config", {}) or {}
    tool = _get(doc, "tool", {}) or {}
    summary = _get(doc, "summary", {}) or {}
    seed = _get(run, "seed", _get(cfg, "seed"))
    env = ", ".join(x for x in (
        f"Python {text(_get(run, 'python'))}" if _get(run, "python") else "",
        f"torch {text(_get(run, 'torch'))}" if _get(run, "torch") else "",
        text(_get(run, "platform", "")), text(_get(run, "device", ""))) if x)
    duration = as_float(_get(summary, "duration_s"))
    rows = [
        KV("Command", text(_get(run, "command", "")) or "–", code=True),
        KV("Seed", f"{fmt_number(seed)}{' (quick mode)' if _get(run, 'quick') else ''}"),
        KV("Tool", f"{text(_get(tool, 'name', 'audit'))} {text(_get(tool, 'version', '?'))}"
                   f" · result schema {text(_get(doc, 'schema_version', '?'))}"),
        KV("Configuration", text(_get(cfg, "source", "")) or "defaults (no audit.toml)",
           code=bool(_get(cfg, "source"))),
        KV("Environment", env or "–"),
        KV("Created", (text(_get(run, "created_at", "")) or "–")
           + (f" · took {duration:.1f} s" if duration is not None else "")),
        KV("Model sha256", text(_get(_get(doc, "model"), "sha256", "")) or "–", code=True),
        KV("Data sha256", text(_get(_get(doc, "data"), "sha256", "")) or "–", code=True),
    ]
    return rows
