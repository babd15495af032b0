"""Our interval and test statistics (audit.stats) against scipy.stats in the same run.

    python bench/bench_stats.py

For the rate counts an audit reports (n = 100, 360, 1000, 1797; every k): the largest
absolute difference and the best-of-N wall time of :func:`audit.stats.clopper_pearson`
against ``scipy.stats.binomtest(k, n).proportion_ci(method="exact")``, of
:func:`audit.stats.wilson` against ``method="wilson"``, and of :func:`audit.stats.mcnemar_exact`
against ``binomtest(b, b + c, 0.5).pvalue`` over discordant counts up to 60 each; printed
with the time ratio (ours / scipy's). The goal: identical to 1e-12, not slower.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from scipy.stats import binomtest

from audit.stats import clopper_pearson, mcnemar_exact, wilson

COUNTS = [(k, n) for n in (100, 360, 1000, 1797) for k in range(n + 1)]
PAIRS = [(b, c) for b in range(61) for c in range(61)]


def best_of(fn: Callable[[], Any], repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def row(name: str, ours: Callable[[], list[float]], ref: Callable[[], list[float]]) -> None:
    diff = max(abs(a - b) for a, b in zip(ours(), ref(), strict=True))
    t_ours, t_ref = best_of(ours), best_of(ref)
    print(f"{name:<28} {len(ours()):>6} {diff:>10.1e} {t_ours * 1e3:>10.1f} "
          f"{t_ref * 1e3:>10.1f} {t_ours / t_ref:>7.3f}")


def main() -> None:
    print(f"{'statistic':<28} {'calls':>6} {'max diff':>10} {'ours (ms)':>10} "
          f"{'scipy (ms)':>10} {'ratio':>7}")
    row("Clopper-Pearson 95%",
        lambda: [v for k, n in COUNTS for v in clopper_pearson(k, n)],
        lambda: [v for k, n in COUNTS
                 for v in binomtest(k, n).proportion_ci(0.95, method="exact")])
    row("Wilson 95%",
        lambda: [v for k, n in COUNTS for v in wilson(k, n)],
        lambda: [float(v) for k, n in COUNTS
                 for v in binomtest(k, n).proportion_ci(0.95, method="wilson")])
    row("McNemar exact p-value",
        lambda: [mcnemar_exact(b, c) for b, c in PAIRS],
        lambda: [1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue for b, c in PAIRS])


if __name__ == "__main__":
    main()
