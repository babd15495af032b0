"""CheckList-style behavioural tests for text classifiers (Ribeiro et al. 2020): an
*invariance* test fills a template's slots and requires the prediction not to change when one
slot (names, places) varies; a *directional* test appends or prepends text and requires the
probability of a class not to move the wrong way. Tests are data: :func:`load_behaviour_tests`
reads them from a list of tables (``audit.toml``), so a user adds their own.

A template is a string with ``{slot}`` placeholders. An invariance test's cases are every
combination of the other slots' values; in each case the ``vary`` slot takes each of its
values, and the case fails when the predicted class is not the same for all of them. The
failure rate over cases has a Wilson interval.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from audit.errors import ConfigError
from audit.stats import wilson

ProbaFn = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class BehaviourOutcome:
    """Cases run, failed, the failure rate with its interval, and up to 3 failing examples."""

    name: str
    kind: str
    cases: int
    failures: int
    rate: float
    low: float
    high: float
    examples: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class InvarianceTest:
    """The prediction must not change as ``vary`` takes each of ``slots[vary]``."""

    name: str
    template: str
    slots: Mapping[str, Sequence[str]]
    vary: str

    def run(self, proba: ProbaFn, conf: float = 0.95) -> BehaviourOutcome:
        """Fill, predict and count the failing cases."""
        others = [s for s in self.slots if s != self.vary]
        cases = list(itertools.product(*(self.slots[s] for s in others)))
        values = list(self.slots[self.vary])
        texts = [self.template.format(**dict(zip(others, case, strict=True)), **{self.vary: v})
                 for case in cases for v in values]
        pred = proba(texts).argmax(1).reshape(len(cases), len(values))
        bad = np.flatnonzero((pred != pred[:, :1]).any(axis=1))
        examples = [f"{texts[i * len(values)]!r}: {sorted(set(pred[i].tolist()))}"
                    for i in bad[:3]]
        return _outcome(self.name, "invariance", len(cases), len(bad), conf, examples)


@dataclass(frozen=True)
class DirectionalTest:
    """Adding ``add`` (``where``: end or start) to each of ``texts`` must not lower (``up``)
    or raise (``down``) the probability of class ``target`` by more than ``tolerance``."""

    name: str
    texts: Sequence[str]
    add: str
    target: int
    direction: Literal["up", "down"] = "up"
    where: Literal["end", "start"] = "end"
    tolerance: float = 0.01

    def run(self, proba: ProbaFn, conf: float = 0.95) -> BehaviourOutcome:
        """Predict before and after the change and count the texts that moved the wrong way."""
        texts = list(self.texts)
        changed = [f"{t} {self.add}" if self.where == "end" else f"{self.add} {t}"
                   for t in texts]
        before, after = proba(texts)[:, self.target], proba(changed)[:, self.target]
        move = after - before if self.direction == "up" else before - after
        bad = np.flatnonzero(move < -self.tolerance)
        examples = [f"{changed[i]!r}: {before[i]:.2f} -> {after[i]:.2f}" for i in bad[:3]]
        return _outcome(self.name, "directional", len(texts), len(bad), conf, examples)


def _outcome(name: str, kind: str, cases: int, failures: int, conf: float,
             examples: list[str]) -> BehaviourOutcome:
    lo, hi = wilson(failures, cases, conf)
    return BehaviourOutcome(name, kind, cases, failures, failures / cases if cases else math.nan,
                       lo, hi, examples)


def load_behaviour_tests(tables: Sequence[Mapping[str, Any]], classes: Sequence[str]
                      ) -> list[InvarianceTest | DirectionalTest]:
    """Tests from ``audit.toml`` tables: ``{name, template, slots, vary}`` for invariance,
    ``{name, texts, add, target (a class name), direction?, where?, tolerance?}`` for
    directional; :class:`ConfigError` names the table and the key at fault."""
    out: list[InvarianceTest | DirectionalTest] = []
    for n, t in enumerate(tables):
        where = f"behavioural test {n + 1} ({t.get('name', 'unnamed')!s})"
        try:
            if "template" in t:
                slots = {str(k): [str(v) for v in vals] for k, vals in dict(t["slots"]).items()}
                inv = InvarianceTest(str(t["name"]), str(t["template"]), slots, str(t["vary"]))
                if inv.vary not in slots:
                    raise ConfigError(f"{where}: vary {inv.vary!r} is not one of its slots")
                inv.template.format(**{k: v[0] for k, v in slots.items()})
                test: InvarianceTest | DirectionalTest = inv
            else:
                if str(t["target"]) not in classes:
                    raise ConfigError(f"{where}: target {t['target']!r} is not a class "
                                      f"({', '.join(classes)})")
                test = DirectionalTest(str(t["name"]), [str(x) for x in t["texts"]],
                                       str(t["add"]), list(classes).index(str(t["target"])),
                                       t.get("direction", "up"), t.get("where", "end"),
                                       float(t.get("tolerance", 0.01)))
                if test.direction not in ("up", "down") or test.where not in ("end", "start"):
                    raise ConfigError(f"{where}: direction must be up or down and where end "
                                      "or start")
        except ConfigError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ConfigError(f"{where}: {type(e).__name__} {e}; an invariance test needs "
                              "name, template, slots and vary; a directional one name, texts, "
                              "add and target") from None
        out.append(test)
    return out
