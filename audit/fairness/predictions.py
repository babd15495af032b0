"""Model-free fairness audits: a CSV of predictions a user already has (``audit fairness``).

The file holds one row per decision with the true label, the prediction, optionally a score
(probability of the favourable outcome) and the sensitive columns. The result is an ordinary
:class:`~audit.result.AuditResult` whose model block describes the predictions file, so it renders
and validates like any audit (HTML, JSON, Markdown, JUnit, ``audit diff``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from audit.checks import make_params
from audit.config import AuditConfig, resolve_config
from audit.errors import DataError, UsageError
from audit.fairness.check import FairnessCheck
from audit.fairness.groups import sensitive_frame
from audit.fairness.metrics import assess_fairness
from audit.fairness.params import FairnessParams
from audit.fairness.section import fairness_section
from audit.result import AuditResult, Severity, section_status, sha256_bytes, summarize
from audit.subject import derive_seed
from audit.version import __version__

_TRUE = {"1", "1.0", "true", "yes", "y", "t"}
_FALSE = {"0", "0.0", "false", "no", "n", "f"}


@dataclass
class Predictions:
    """Decisions read from a predictions file: 0/1 labels (1 = favourable) and groups."""

    y_true: np.ndarray
    y_pred: np.ndarray
    score: np.ndarray | None
    sensitive: pd.DataFrame
    positive: str
    negative: str
    columns: list[str]


def _to_binary(values: pd.Series, column: str, pos_label: str | None, path: Path
               ) -> tuple[np.ndarray, str, str]:
    text = values.astype("string").str.strip()
    if text.isna().any() or (text == "").any():
        row = int(np.flatnonzero((text.isna() | (text == "")).to_numpy())[0])
        raise DataError(f"{path}: column {column!r} is empty in row {row + 2}; every row needs "
                        "a label")
    raw = text.astype(str).to_numpy()
    seen = sorted(set(raw.tolist()))
    if pos_label is not None:
        others = [v for v in seen if v != pos_label]
        negative = others[0] if len(others) == 1 else f"not {pos_label}"
        return (raw == pos_label).astype(np.int64), pos_label, negative
    if {v.lower() for v in seen} <= _TRUE | _FALSE:
        out = np.array([v.lower() in _TRUE for v in raw.tolist()], dtype=np.int64)
        return out, "1", "0"
    shown = ", ".join(repr(v) for v in seen[:6]) + (" …" if len(seen) > 6 else "")
    numeric = pd.to_numeric(pd.Series(seen), errors="coerce").notna().all()
    hint = ("these look like scores: pass them with --score and a 0/1 decision column with "
            "--y-pred" if numeric else "pass --pos-label VALUE naming the favourable outcome")
    raise DataError(f"{path}: column {column!r} holds {shown}, not 0/1 labels; {hint}")


def read_predictions(path: Path, *, y_true: str, y_pred: str, sensitive: list[str],
                     score: str | None = None, pos_label: str | None = None) -> Predictions:
    """Read and validate a predictions CSV; :class:`DataError` names any problem in one line."""
    from audit.datasets.tabular import read_csv

    if not path.exists():
        raise DataError(f"predictions file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a directory; pass a CSV file of predictions")
    frame = read_csv(path)
    wanted = [y_true, y_pred, *([score] if score else []), *sensitive]
    missing = [c for c in dict.fromkeys(wanted) if c not in frame.columns]
    if missing:
        shown = ", ".join(map(str, list(frame.columns)[:25]))
        raise DataError(f"{path}: column(s) {', '.join(missing)} not found; columns are {shown}")
    if not sensitive:
        raise UsageError("name the sensitive column(s) with --sensitive COL[,COL]")
    yt, positive, negative = _to_binary(frame[y_true], y_true, pos_label, path)
    yp, _, _ = _to_binary(frame[y_pred], y_pred, pos_label, path)
    if pos_label is not None:
        true_values = set(frame[y_true].astype(str).str.strip())
        pred_values = set(frame[y_pred].astype(str).str.strip())
        if pos_label not in true_values | pred_values:
            shown = ", ".join(sorted(true_values | pred_values)[:6])
            raise DataError(f"{path}: --pos-label {pos_label!r} occurs in neither {y_true!r} nor "
                            f"{y_pred!r}; values are {shown}")
        for column, values in ((y_true, true_values), (y_pred, pred_values)):
            if len(values) > 2:
                shown = ", ".join(repr(v) for v in sorted(values)[:6])
                raise DataError(f"{path}: column {column!r} holds {len(values)} distinct values "
                                f"({shown}); fairness metrics need two outcomes")
        strange = sorted(pred_values - true_values - {pos_label})
        if strange and len(true_values) == 2:
            raise DataError(f"{path}: {y_pred!r} holds {strange[0]!r}, which is not a label of "
                            f"{y_true!r} ({', '.join(sorted(true_values))})")
    s = None
    if score:
        col = pd.to_numeric(frame[score], errors="coerce")
        bad = col.isna() | (col < 0) | (col > 1)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{path}: score column {score!r} must be a probability in [0, 1]; "
                            f"row {row + 2} has {frame[score].iloc[row]!r}")
        s = col.to_numpy(dtype=np.float64)
    return Predictions(y_true=yt, y_pred=yp, score=s,
                       sensitive=sensitive_frame(frame, sensitive, where=str(path)),
                       positive=positive, negative=negative,
                       columns=[c for c in (y_pred, score) if c])


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
