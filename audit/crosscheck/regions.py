"""Surrogate against saliency: do the global surrogate's rules rest on the shortcut region?

When the saliency check finds reliance outside the object in one place (its
``saliency.outside-object`` finding names a box), the surrogate tree's rules over image regions
(``mean red of region r1c1``, a ``grid x grid`` layout) are read back: the share of the rules'
coverage whose conditions test a region overlapping the box. Two independent methods then agree
that the model decides by that region: a ``crosscheck.surrogate-on-shortcut`` defect, high
when the surrogate is faithful enough to read as the model's logic. A surrogate that ignores
the region is stated as a disagreement (no finding: the surrogate's regions are coarse).
"""

from __future__ import annotations

import re
from typing import Any

from audit.crosscheck import Audited, CrossCheck, CrossResult, register, row
from audit.policy import Category, kind
from audit.result import Section, Severity, Table

SURROGATE_ON_SHORTCUT = kind(
    "crosscheck.surrogate-on-shortcut", Category.DEFECT,
    "The surrogate's rules split on the region where saliency found a shortcut: two methods "
    "agree the model decides by it (high when the surrogate is faithful).")

SHARE = 0.5
"""Share of the rules' coverage on the flagged region from which the methods agree."""

_REGION = re.compile(r"region r(\d+)c(\d+)")


def _edges(n: int, grid: int) -> list[int]:
    # as audit.surrogate.features.RegionView: np.linspace(0, n, grid + 1).round()
    return [round(n * i / grid) for i in range(grid + 1)]


def flagged_box(saliency: Section) -> dict[str, Any] | None:
    """The box ({row, col, size, where}) saliency's shortcut finding names, if localised."""
    f = next((f for f in saliency.findings if f.id == "saliency.outside-object"), None)
    if f is None or f.severity.rank < Severity.MEDIUM.rank:
        return None
    box = f.evidence.get("hotspot")
    if not isinstance(box, dict) or not {"row", "col", "size"} <= set(box):
        return None
    if box.get("localised") is False:
        return None
    return box


def rule_share(surrogate: Section, box: dict[str, Any], shape: tuple[int, int]
               ) -> tuple[float, int] | None:
    """(coverage share of the rules testing a region that overlaps ``box``, rules read)."""
    rules = next((t for t in surrogate.tables if t.id == "rules"), None)
    if rules is None or "IF" not in rules.columns or "coverage" not in rules.columns:
        return None
    grid = int(surrogate.params.get("grid", 4) or 4)
    rows, cols = _edges(shape[0], grid), _edges(shape[1], grid)
    r0, c0, size = int(box["row"]), int(box["col"]), int(box["size"])

    def overlaps(i: int, j: int) -> bool:
        return (rows[i - 1] < r0 + size and r0 < rows[i]
                and cols[j - 1] < c0 + size and c0 < cols[j])

    on = total = 0.0
    cond, cov = rules.columns.index("IF"), rules.columns.index("coverage")
    for r in rules.rows:
        weight = float(r[cov] or 0.0) if isinstance(r[cov], int | float) else 0.0
        cells = {(int(a), int(b)) for a, b in _REGION.findall(str(r[cond]))}
        total += weight
        if any(1 <= i <= grid and 1 <= j <= grid and overlaps(i, j) for i, j in cells):
            on += weight
    return (on / total if total > 0 else 0.0), len(rules.rows)


@register
class SurrogateSaliency(CrossCheck):
    """Whether the surrogate's rules rest on the region saliency flags as a shortcut."""

    name = "surrogate-saliency"
    title = "Surrogate rules against the saliency shortcut region"

    def run(self, audited: Audited) -> CrossResult | None:
        sal, sur = audited.section("saliency"), audited.section("surrogate")
        shape = (audited.model.get("input") or {}).get("shape") or []
        if sal is None or sur is None or len(shape) != 3:
            return None
        box = flagged_box(sal)
        if box is None:
            return None
        got = rule_share(sur, box, (int(shape[1]), int(shape[2])))
        if got is None:
            return None
        share, n_rules = got
        agreement = sur.metrics.get("tree_agreement", float("nan"))
        faithful = agreement >= float(sur.params.get("min_fidelity_medium", 0.9))
        where = str(box.get("where", "the flagged region"))
        table = Table(id="crosscheck-regions", title=self.title,
                      columns=["saliency flags", "surrogate rules read",
                               "coverage on that region", "surrogate agreement", "verdict"],
                      rows=[row(where, n_rules, round(share, 4), round(agreement, 4),
                                "agree" if share >= SHARE else "disagree")])
        if share < SHARE:
            return CrossResult(table=table, summary=(
                f"The surrogate's rules put {share:.0%} of their coverage on the {where}, "
                "where saliency finds a shortcut: the coarse surrogate does not show it."))
        sev = Severity.HIGH if faithful else Severity.MEDIUM
        f = SURROGATE_ON_SHORTCUT(
            sev, f"The surrogate's rules also rest on the {where}",
            f"Saliency finds the model relying on evidence outside the object at the {where}; "
            f"rules covering {share:.0%} of the surrogate tree's samples test a region that "
            f"overlaps it (tree agreement with the model {agreement:.1%}"
            f"{'' if faithful else ', below the fidelity threshold'}). Two independent methods "
            "agree that the model decides by this region.",
            evidence={"region": box, "coverage_share": share, "rules": n_rules,
                      "tree_agreement": agreement, "faithful": faithful},
            recommendation="Treat the surrogate section's rules as a description of the "
                           "shortcut, not of the task: fix the training data and retrain.")
        return CrossResult(findings=[f], table=table, summary=(
            f"The surrogate's rules put {share:.0%} of their coverage on the {where}, where "
            "saliency finds a shortcut: the two methods agree."))
