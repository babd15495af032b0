"""The ``fairness`` check: group metrics of a model's decisions on data with sensitive columns.

It applies to tabular data with named columns (``extras["frame"]``) and is skipped on other
data. On tabular data it needs inputs only the user can give: sensitive columns (``--sensitive``,
the dataset's own, or the card's ``sensitive``) that the data holds, and for a model of more
than two classes the favourable one. Without them :meth:`FairnessCheck.applies` raises a
:class:`~audit.errors.DataError` naming the data's columns and the fix: asked for by name
(``--checks fairness``), that is the run's error (exit 2), since a run that looks complete and
green without any fairness number would mislead; in the default selection the check is skipped
with that reason. Decisions are the model's argmax; the favourable outcome is the card's second
class of a binary model, or ``positive_class`` (one class against the rest).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from audit.checks import Check, register
from audit.datasets.tabular import list_columns, missing_sensitive
from audit.errors import ConfigError, DataError
from audit.fairness.groups import sensitive_frame
from audit.fairness.metrics import assess_fairness
from audit.fairness.params import FairnessParams
from audit.fairness.section import fairness_section
from audit.result import Section
from audit.subject import Subject


def sensitive_columns(subject: Subject, params: FairnessParams) -> list[str]:
    """The sensitive columns to assess: the check's setting, else the data's, else the card's."""
    return sensitive_source(subject, params)[0]


def sensitive_source(subject: Subject, params: FairnessParams) -> tuple[list[str], str]:
    """The sensitive columns to assess and where they were named (for error messages)."""
    if params.sensitive:
        return list(params.sensitive), "[checks.fairness] sensitive"
    from_data = subject.data.extras.get("sensitive")
    if from_data:
        return [str(c) for c in from_data], "the data"
    return list(subject.card.sensitive or []), "the card's 'sensitive'"


def positive_index(classes: list[str], positive_class: str) -> int | None:
    """Index of the favourable class; ``None`` when it cannot be decided (multi-class, unset).

    Raises :class:`ConfigError` when ``positive_class`` names no class."""
    if positive_class:
        if positive_class in classes:
            return classes.index(positive_class)
        if positive_class.isdigit() and int(positive_class) < len(classes):
            return int(positive_class)
        raise ConfigError(f"[checks.fairness] positive_class {positive_class!r} is not a class; "
                          f"classes are {', '.join(classes)}")
    return 1 if len(classes) == 2 else None


@register
class FairnessCheck(Check[FairnessParams]):
    """Group metrics (selection rate, TPR, FPR, precision, accuracy, calibration),
    demographic parity and equalized odds with bootstrap intervals, intersectional groups."""

    name = "fairness"
    title = "Fairness across groups"

    def applies(self, subject: Subject) -> str | None:
        """``None`` when the check can run; the reason it does not apply (not tabular data);
        :class:`DataError` when an input only the user can name is missing (see the module)."""
        p: FairnessParams = self.params
        cols, source = sensitive_source(subject, p)
        frame = subject.data.extras.get("frame")
        if frame is None:
            named = f" ({', '.join(cols)})" if cols else ""
            return (f"sensitive attributes{named} need tabular data with named columns (a .csv "
                    "file or a bundled tabular dataset)")
        where = subject.data.name
        if not cols:
            raise DataError(f"no sensitive column to assess fairness by: none was passed and "
                            f"the card names none; the columns of {where} are "
                            f"{list_columns(frame)}; pass --sensitive COLUMN (or list it in the "
                            "card's 'sensitive')")
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise missing_sensitive(missing, f"named by {source} not in {where}", frame)
        classes = subject.card.classes
        if positive_index(classes, p.positive_class) is None:
            raise DataError(f"the model has {len(classes)} classes ({', '.join(classes[:10])}); "
                            "fairness compares one favourable outcome against the rest: set "
                            "positive_class under [checks.fairness] in audit.toml (--config)")
        return None

    def run(self, subject: Subject) -> Section:
        p: FairnessParams = self.params
        cols = sensitive_columns(subject, p)
        frame = subject.data.extras["frame"]
        if len(frame) != len(subject.data):
            raise DataError(f"the data's frame has {len(frame)} rows but the data has "
                            f"{len(subject.data)}")
        sens = sensitive_frame(frame, cols, where=subject.data.name)
        classes = subject.card.classes
        pos = positive_index(classes, p.positive_class)
        assert pos is not None
        y = (subject.data.y.numpy() == pos).astype(np.int64)
        pred = (subject.data_pred.numpy() == pos).astype(np.int64)
        score = subject.data_proba[:, pos].numpy().astype(np.float64)
        res = assess_fairness(y, pred, sens, score=score, intersectional=p.intersectional,
                              min_group_size=p.min_group_size, max_groups=p.max_groups,
                              n_boot=p.n_boot, ci_level=p.ci_level,
                              random_state=int(subject.rng("fairness").integers(2**31)),
                              calibration_bins=p.calibration_bins)
        params = dataclasses.asdict(p)
        params["sensitive"] = cols
        params["positive_class"] = classes[pos]
        return fairness_section(res, p, check=self.name, title=self.title,
                                positive=classes[pos], params=params)
