"""``audit card --init``: a card skeleton inferred from a model and a data file.

:func:`init_card` reads what the data and a forward pass of the model can tell: the input kind
and shape, the value range (from the dtype and the values), the classes (names from string
labels, else ``"0"`` to ``"K-1"`` for the model's K outputs), for a CSV the target column and an
``extra.encoder`` fitted on it, and columns that look like protected attributes. It measures the
model's accuracy on the data with that card: near chance, the card (or the encoder) probably
does not describe the input the model was trained on, and it says which simple change of the
input would fix that. What cannot be inferred (what the model is for, its limits, the
normalisation it expects) is written as a placeholder or ``null`` and listed as to fill.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audit.apps.card_data import InitData, Note, infer_range, read_data, sensitive_columns
from audit.card import ModelCard
from audit.errors import CheckpointError, DataError, ModelError
from audit.loading import NormalizedModel, load_model

__all__ = ["FILL", "CardDraft", "Note", "card_json", "infer_range", "init_card", "near_chance"]

FILL = "FILL IN"
"""The start of every placeholder text the user must replace."""

_MAX_ROWS = 2000  # rows the accuracy check runs on: enough to tell a match from chance


@dataclass
class CardDraft:
    """The card :func:`init_card` inferred, with notes on every field."""

    card: dict[str, Any]
    inferred: list[Note] = field(default_factory=list)
    fill: list[Note] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    suggested_sensitive: list[str] = field(default_factory=list)
    accuracy: float | None = None
    chance: float | None = None
    rows: int = 0


def init_card(model: str | Path, data: str | Path, *, arch: str | None = None,
              arch_kwargs: dict[str, Any] | None = None, target: str | None = None,
              write_sensitive: bool = False, name: str | None = None,
              trust_checkpoint: bool = False) -> CardDraft:
    """Infer a card for ``model`` (a checkpoint, with ``arch`` for a state dict) from ``data``
    (``.npz`` with x, y or ``.csv``); the card loads with :meth:`ModelCard.from_dict`.

    Raises :class:`DataError`, :class:`ModelError`, :class:`CheckpointError` or
    :class:`UsageError` with one line naming the problem."""
    path = Path(data)
    net, arch_name, kwargs, arch_how = _load(model, arch, arch_kwargs, trust_checkpoint)
    d = read_data(path, target)
    logits = _forward(net, d.x[:4], d)
    k = int(logits.shape[1])
    draft = CardDraft(card={}, rows=len(d.x))
    draft.inferred.append(Note("arch", f"{arch_name} ({arch_how})"))
    shape = [int(s) for s in d.x.shape[1:]]
    draft.inferred.append(Note("input.kind", f"{d.kind} ({_kind_how(d, path)})"))
    draft.inferred.append(Note("input.shape", f"{shape} (from the data; the model runs on it "
                                              f"and returns {k} outputs)"))
    if d.encoder is not None:
        rng, rng_how = (0.0, 1.0), "the encoder scales every feature to [0, 1]"
    else:
        rng, rng_how, observed = infer_range(d.raw if d.raw is not None else d.x)
        if observed:
            draft.warnings.append(f"input.range {_fmt_range(rng)} is this file's min/max: data "
                                  "outside it is refused and attacks clip to it; widen it to "
                                  "the range of every valid input")
    draft.inferred.append(Note("input.range", f"{_fmt_range(rng)} ({rng_how})"))
    draft.inferred.extend(d.notes)
    idx = _sample(len(d.x))
    preds = _predict(net, d.x[idx])
    classes, y, how = _classes(d.labels, preds, k, path)
    draft.inferred.append(Note("classes", how))
    draft.accuracy = float(np.mean(preds == y[idx]))
    draft.chance = float(np.bincount(y[idx], minlength=k).max() / len(idx))
    why = _mismatch(net, d, idx, y[idx], draft.accuracy, draft.chance)
    if why:
        draft.warnings.append(why)
    draft.card = {
        "format_version": 1, "name": name or _default_name(Path(model)),
        "description": f"{FILL}: what the model does and what it was trained on",
        "intended_use": f"{FILL}: who uses it for what (the audit judges its findings "
                        "against this use)",
        "limitations": f"{FILL}: inputs and uses it is not fit for, known failure modes",
        "arch": arch_name, "arch_kwargs": kwargs,
        "input": {"kind": d.kind, "shape": shape, "range": list(rng), "mean": None,
                  "std": None, "feature_names": None},
        "classes": classes, "task": "classification", "dataset": None, "metrics": {},
        "robustness": {}, "sensitive": [],
    }
    _fill_notes(draft, d, classes)
    if d.frame is not None:
        draft.card["target"] = d.encoder.target if d.encoder is not None else None
        draft.suggested_sensitive, usable, ungrouped = sensitive_columns(
            d.frame, draft.card["target"])
        draft.card["sensitive"] = usable if write_sensitive else []
        draft.warnings += ungrouped
    if d.encoder is not None:
        draft.card["extra"] = {"encoder": {
            "note": f"{FILL} / CHECK: fitted on {path.name} as a skeleton; it must reproduce "
                    "your training preprocessing exactly (columns and their order, numeric "
                    "ranges, categories and their order); input.shape is the number of "
                    "encoded features", **d.encoder.to_dict()}}
    ModelCard.from_dict(draft.card, where="the inferred card")  # a bug here, not the user's
    return draft


def near_chance(accuracy: float, chance: float) -> bool:
    """Whether ``accuracy`` is within a fifth of the way from chance (the majority class's
    share) to perfect: a card that describes the model's input gives more."""
    return accuracy < chance + 0.2 * (1.0 - chance)


