"""Results for report tests: a tiny tabular model whose names are hostile, and synthetic
sections with every kind of content a check can produce (all severities, tables, SVG and PNG
figures, an errored and a skipped section)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn

from audit.card import InputSpec, ModelCard
from audit.figures import image_grid, new_figure, to_figure
from audit.loading import LoadedModel
from audit.result import AuditResult, Finding, Section, Severity, Table, summarize
from audit.runner import run_audit
from audit.subject import AuditData

SCRIPT = "<script>window.__pwned=1;alert('x')</script>"
END_SCRIPT = "</script><script>window.__pwned=2</script>"
IMG = "\"><img src=x onerror=\"window.__pwned=3\">"
QUOTES = "it's \"quoted\" & <b>bold</b> `tick` | pipe *star* _under_ [link](http://example.com)"
HOSTILE = [SCRIPT, END_SCRIPT, IMG, QUOTES]
"""Strings that must appear as text in every report and execute nothing."""


class Linear3(nn.Module):
    """A fixed linear classifier on 3 features: class = argmax of (x0, x1, x2)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(3) * 4.0)
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def hostile_card() -> ModelCard:
    """A card whose model, class and feature names carry markup and quotes."""
    return ModelCard(
        name=f"evil {SCRIPT} model", arch="report_samples:Linear3",
        input=InputSpec(shape=(3,), range=(0.0, 1.0), kind="tabular",
                        feature_names=[SCRIPT, IMG, QUOTES]),
        classes=[SCRIPT, END_SCRIPT, IMG], dataset=None,
        description=f"Describes {IMG}", intended_use=f"Use {SCRIPT}",
        limitations=f"Limits {END_SCRIPT}", metrics={"test_accuracy": 0.9, IMG: 1.0},
        recipe={"command": f"audit train {SCRIPT}", "notes": [QUOTES, IMG]},
        extra={"owner": IMG})


def hostile_data(n: int = 120, seed: int = 0) -> AuditData:
    """Tabular data in [0, 1] with hostile feature and class names; labels mostly argmax."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 3)).astype(np.float32)
    y = x.argmax(axis=1)
    flip = rng.random(n) < 0.15
    y[flip] = (y[flip] + 1) % 3
    return AuditData(name=f"data {IMG}", x=torch.from_numpy(x), y=torch.from_numpy(y),
                     kind="tabular", classes=[SCRIPT, END_SCRIPT, IMG],
                     feature_names=[SCRIPT, IMG, QUOTES], source=f"file {END_SCRIPT}.csv")


def hostile_loaded() -> LoadedModel:
    """The hostile model as if loaded from a checkpoint."""
    return LoadedModel(model=Linear3().eval(), card=hostile_card(), path=f"/tmp/{IMG}",
                       format="safetensors", sha256="0" * 64, arch="report_samples:Linear3")


def hostile_result() -> AuditResult:
    """A real audit (performance check) of the hostile model, plus hostile synthetic sections."""
    result = run_audit(hostile_loaded(), data=hostile_data(), checks=["performance"], seed=0,
                       command=f"audit run {SCRIPT}")
    result.sections.extend(synthetic_sections(hostile=True))
    result.summary = summarize(result.sections, Severity.parse(result.summary["fail_on"]),
                               result.summary["duration_s"])
    return result


def _line_figure(tag: str) -> Any:
    fig, ax = new_figure(5.0, 3.0)
    eps = np.array([0.0, 0.03, 0.05, 0.1, 0.2])
    ax.plot(eps, np.exp(-eps * 12), marker="o", label="PGD")
    ax.plot(eps, np.exp(-eps * 6), marker="s", label="FGSM")
    ax.set_xlabel("epsilon (L-inf, pixels)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Accuracy under attack {tag}")
    ax.legend()
    return to_figure(fig, id="curve", title=f"Robustness curve {tag}",
                     caption=f"Accuracy against budget {tag}", fmt="svg")


def _grid_figure(tag: str) -> Any:
    rng = np.random.default_rng(1)
    imgs = rng.random((8, 8, 8))
    fig = image_grid(imgs, titles=[f"{i} {tag}"[:14] for i in range(8)], ncols=8)
    return to_figure(fig, id="grid", title=f"Saliency maps {tag}", caption=f"Maps {tag}",
                     fmt="png")


def synthetic_sections(hostile: bool = False) -> list[Section]:
    """Three sections covering every kind of content; with ``hostile`` every string carries
    markup, quotes and ``</script>``."""
    t = " " + " ".join(HOSTILE) if hostile else ""
    sev = [Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO]
    findings = [Finding(
        id=f"demo.{s.value}{'.' + IMG if hostile else ''}", severity=s,
        title=f"A {s.value} finding{t}",
        detail=f"Measured value {0.1 * i:.2f} crossed the {s.value} threshold{t}.",
        evidence={"value": 0.1 * i, "threshold": 0.05, "classes": ["a", "b"], "note": t or "x"},
        recommendation=f"Do the {s.value} thing{t}.") for i, s in enumerate(sev)]
    metrics = {f"robust_accuracy.linf.{e}": 1.0 - e * 3 for e in (0.03, 0.05, 0.1, 0.2)}
    metrics.update({"clean_accuracy": 0.99, "missing": float("nan")})
    if hostile:
        metrics[f"metric {SCRIPT}"] = 1.0
    demo = Section(
        check="demo", title=f"Demo check{t}", status="fail",
        summary=f"Five findings, one per severity{t}.",
        reading=f"What the demo measures and how to read it{t}.",
        metrics=metrics, findings=findings,
        figures=[_line_figure(t), _grid_figure(t)],
        tables=[Table(id="per-eps", title=f"Per-epsilon results{t}",
                      columns=["epsilon", f"attack{t}", "accuracy", "success"],
                      rows=[[0.03, f"PGD{t}", 0.91, True], [0.1, "FGSM", 0.5, False],
                            [0.2, None, float("nan"), None]],
                      caption=f"Caption{t}")],
        params={"eps": [0.03, 0.1], "attack": f"pgd{t}", "layer": None}, duration_s=1.25)
    errored = Section(
        check="broken", title=f"Broken check{t}", status="error",
        summary="This check failed to run; its results are missing.",
        error=f"RuntimeError: boom{t}",
        findings=[Finding(id="broken.error", severity=Severity.HIGH,
                          title=f"Broken check could not run{t}",
                          detail=f"RuntimeError: boom{t}",
                          evidence={"traceback": f"Traceback (most recent call last):\n  boom{t}"},
                          recommendation="Run again with --debug.")])
    skipped = Section(check="skipper", title=f"Skipped check{t}", status="skipped",
                      summary=f"Not run: needs sensitive attributes{t}")
    return [demo, errored, skipped]


def rich_result(base: AuditResult) -> AuditResult:
    """``base`` plus the synthetic sections (a report with every kind of content)."""
    sections = [*base.sections, *synthetic_sections()]
    return dataclasses.replace(base, sections=sections,
                               summary=summarize(sections, Severity.HIGH, 3.0))
