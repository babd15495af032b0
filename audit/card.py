"""The model card (``card.json``): architecture, input spec, classes, data, metrics, recipe.

Example::

    {
      "name": "digits-cnn",
      "arch": "audit.zoo:DigitsCNN", "arch_kwargs": {},
      "input": {"kind": "image", "shape": [1, 8, 8], "range": [0.0, 1.0],
                "mean": null, "std": null},
      "classes": ["0", "1", ...],
      "dataset": "digits",
      "metrics": {"test_accuracy": 0.99},
      "recipe": {"command": "audit train digits-cnn", "seed": 0, ...}
    }

``input.range`` is the value range of the data the model takes (pixels in [0, 1] for the bundled
image models); ``mean``/``std``, when set, are applied by the loader in front of the model, so the
model's input space stays the pixel space and attack budgets are in pixel units.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from audit.errors import CheckpointError

_CARD_KEYS = {
    "name", "arch", "arch_kwargs", "input", "classes", "dataset", "task", "metrics", "recipe",
    "description", "intended_use", "limitations", "robustness", "sensitive", "target", "parent",
    "checks", "format_version", "training_data", "extra", "verdict",
}
_INPUT_KEYS = {"kind", "shape", "range", "mean", "std", "feature_names", "dtype"}


@dataclass
class InputSpec:
    """Per-sample input shape, value range, and optional normalisation applied by the loader."""

    shape: tuple[int, ...]
    range: tuple[float, float] = (0.0, 1.0)
    kind: Literal["image", "tabular"] = "image"
    mean: list[float] | None = None
    std: list[float] | None = None
    feature_names: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "shape": list(self.shape), "range": list(self.range),
                "mean": self.mean, "std": self.std, "feature_names": self.feature_names}


@dataclass
class ModelCard:
    """Parsed ``card.json``. Unknown top-level keys are refused so typos do not pass silently."""

    name: str
    arch: str
    input: InputSpec
    classes: list[str]
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    task: str = "classification"
    metrics: dict[str, float] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    intended_use: str = ""
    limitations: str = ""
    robustness: dict[str, Any] = field(default_factory=dict)
    sensitive: list[str] = field(default_factory=list)
    target: str | None = None
    parent: dict[str, Any] | None = None
    checks: list[str] | None = None
    training_data: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    verdict: dict[str, str] = field(default_factory=dict)
    """The verdict the card's intended use warrants at ``--fail-on high``: ``expected``
    (``"pass"`` or ``"fail"``) and ``reason``; the bundled models' are tested."""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def threat_model(self) -> dict[str, float]:
        """The largest epsilon per norm (``"linf"``, ``"l2"``) the card claims the model
        withstands: ``robustness.threat_model``, else an ``audit harden`` recipe's norm and
        eps; empty when the card makes no robustness claim."""
        claim = self.robustness.get("threat_model")
        if isinstance(claim, dict):
            return {str(k): float(v) for k, v in claim.items()
                    if isinstance(v, int | float) and not isinstance(v, bool)}
        norm, eps = self.recipe.get("norm"), self.recipe.get("eps")
        if isinstance(norm, str) and isinstance(eps, int | float) and "method" in self.recipe:
            return {norm: float(eps)}
        return {}

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format_version": 1, "name": self.name, "arch": self.arch,
            "arch_kwargs": self.arch_kwargs, "input": self.input.to_dict(),
            "classes": self.classes, "dataset": self.dataset, "task": self.task,
            "metrics": self.metrics, "recipe": self.recipe, "description": self.description,
            "intended_use": self.intended_use, "limitations": self.limitations,
            "robustness": self.robustness, "sensitive": self.sensitive, "target": self.target,
            "parent": self.parent, "checks": self.checks, "training_data": self.training_data,
            "extra": self.extra,
        }
        if self.verdict:
            d["verdict"] = dict(self.verdict)
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "card.json") -> ModelCard:
        """Validate and parse; every problem raises :class:`CheckpointError` naming the key."""
        if not isinstance(d, dict):
            raise CheckpointError(f"{where}: expected a JSON object at the top level")
        unknown = sorted(set(d) - _CARD_KEYS)
        if unknown:
            raise CheckpointError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                                  f"known keys: {', '.join(sorted(_CARD_KEYS))}")
        for key in ("name", "arch", "input", "classes"):
            if key not in d:
                raise CheckpointError(f"{where}: missing required key {key!r}")
        arch = d["arch"]
        if not isinstance(arch, str) or ":" not in arch:
            raise CheckpointError(f"{where}: 'arch' must be 'module:Class', got {arch!r}")
        inp = d["input"]
        if not isinstance(inp, dict):
            raise CheckpointError(f"{where}: 'input' must be an object with shape and range")
        bad_inp = sorted(set(inp) - _INPUT_KEYS)
        if bad_inp:
            raise CheckpointError(f"{where}: unknown key(s) in 'input': {', '.join(bad_inp)}")
        shape = inp.get("shape")
        if (not isinstance(shape, list) or not shape
                or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                           for s in shape)):
            raise CheckpointError(f"{where}: 'input.shape' must be a list of positive integers "
                                  f"(per sample, no batch dimension), got {shape!r}")
        rng = inp.get("range", [0.0, 1.0])
        if (not isinstance(rng, list) or len(rng) != 2
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in rng)
                or not rng[0] < rng[1]):
            raise CheckpointError(f"{where}: 'input.range' must be [low, high] with low < high, "
                                  f"got {rng!r}")
        kind = inp.get("kind", "image" if len(shape) >= 2 else "tabular")
        if kind not in ("image", "tabular"):
            raise CheckpointError(f"{where}: 'input.kind' must be 'image' or 'tabular'")
        for k in ("mean", "std"):
            v = inp.get(k)
            if v is not None and (not isinstance(v, list) or not all(
                    isinstance(a, int | float) and not isinstance(a, bool) for a in v)):
                raise CheckpointError(f"{where}: 'input.{k}' must be a list of numbers or null")
        if inp.get("std") is not None and any(s == 0 for s in inp["std"]):
            raise CheckpointError(f"{where}: 'input.std' must not contain 0")
        channels = int(shape[0]) if kind == "image" and shape else None
        for k in ("mean", "std"):
            v = inp.get(k)
            if channels is not None and v is not None and len(v) not in (1, channels):
                raise CheckpointError(f"{where}: 'input.{k}' has {len(v)} values for "
                                      f"{channels} channel(s) (input.shape {list(shape)}); "
                                      f"give one value per channel, or one for all")
        classes = d["classes"]
        if not isinstance(classes, list) or len(classes) < 2:
            raise CheckpointError(f"{where}: 'classes' must list at least two class names")
        kwargs = d.get("arch_kwargs", {}) or {}
        if not isinstance(kwargs, dict):
            raise CheckpointError(f"{where}: 'arch_kwargs' must be an object")
        name = d["name"]
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"{where}: 'name' must be a non-empty string")
        def _dict(key: str) -> dict[str, Any]:
            v = d.get(key) or {}
            if not isinstance(v, dict):
                raise CheckpointError(f"{where}: {key!r} must be an object")
            return v
        sensitive = d.get("sensitive") or []
        if not isinstance(sensitive, list) or not all(isinstance(s, str) for s in sensitive):
            raise CheckpointError(f"{where}: 'sensitive' must be a list of column names")
        checks = d.get("checks")
        if checks is not None and (not isinstance(checks, list)
                                   or not all(isinstance(c, str) for c in checks)):
            raise CheckpointError(f"{where}: 'checks' must be a list of check names")
        return cls(
            name=name, arch=arch, arch_kwargs=kwargs,
            input=InputSpec(shape=tuple(shape), range=(float(rng[0]), float(rng[1])), kind=kind,
                            mean=inp.get("mean"), std=inp.get("std"),
                            feature_names=inp.get("feature_names")),
            classes=[str(c) for c in classes], dataset=d.get("dataset"),
            task=str(d.get("task", "classification")), metrics=_dict("metrics"),
            recipe=_dict("recipe"), description=str(d.get("description", "") or ""),
            intended_use=str(d.get("intended_use", "") or ""),
            limitations=str(d.get("limitations", "") or ""), robustness=_dict("robustness"),
            sensitive=sensitive, target=d.get("target"), parent=d.get("parent"), checks=checks,
            training_data=_dict("training_data"), extra=_dict("extra"),
            verdict=_verdict(_dict("verdict"), where),
        )

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        """Read and validate a ``card.json`` file."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CheckpointError(f"model card not found: {path}; put a card.json beside the "
                                  "weights or pass --card") from None
        except (OSError, UnicodeDecodeError) as e:
            raise CheckpointError(f"cannot read model card {path}: {e}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
        return cls.from_dict(data, where=str(path))


def _verdict(v: dict[str, Any], where: str) -> dict[str, str]:
    if v and (v.get("expected") not in ("pass", "fail") or not isinstance(v.get("reason"), str)):
        raise CheckpointError(f"{where}: 'verdict' must be {{\"expected\": \"pass\" or "
                              f"\"fail\", \"reason\": \"...\"}}")
    return {"expected": str(v["expected"]), "reason": str(v["reason"])} if v else {}