def _load(model: str | Path, arch: str | None, kwargs: dict[str, Any] | None,
          trust: bool) -> tuple[torch.nn.Module, str, dict[str, Any], str]:
    """The bare model (no normalisation of an old card), its arch and kwargs, and how."""
    spec = Path(model)
    old = (spec if spec.is_dir() else spec.parent) / "card.json"
    if spec.exists() and old.is_file():
        try:  # load_model reads the card beside the weights: say so when it is broken
            ModelCard.load(old)
        except CheckpointError as e:
            raise CheckpointError(f"{e.message} (the card beside the weights is read when "
                                  "loading them; move it away to infer a new one)") from None
    loaded = load_model(model, arch=arch, arch_kwargs=kwargs, trust_checkpoint=trust)
    net = loaded.model.model if isinstance(loaded.model, NormalizedModel) else loaded.model
    if arch:
        how = "from --arch"
    elif loaded.card is not None and ":" in loaded.arch and loaded.format in (
            "state-dict", "safetensors"):
        how = f"from the existing {old}"
    elif loaded.format == "pickled-module":
        how = "the class of the pickled module"
    else:
        return net, "n/a:n/a", {}, f"not needed: the {loaded.format} file holds its own code"
    used = dict(kwargs) if kwargs is not None else (
        dict(loaded.card.arch_kwargs) if loaded.card is not None else {})
    return net, arch or loaded.arch, used, how


def _forward(net: torch.nn.Module, x: np.ndarray, d: InitData) -> torch.Tensor:
    """One pass on a few rows: the model must run on the data and return (N, K >= 2)."""
    try:
        with torch.no_grad():
            out = net(torch.from_numpy(x))
    except Exception as e:
        msg = " ".join(str(e).split())[:160]
        if d.kind == "image" and x.ndim == 3 and _runs(net, x[:, None]):
            raise DataError(f"the model takes a channel axis: save x with shape (N, 1, "
                            f"{x.shape[1]}, {x.shape[2]}) (x[:, None])") from None
        hint = "; the encoder skeleton must reproduce your training preprocessing" \
            if d.encoder is not None else ""
        raise ModelError(f"the model's forward raised {type(e).__name__} on samples of shape "
                         f"{tuple(x.shape[1:])}: {msg}{hint}") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] < 2:
        raise ModelError("the model must return logits of shape (N, classes) with at least two "
                         f"classes; got {getattr(out, 'shape', type(out).__name__)}")
    if not bool(torch.isfinite(out).all()):
        raise ModelError("the model returns NaN or inf on the data")
    return out


def _runs(net: torch.nn.Module, x: np.ndarray) -> bool:
    try:
        with torch.no_grad():
            net(torch.from_numpy(np.ascontiguousarray(x)))
        return True
    except Exception:
        return False


