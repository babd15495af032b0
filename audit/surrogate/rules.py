"""A surrogate tree as readable rules: IF-THEN rules, indented text, and a drawing.

Every condition is written by the :class:`~audit.surrogate.features.FeatureView`, so one-hot
features read ``workclass == Private`` (or ``workclass not in {A, B}`` after several ``!=``
splits on the same column), numbers are in the data's own units (``age > 42.5``), and image
features name their region (``mean intensity of region r2c3 > 0.41``). Conditions on the same
column along one path are merged (``30 < age <= 50``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.colors import to_rgb
from sklearn.tree import DecisionTreeClassifier

from audit.datasets.tabular import format_number
from audit.figures import PALETTE, new_figure, styled, to_figure
from audit.result import Figure
from audit.surrogate.features import FeatureView

LEAF = -1


@dataclass
class Rule:
    """One leaf of a surrogate tree: IF all ``conditions`` THEN the model predicts ``label``."""

    conditions: list[str]
    prediction: int
    label: str
    samples: int
    coverage: float  # share of the fitting samples that reach this leaf
    confidence: float  # share of them the model itself assigns to ``label``

    def text(self) -> str:
        """``IF a AND b THEN label``."""
        cond = " AND ".join(self.conditions) if self.conditions else "always"
        return f"IF {cond} THEN {self.label}"


def _path_conditions(path: list[tuple[int, float, bool]], view: FeatureView) -> list[str]:
    """Merge the splits along one root-to-leaf path into readable conditions, per column."""
    order: list[str] = []
    eq: dict[str, str] = {}
    neq: dict[str, list[str]] = {}
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    digits: dict[str, int] = {}
    for feat, thr, above in path:
        s = view.split(feat, thr)
        key = s.column
        if key not in order:
            order.append(key)
        digits[key] = s.digits
        if s.category is not None:
            if above:
                eq[key] = s.category
            elif s.category not in neq.setdefault(key, []):
                neq[key].append(s.category)
        elif above:
            lo[key] = max(lo.get(key, -np.inf), s.threshold)
        else:
            hi[key] = min(hi.get(key, np.inf), s.threshold)
    out = []
    for key in order:
        d = digits[key]
        if key in eq:
            out.append(f"{key} == {eq[key]}")
        elif key in neq:
            cats = neq[key]
            out.append(f"{key} != {cats[0]}" if len(cats) == 1
                       else f"{key} not in {{{', '.join(cats)}}}")
        if key in lo and key in hi:
            out.append(f"{format_number(lo[key], d)} < {key} <= {format_number(hi[key], d)}")
        elif key in lo:
            out.append(f"{key} > {format_number(lo[key], d)}")
        elif key in hi:
            out.append(f"{key} <= {format_number(hi[key], d)}")
    return out


def _leaf_info(tree: DecisionTreeClassifier, node: int) -> tuple[int, float]:
    """(predicted class index, share of the leaf's samples in that class)."""
    value = np.asarray(tree.tree_.value[node][0], dtype=np.float64)
    share = value / value.sum() if value.sum() > 0 else value
    j = int(share.argmax())
    return int(tree.classes_[j]), float(share[j])


def tree_rules(tree: DecisionTreeClassifier, view: FeatureView, classes: list[str]
               ) -> list[Rule]:
    """One rule per leaf, most-covering first."""
    t = tree.tree_
    total = float(t.n_node_samples[0])
    rules: list[Rule] = []
    stack: list[tuple[int, list[tuple[int, float, bool]]]] = [(0, [])]
    while stack:
        node, path = stack.pop()
        left, right = int(t.children_left[node]), int(t.children_right[node])
        if left == LEAF:
            pred, conf = _leaf_info(tree, node)
            n = int(t.n_node_samples[node])
            rules.append(Rule(_path_conditions(path, view), pred, classes[pred], n, n / total,
                              conf))
            continue
        feat, thr = int(t.feature[node]), float(t.threshold[node])
        stack.append((right, [*path, (feat, thr, True)]))
        stack.append((left, [*path, (feat, thr, False)]))
    return sorted(rules, key=lambda r: (-r.samples, r.text()))


def tree_text(tree: DecisionTreeClassifier, view: FeatureView, classes: list[str]) -> str:
    """The whole tree as indented text (like scikit-learn's ``export_text``, in readable
    terms)."""
    t = tree.tree_
    lines: list[str] = []

    def walk(node: int, depth: int) -> None:
        indent = "|   " * depth + "|--- "
        left, right = int(t.children_left[node]), int(t.children_right[node])
        if left == LEAF:
            pred, conf = _leaf_info(tree, node)
            lines.append(f"{indent}{classes[pred]} ({int(t.n_node_samples[node])} samples, "
                         f"{conf:.0%} agree)")
            return
        s = view.split(int(t.feature[node]), float(t.threshold[node]))
        lines.append(f"{indent}{s.text(above=False)}")
        walk(left, depth + 1)
        lines.append(f"{indent}{s.text(above=True)}")
        walk(right, depth + 1)

    walk(0, 0)
    return "\n".join(lines)


def used_columns(tree: DecisionTreeClassifier, view: FeatureView) -> list[str]:
    """Raw columns (or regions) the tree splits on, by first use in breadth-first order."""
    t = tree.tree_
    out: list[str] = []
    queue = [0]
    while queue:
        node = queue.pop(0)
        if int(t.children_left[node]) == LEAF:
            continue
        col = view.column(int(t.feature[node]))
        if col not in out:
            out.append(col)
        queue += [int(t.children_left[node]), int(t.children_right[node])]
    return out


def _wrap(text: str, width: int = 15) -> str:
    words, lines, cur = text.split(" "), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    lines.append(cur)
    return "\n".join(lines)


@styled
def plot_surrogate_tree(tree: DecisionTreeClassifier, view: FeatureView, classes: list[str],
                        max_depth: int = 3, fig_id: str = "surrogate-tree",
                        title: str = "Surrogate decision tree") -> Figure:
    """The tree's first ``max_depth`` levels drawn as boxes with readable conditions.

    Each internal box holds the condition of its left ("yes") branch and the share of samples
    reaching it; leaves hold the class the model predicts there and how many of the leaf's
    samples the model puts in that class. Boxes are coloured by that class. A box marked
    ``...`` has more levels below (see the rules table for them).
    """
    t = tree.tree_
    total = float(t.n_node_samples[0])
    pos: dict[int, tuple[float, int]] = {}
    slots = [0]

    def place(node: int, depth: int) -> float:
        left, right = int(t.children_left[node]), int(t.children_right[node])
        if left == LEAF or depth == max_depth:
            x = float(slots[0])
            slots[0] += 1
        else:
            x = (place(left, depth + 1) + place(right, depth + 1)) / 2
        pos[node] = (x, depth)
        return x

    place(0, 0)
    n_slots, levels = slots[0], max(d for _, d in pos.values()) + 1
    width = min(max(6.0, 1.5 * n_slots), 13.0)
    fig, ax = new_figure(width, 1.25 * levels + 0.5)
    ax.axis("off")
    ax.set_xlim(-0.6, n_slots - 0.4)
    ax.set_ylim(-(levels - 1) - 0.55, 0.55)
    fontsize = 8 if width / max(n_slots, 1) >= 1.3 else 7
    for node, (x, depth) in pos.items():
        left, right = int(t.children_left[node]), int(t.children_right[node])
        pred, conf = _leaf_info(tree, node)
        share = t.n_node_samples[node] / total
        colour = PALETTE[pred % len(PALETTE)]
        if left == LEAF:
            text = f"→ {classes[pred]}\n{share:.1%} of samples\n{conf:.0%} agree"
        else:
            s = view.split(int(t.feature[node]), float(t.threshold[node]))
            text = f"{_wrap(s.text(above=False))}?\n{share:.1%} of samples"
            if node in pos and depth == max_depth:
                text += "\n..."
            else:
                for child, label in ((left, "yes"), (right, "no")):
                    cx, cd = pos[child]
                    ax.plot([x, cx], [-depth - 0.22, -cd + 0.22], color="#777777",
                            linewidth=0.8, zorder=1)
                    ax.text((x + cx) / 2, -depth - 0.5, label, fontsize=fontsize - 1,
                            ha="center", va="center", color="#555555",
                            bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none"})
        strength = 0.15 + 0.55 * max(0.0, (conf - 0.5) / 0.5)
        fill = tuple(1.0 - strength * (1.0 - c) for c in to_rgb(colour))  # opaque tint
        ax.text(x, -depth, text, ha="center", va="center", fontsize=fontsize, zorder=3,
                bbox={"boxstyle": "round,pad=0.3", "fc": fill, "ec": colour})
    drawn = "" if tree.get_depth() <= max_depth else f"; first {max_depth} levels drawn"
    ax.set_title(f"{title} (depth {tree.get_depth()}{drawn})", fontsize=9)
    return to_figure(fig, fig_id, title,
                     "Each box asks the question written in it: samples for which it holds follow "
                     "'yes', the others 'no'. Leaves (→) give the class the model predicts there "
                     "and the share of the leaf's samples the model puts in that class; colour "
                     "marks that class, stronger when it is purer. '...' marks deeper levels, "
                     "listed in the rules table.")


def rules_table_rows(rules: list[Rule], limit: int) -> list[list[Any]]:
    """Rows (rule, IF, THEN, coverage, model agrees) for a report table."""
    return [[i + 1, " AND ".join(r.conditions) or "always", r.label, round(r.coverage, 4),
             round(r.confidence, 4)] for i, r in enumerate(rules[:limit])]
