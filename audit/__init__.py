"""audit: audit PyTorch models for explainability, robustness and fairness, and harden them.

Quick start::

    import audit
    result = audit.run_audit("digits-cnn", seed=0)
    print(result.summary["status"], result.summary["counts"])
    audit.write_report(result, "reports/digits-cnn.html")   # also writes digits-cnn.json

The names below are imported on first use, so that commands which never touch a model (such as
``audit report``) do not pay for importing torch.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from audit._lazy import lazy_exports

# OpenMP threads that spin while waiting make torch up to 10x slower when another process
# shares the cores (measured: robustness check 152 s spinning vs 16 s passive on 2 busy cores).
# Set before torch is first imported through this package; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from audit.version import __version__

_EXPORTS = {
    "InputSpec": "audit.card", "ModelCard": "audit.card",
    "Check": "audit.checks", "all_checks": "audit.checks", "register": "audit.checks",
    "AuditConfig": "audit.config", "load_config": "audit.config",
    "AuditData": "audit.subject", "AuditResult": "audit.result", "Figure": "audit.result",
    "Finding": "audit.result", "Section": "audit.result", "Severity": "audit.result",
    "Subject": "audit.subject", "Table": "audit.result",
    "AuditError": "audit.errors", "UnsafeCheckpointError": "audit.errors",
    "LoadedModel": "audit.loading", "load_model": "audit.loading",
    "load_result": "audit.report.render", "render_html": "audit.report.render",
    "write_report": "audit.report.render",
    "build_subject": "audit.runner", "run_audit": "audit.runner",
}

__all__ = [
    "AuditConfig",
    "AuditData",
    "AuditError",
    "AuditResult",
    "Check",
    "Figure",
    "Finding",
    "InputSpec",
    "LoadedModel",
    "ModelCard",
    "Section",
    "Severity",
    "Subject",
    "Table",
    "UnsafeCheckpointError",
    "__version__",
    "all_checks",
    "build_subject",
    "load_config",
    "load_model",
    "load_result",
    "register",
    "render_html",
    "run_audit",
    "write_report",
]


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)


if TYPE_CHECKING:
    from audit.card import InputSpec, ModelCard
    from audit.checks import Check, all_checks, register
    from audit.config import AuditConfig, load_config
    from audit.errors import AuditError, UnsafeCheckpointError
    from audit.loading import LoadedModel, load_model
    from audit.report.render import load_result, render_html, write_report
    from audit.result import AuditResult, Figure, Finding, Section, Severity, Table
    from audit.runner import build_subject, run_audit
    from audit.subject import AuditData, Subject