def _sample(n: int) -> np.ndarray:
    """Rows for the accuracy check: all, or a seeded sample (a file may be sorted by class)."""
    if n <= _MAX_ROWS:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).permutation(n)[:_MAX_ROWS])


def _predict(net: torch.nn.Module, x: np.ndarray, batch: int = 256) -> np.ndarray:
    with torch.no_grad():
        parts = [net(torch.from_numpy(np.ascontiguousarray(x[i:i + batch]))).argmax(1)
                 for i in range(0, len(x), batch)]
    return torch.cat(parts).numpy()


def _classes(labels: np.ndarray, preds: np.ndarray, k: int, path: Path
             ) -> tuple[list[str], np.ndarray, str]:
    """Class names in output order, the labels as indices, and how they were inferred."""
    if np.issubdtype(labels.dtype, np.number):
        if np.issubdtype(labels.dtype, np.floating) and not np.all(labels == np.round(labels)):
            raise DataError(f"{path}: labels must be class indices or names")
        y = labels.astype(np.int64)
        if y.min() < 0 or y.max() >= k:
            raise DataError(f"{path}: labels span {y.min()}..{y.max()} but the model has {k} "
                            f"outputs (0..{k - 1}); is this the model's data?")
        seen = len(np.unique(y))
        return [str(i) for i in range(k)], y, (
            f"0..{k - 1}: the model's {k} outputs; the labels are indices ({seen} of them "
            f"occur in {path.name})")
    from scipy.optimize import linear_sum_assignment

    names = sorted(set(labels.tolist()))
    if len(names) > k:
        raise DataError(f"{path}: {len(names)} label values but the model has {k} outputs")
    codes = np.searchsorted(np.array(names), labels)
    sub = _sample(len(labels))
    counts = np.zeros((len(names), k), dtype=np.int64)
    np.add.at(counts, (codes[sub], preds), 1)
    rows, cols = linear_sum_assignment(-counts)  # the order the predictions agree with most
    by_output = {int(c): names[int(r)] for r, c in zip(rows, cols, strict=True)}
    classes = [by_output.get(i, f"{FILL}: class of output {i}") for i in range(k)]
    index = {n: classes.index(n) for n in names}
    y = np.array([index[v] for v in labels.tolist()], dtype=np.int64)
    order = ", ".join(f"{i}: {c}" for i, c in enumerate(classes))
    how = f"the label names, in the order the model's predictions match best ({order})"
    if classes[:len(names)] != names:
        how += "; not their sorted order: check it"
    return classes, y, how


def _mismatch(net: torch.nn.Module, d: InitData, idx: np.ndarray, y: np.ndarray, acc: float,
              chance: float) -> str | None:
    """Why the model does poorly on the data as the card describes it, with the change of
    input that does markedly better; ``None`` when nothing points to a mismatch."""
    low = near_chance(acc, chance)
    head = (f"the model's accuracy on this data is {acc:.1%}"
            + (f", near chance ({chance:.1%}): " if low else ": "))
    if d.encoder is not None:
        return head + ("the encoder skeleton probably does not match your training "
                       "preprocessing (or the target or class order is wrong); edit "
                       "extra.encoder") if low else None
    tried = [(float(np.mean(_predict(net, (d.x[idx] - m) / sd) == y)), how, m, sd)
             for how, m, sd in _alternatives(d.x[idx], d.kind)]
    top = max(t[0] for t in tried)
    # the simplest change (the list's order) among those nearly as good as the best
    best = next(t for t in tried if t[0] >= top - 0.1)
    if best[0] >= acc + 0.1 and not near_chance(best[0], chance):
        also = "".join(f"; with {t[1]} {t[0]:.1%}" for t in tried
                       if t[1] != best[1] and t[0] >= acc + 0.1)
        return head + (f"with {best[1]} it is {best[0]:.1%}{also}. Set input.mean "
                       f"{_numbers(best[2])} and input.std {_numbers(best[3])} (the loader "
                       "then applies (x - mean) / std in front of the model; the data stays "
                       "as it is), or pass the constructor arguments that set the model's own "
                       "preprocessing (--arch-kwargs)")
    if low:
        return head + ("the card probably does not describe the input the model was trained "
                       "on (value range, normalisation, constructor arguments), or the labels "
                       "do not match its outputs")
    return None


