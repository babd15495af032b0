"""The finding kinds of ``audit history`` (regressions, drift, trends and thresholds over a
model's results), declared below the report layer so that the severity policy (``audit config
--policy``, the README table) lists them without importing the renderers."""

from __future__ import annotations

from audit.policy import Category, kind

__all__ = ["DRIFT", "MIXED", "REGRESSION", "THRESHOLD", "TREND"]

REGRESSION = kind("history.regression.{metric}", Category.DEFECT,
                  "A headline metric of the latest run left the previous run's interval on its "
                  "worse side, beyond noise (McNemar when paired, else the two-proportion or "
                  "interval z-test): high for model quality, medium for robustness, low for "
                  "explanation methods.")
DRIFT = kind("history.drift.{metric}", Category.EXPOSURE,
             "A drift score of the latest run is worse than the previous run's, beyond its "
             "interval and noise: the data moved further from the reference (medium).")
TREND = kind("history.trend.{metric}", Category.DEFECT,
             "A rate got significantly worse over all runs (Cochran-Armitage trend test, three "
             "runs or more): medium, low for explanation methods.")
THRESHOLD = kind("history.threshold.{metric}", Category.DEFECT,
                 "A metric of the latest run is past a bar set with --threshold (high).")
MIXED = kind("history.mixed-models", Category.COVERAGE,
             "The results audit different models (name or weights), tracked as one history "
             "with --allow-mixed (info).")
