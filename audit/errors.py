"""Error types a user can cause, each mapped to a documented exit code.

Exit codes (also in ``audit --help`` and the README):

* 0 -- no finding at or above ``--fail-on``
* 1 -- at least one finding at or above ``--fail-on``
* 2 -- error (bad input, failed run, unwritable output)
* 3 -- unsafe checkpoint refused (it needs full pickle; pass ``--trust-checkpoint``)
* 4 -- usage error (bad flags, unknown check, invalid configuration)
* 130 -- interrupted (Ctrl-C or SIGTERM); previous outputs are left intact
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2
EXIT_UNSAFE = 3
EXIT_USAGE = 4
EXIT_INTERRUPTED = 130


class AuditError(Exception):
    """A problem the user can fix; the message is one line naming the thing and the fix."""

    exit_code: int = EXIT_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
        self.message = " ".join(message.split())

    def __str__(self) -> str:
        return self.message


class UsageError(AuditError):
    """Bad command-line usage or configuration (exit code 4)."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """Invalid ``audit.toml`` content (exit code 4)."""


class UnsafeCheckpointError(AuditError):
    """The checkpoint needs full pickle, which can run code; refused (exit code 3)."""

    exit_code = EXIT_UNSAFE


class CheckpointError(AuditError):
    """The checkpoint is missing, corrupt, or does not fit the architecture (exit code 2)."""


class DataError(AuditError):
    """The data is missing, malformed, or does not fit the model's card (exit code 2)."""


class ModelError(AuditError):
    """The model fails when run: its forward raises or returns NaN/inf (exit code 2)."""


class OutputError(AuditError):
    """An output path cannot be written (exit code 2)."""


class Interrupted(AuditError):
    """The run was interrupted by Ctrl-C or SIGTERM (exit code 130)."""

    exit_code = EXIT_INTERRUPTED