def _alternatives(x: np.ndarray, kind: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The usual ways a model's input convention differs from its data's, each as the
    ``(x - mean) / std`` that a card's ``input.mean``/``input.std`` would apply."""
    lo, hi = float(x.min()), float(x.max())
    one = np.ones(1, dtype=np.float32)
    alts: list[tuple[str, np.ndarray, np.ndarray]] = []
    if hi > 1.5:
        alts.append(("[0, 1] input (x / 255)", 0 * one, 255 * one))
    if lo >= 0.0 and hi <= 1.0:
        alts.append(("0..255 input (x * 255)", 0 * one, one / 255))
        alts.append(("[-1, 1] input (2x - 1)", 0.5 * one, 0.5 * one))
    if -1.0 <= lo < 0.0 and hi <= 1.0:
        alts.append(("[0, 1] input ((x + 1) / 2)", -one, 2 * one))
    # per channel (images N, C, H, W), per feature (rows N, F), else one value
    axes = (0, 2, 3) if x.ndim == 4 else (0,) if x.ndim == 2 else None
    mean = x.mean(axis=axes).reshape(-1).astype(np.float32)
    std = x.std(axis=axes).reshape(-1).astype(np.float32)
    std = np.where(std > 0, std, 1).astype(np.float32)
    shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1) if x.ndim == 2 else (1,)
    alts.append(("normalised input (this data's mean and std; give your training's)",
                 mean, std))
    return [(how, m.reshape(shape if len(m) > 1 else (1,)), sd.reshape(
        shape if len(sd) > 1 else (1,))) for how, m, sd in alts]


def _numbers(v: np.ndarray) -> str:
    return "[" + ", ".join(f"{float(a):.6g}" for a in v.reshape(-1)) + "]"


def _fill_notes(draft: CardDraft, d: InitData, classes: list[str]) -> None:
    draft.fill += [Note("description", "what the model does, what it was trained on"),
                   Note("intended_use", "who uses it for what: findings are judged against it"),
                   Note("limitations", "inputs and uses it is not fit for")]
    if d.encoder is None:
        draft.fill.append(Note("input.mean, input.std", "null: the tool cannot tell whether "
                               "the model expects normalised input; if your training "
                               "normalised it, give that mean and std (one per channel)"))
    else:
        draft.fill.append(Note("extra.encoder", "check it reproduces your training "
                               "preprocessing: numeric ranges (this file's min/max), "
                               "categories, column order"))
    if all(c.isdigit() for c in classes):
        draft.fill.append(Note("classes", "optional: names instead of indices, in the "
                               "model's output order"))
    elif any(c.startswith(FILL) for c in classes):
        draft.fill.append(Note("classes", "name the outputs no label in the data matched"))
    draft.fill.append(Note("robustness.threat_model", "optional: the budgets the model "
                           "claims to withstand, e.g. {\"linf\": 0.03}"))


def _kind_how(d: InitData, path: Path) -> str:
    if d.frame is not None:
        return "a CSV table"
    return f"x is {d.x.ndim}-D, {' x '.join(map(str, d.x.shape))}, in {path.name}"


def _fmt_range(rng: tuple[float, float]) -> str:
    return f"[{rng[0]:g}, {rng[1]:g}]"


def _default_name(model: Path) -> str:
    return (model.name if model.is_dir() else model.stem) or "model"


def card_json(card: dict[str, Any]) -> str:
    """The card as JSON for a person to edit: one key per line, lists of numbers or names on
    one line."""
    def dump(v: Any, indent: int) -> str:
        if isinstance(v, dict) and v:
            pad = " " * (indent + 2)
            body = ",\n".join(f"{pad}{json.dumps(k)}: {dump(x, indent + 2)}"
                               for k, x in v.items())
            return "{\n" + body + "\n" + " " * indent + "}"
        if isinstance(v, list) and any(isinstance(x, dict | list) for x in v):
            pad = " " * (indent + 2)
            return "[\n" + ",\n".join(pad + dump(x, indent + 2) for x in v) + "\n" + \
                " " * indent + "]"
        return json.dumps(v, ensure_ascii=False)
    return dump(card, 0) + "\n"
