"""Rates of two audit results tested for a change beyond noise at :data:`ALPHA`: McNemar's
exact test when both recorded per-sample outcomes on the same samples of the same data, the
unpaired two-proportion test otherwise (part of :mod:`audit.report.diff`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from audit.stats import Outcomes, RateChange, paired_change, unpaired_change

__all__ = ["ALPHA", "RateTest", "rate_tests"]

ALPHA = 0.05
"""Significance level of each rate's test (each rate on its own, not corrected for many)."""


@dataclass
class RateTest:
    """Whether one rate of a check changed from A to B by more than noise. ``note`` says why
    the test is unpaired (empty when paired)."""

    name: str
    change: RateChange
    note: str = ""

    @property
    def delta_text(self) -> str:
        """B − A in percentage points: ``+4.2 pt``."""
        d = (self.change.b - self.change.a) * 100
        return "0 pt" if d == 0 else ("+" if d > 0 else "−") + f"{abs(d):.1f} pt"

    @property
    def a_text(self) -> str:
        return f"{self.change.a:.1%}"

    @property
    def b_text(self) -> str:
        return f"{self.change.b:.1%}"

    @property
    def how(self) -> str:
        """The test and what it counted, plus why it is unpaired."""
        c = self.change
        return f"{c.method}, {c.evidence}" + (f" ({self.note})" if self.note else "")


def _rate_names(ma: dict[str, Any], mb: dict[str, Any], oa: Outcomes | None,
                ob: Outcomes | None) -> list[str]:
    """Rates of both sections: metrics with an interval, or with per-sample outcomes."""
    def rates(m: dict[str, Any], o: Outcomes | None) -> list[str]:
        return [k for k in m if f"{k}_ci_low" in m and f"{k}_ci_high" in m] + \
            [k for k in (o.rates if o else {}) if k in m]

    in_b = set(rates(mb, ob))
    return [k for k in dict.fromkeys(rates(ma, oa)) if k in in_b]


def _count(o: Outcomes | None, m: dict[str, Any]) -> int | None:
    n = o.samples if o is not None else m.get("samples")
    return int(n) if isinstance(n, int | float) and n > 0 else None


def rate_tests(sec_a: dict[str, Any], sec_b: dict[str, Any], alpha: float = ALPHA
               ) -> list[RateTest]:
    """Test every rate the two JSON sections share: paired (McNemar) when their outcomes
    were recorded on the same samples of the same data and agree with the metric, else
    unpaired on the sample counts (a section's outcomes or its ``samples`` metric)."""
    ma, mb = sec_a.get("metrics") or {}, sec_b.get("metrics") or {}
    oa, ob = Outcomes.read(sec_a.get("outcomes")), Outcomes.read(sec_b.get("outcomes"))
    why = ("no per-sample outcomes recorded" if oa is None or ob is None
           else oa.pairs_with(ob))
    out = []
    for name in _rate_names(ma, mb, oa, ob):
        va, vb = ma.get(name), mb.get(name)
        if not isinstance(va, int | float) or not isinstance(vb, int | float):
            continue
        note = why
        if note is None and oa is not None and ob is not None:
            xa, xb = oa.rate(name), ob.rate(name)
            if xa is None or xb is None:
                note = "per-sample outcomes not recorded for this rate"
            elif not (math.isclose(float(xa.mean()), va, abs_tol=1e-9)
                      and math.isclose(float(xb.mean()), vb, abs_tol=1e-9)):
                note = "per-sample outcomes do not match the metric"
            else:
                out.append(RateTest(name, paired_change(xa, xb, alpha)))
                continue
        na, nb = _count(oa, ma), _count(ob, mb)
        if na is None or nb is None:
            continue
        out.append(RateTest(name, unpaired_change(float(va), na, float(vb), nb, alpha),
                            note or ""))
    return out
