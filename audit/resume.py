"""Partial results of a long audit (``--resume``): each finished check's section is written
atomically to a folder beside the report, and a rerun with the same model, data, settings and
seed reads those sections back instead of running the checks again.

A saved section is keyed by a fingerprint of everything its result depends on (the model's
and data's sha256, the reference data's, the tool version, the seed, ``--quick``, the device
kind, AMP and the check's own parameters), so a changed input reruns the check
rather than mixing results of two audits. Checks are seeded from the run seed and their own
name only (:func:`audit.subject.derive_seed`), which is what makes a resumed section the one
an uninterrupted run would have written.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.io import atomic_write_text
from audit.result import Section, jsonable, sha256_bytes

PARTIAL_SUFFIX = ".partial"
"""The folder of partial results of the report ``X.html`` is ``X.partial``."""


def partial_folder(html: Path) -> Path:
    """Where the partial results of the report at ``html`` live."""
    return html.with_suffix(PARTIAL_SUFFIX)


def discard_partial(folder: Path) -> None:
    """Remove a partial-results folder once the audit's outputs are written."""
    shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Checkpoint:
    """Reads and writes the finished sections of one audit in ``folder``.

    ``context`` is what every section of the audit depends on; :meth:`key` adds a check's
    name and parameters. Only sections that ran (pass, fail or a check's own error) are
    saved: an interrupted or skipped check is decided again on resume.
    """

    folder: Path
    context: dict[str, Any]
    writer: bool = True
    """False on ranks other than 0 of a distributed audit: they read, never write."""
    resumed: list[str] = field(default_factory=list)
    """The checks read back rather than run, in order."""

    def key(self, check: str, params: dict[str, Any]) -> str:
        """The fingerprint of ``check`` run with ``params`` in this audit's context."""
        doc = json.dumps({"context": self.context, "check": check, "params": jsonable(params)},
                         sort_keys=True, default=str)
        return sha256_bytes(doc.encode())

    def _path(self, check: str) -> Path:
        return self.folder / f"{check}.json"

    def load(self, check: str, params: dict[str, Any]) -> Section | None:
        """The saved section of ``check`` when its fingerprint matches, else ``None``."""
        path = self._path(check)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("key") != self.key(check, params):
                return None
            section = Section.from_dict(doc["section"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # missing or unreadable: the check runs again
        self.resumed.append(check)
        return section

    def save(self, section: Section, params: dict[str, Any]) -> None:
        """Write ``section`` atomically (a kill leaves the previous file or none)."""
        if not self.writer:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        doc = {"key": self.key(section.check, params), "section": section.to_dict()}
        atomic_write_text(self._path(section.check), json.dumps(doc))

