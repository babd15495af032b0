"""Running one check: seeding, and turning a failure into an errored section. Shared by the
runner (in process) and :mod:`audit.isolation` (in a child process), so both run a check the
same way."""

from __future__ import annotations

import random
import traceback

import numpy as np
import torch

from audit.checks import Check
from audit.errors import Interrupted, UsageError
from audit.policy import CHECK_ERROR
from audit.result import Section, Severity
from audit.subject import Subject


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch global generators (LIME and sklearn use numpy's)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def execute_check(check: Check, subject: Subject, seed: int) -> Section:
    """Seed everything with ``seed`` and run ``check``; an exception becomes an errored section
    (usage errors and interrupts propagate). The same in this process and in an isolated one."""
    seed_everything(seed)
    try:
        return check.run(subject)
    except (KeyboardInterrupt, SystemExit, Interrupted, UsageError):
        raise  # a usage error (e.g. --layer naming no layer) stops the audit: exit 4
    except Exception as e:  # one failing check never kills the audit
        sec = check.section(status="error", error=one_line(e),
                            summary="This check failed to run; its results are missing.")
        sec.findings.append(CHECK_ERROR(
            Severity.HIGH, check=check.name,
            title=f"{check.title} could not run",
            detail=f"{type(e).__name__}: {one_line(e)}",
            evidence={"traceback": traceback.format_exc(limit=6)[-2000:]},
            recommendation="Run again with --debug for the full traceback; the audit "
                           "is incomplete until this check runs."))
        return sec


def one_line(e: BaseException) -> str:
    """The first line of an exception's message (at most 300 characters), else its type."""
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__
