"""audit: audit PyTorch models for explainability, robustness and fairness, and harden them.

Quick start::

    import audit
    result = audit.run_audit("digits-cnn", seed=0)
    print(result.summary["status"], result.summary["counts"])
    audit.write_report(result, "reports/digits-cnn.html")   # also writes digits-cnn.json
"""

from __future__ import annotations

__version__ = "0.1.0"

from audit.card import InputSpec, ModelCard
from audit.checks import Check, all_checks, register
from audit.config import AuditConfig, load_config
from audit.core import AuditData, AuditResult, Figure, Finding, Section, Severity, Subject, Table
from audit.errors import AuditError, UnsafeCheckpointError
from audit.loading import LoadedModel, load_model
from audit.report.render import load_result, render_html, write_report
from audit.runner import build_subject, run_audit

__all__ = [
    "AuditConfig", "AuditData", "AuditError", "AuditResult", "Check", "Figure", "Finding",
    "InputSpec", "LoadedModel", "ModelCard", "Section", "Severity", "Subject", "Table",
    "UnsafeCheckpointError", "__version__", "all_checks", "build_subject", "load_config",
    "load_model", "load_result", "register", "render_html", "run_audit", "write_report",
]
