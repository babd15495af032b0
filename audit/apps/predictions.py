"""Model-free fairness audits of a predictions file (``audit fairness``).

The result is an ordinary :class:`~audit.result.AuditResult` whose model block describes the
predictions file, so it renders and validates like any audit (HTML, JSON, Markdown, JUnit,
``audit diff``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import platform
import sys
import time
from pathlib import Path

from audit.checks import make_params
from audit.config import AuditConfig, resolve_config
from audit.fairness.check import FairnessCheck
from audit.fairness.metrics import assess_fairness
from audit.fairness.params import FairnessParams
from audit.fairness.predictions import read_predictions
from audit.fairness.section import fairness_section
from audit.result import AuditResult, Severity, section_status, sha256_bytes, summarize
from audit.subject import derive_seed
from audit.version import __version__


def audit_predictions(
    path: str | Path,
    *,
    y_true: str,
    y_pred: str,
    sensitive: list[str],
    score: str | None = None,
    pos_label: str | None = None,
    config: AuditConfig | str | Path | None = None,
    seed: int | None = None,
    quick: bool | None = None,
    fail_on: str | Severity | None = None,
    command: str = "",
) -> AuditResult:
    """Audit the fairness of decisions stored in a CSV file; returns an :class:`AuditResult`
    with one ``fairness`` section (settings from ``[checks.fairness]`` of ``config``)."""
    t0 = time.perf_counter()
    path = Path(path)
    cfg = resolve_config(config, seed=seed, quick=quick, fail_on=fail_on)
    params: FairnessParams = make_params(FairnessCheck, cfg.params.get("fairness"), cfg.quick)
    preds = read_predictions(path, y_true=y_true, y_pred=y_pred, sensitive=sensitive,
                             score=score, pos_label=pos_label)
    start = time.perf_counter()
    res = assess_fairness(preds.y_true, preds.y_pred, preds.sensitive, score=preds.score,
                          intersectional=params.intersectional,
                          min_group_size=params.min_group_size, max_groups=params.max_groups,
                          n_boot=params.n_boot, ci_level=params.ci_level,
                          random_state=derive_seed(cfg.seed, "fairness") % (2**31),
                          calibration_bins=params.calibration_bins)
    used = dataclasses.asdict(params)
    used["sensitive"] = list(sensitive)
    used["positive_class"] = preds.positive
    section = fairness_section(res, params, check=FairnessCheck.name, title=FairnessCheck.title,
                               positive=preds.positive, params=used)
    section.duration_s = time.perf_counter() - start
    section.status = section_status(section, cfg.fail_on)
    blob = path.read_bytes()
    digest = sha256_bytes(blob)
    effective = cfg.to_dict()
    effective["checks"] = [FairnessCheck.name]
    effective["params"] = {FairnessCheck.name: used}
    columns = {"y_true": y_true, "y_pred": y_pred, "score": score, "sensitive": sensitive,
               "pos_label": pos_label}
    return AuditResult(
        tool={"name": "audit", "version": __version__},
        model={"name": path.name, "path": str(path), "sha256": digest,
               "format": "predictions file (CSV)", "arch": "none: decisions read from a file",
               "parameters": 0,
               "input": {"kind": "tabular", "shape": [len(preds.columns)], "range": [0.0, 1.0],
                         "mean": None, "std": None, "feature_names": preds.columns},
               "classes": [preds.negative, preds.positive], "columns": columns},
        data={"name": path.name, "size": res.n, "sha256": digest, "kind": "tabular",
              "source": str(path), "shape": [len(preds.columns)],
              "feature_names": preds.columns},
        config=effective,
        summary=summarize([section], cfg.fail_on, time.perf_counter() - t0),
        sections=[section],
        card={},
        run={"command": command, "seed": cfg.seed, "quick": cfg.quick,
             "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
             "python": sys.version.split()[0], "torch": _torch_version(),
             "platform": platform.platform(terse=True), "device": "none"},
    )


def _torch_version() -> str:
    import torch

    return str(torch.__version__)
