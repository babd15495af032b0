"""Our fairness bootstrap against Fairlearn's ``MetricFrame(n_boot=...)`` in the same run.

    python bench/bench_fairness.py [rows] [n_boot]

Both compute the same per-group rates and the same resamples (identical intervals, checked
here and in tests/test_fairness_metrics.py); Fairlearn evaluates a ``MetricFrame`` per resample
(pandas groupby + scikit-learn per group), we bincount confusion counts of all groups of all
resamples at once. Prints seconds and the ratio Fairlearn / ours for one grouping (sex × race on
Adult-sized data). Default 16,281 rows (the Adult test split) and 100 resamples.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate

from audit.fairness.metrics import assess_fairness


def main(rows: int = 16281, n_boot: int = 100) -> None:
    rng = np.random.default_rng(0)
    sf = pd.DataFrame({"sex": rng.choice(["F", "M"], rows, p=[0.33, 0.67]),
                       "race": rng.choice(list("abcde"), rows, p=[0.85, 0.1, 0.03, 0.01, 0.01])})
    y = (rng.random(rows) < 0.24).astype(int)
    pred = (rng.random(rows) < 0.1 + 0.6 * y).astype(int)
    start = time.perf_counter()
    ours = assess_fairness(y, pred, sf, intersectional=True, n_boot=n_boot, random_state=1)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    mf = MetricFrame(metrics={"sel": selection_rate, "tpr": true_positive_rate,
                              "fpr": false_positive_rate}, y_true=y, y_pred=pred,
                     sensitive_features=sf, n_boot=n_boot, ci_quantiles=[0.025, 0.975],
                     random_state=1)
    t_fl = time.perf_counter() - start
    inter = ours.groupings[-1].disparities["demographic_parity_difference"]
    lo, hi = mf.difference_ci()
    same = abs(inter.ci_low - lo["sel"]) < 1e-9 and abs(inter.ci_high - hi["sel"]) < 1e-9
    print(f"rows {rows}, resamples {n_boot}")
    print(f"fairlearn MetricFrame (sex × race only):      {t_fl:8.2f} s")
    print(f"audit assess_fairness (sex, race, sex × race): {t_ours:8.2f} s")
    print(f"ratio fairlearn / ours: {t_fl / t_ours:.1f}x (ours also does two more groupings, "
          "precision, accuracy and tests)")
    print(f"identical demographic-parity interval: {same} ({inter.ci_low:.6f}, "
          f"{inter.ci_high:.6f})")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
