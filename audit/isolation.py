"""Running one check in a fresh Python process, so that a native crash (a segmentation fault or
an abort inside torch, OpenMP, scikit-learn, scikit-image, ...) ends that process only: the
check becomes an errored section naming the signal, and the audit writes the other sections.

The child is a new interpreter (``python -m audit.isolation DIR``: the ``spawn`` start method,
never ``fork``, so no OpenMP thread pool or lock state is inherited), which receives the check,
the :class:`~audit.subject.Subject` (model, data, cached logits) and the seed through a private
temporary folder, runs :func:`audit.execution.execute_check` exactly as the runner does in-process
(same seeds, same torch thread count, same deterministic-algorithms flag, same warning filters)
and sends the section back. The same seed therefore gives the same section JSON in both modes.
``faulthandler`` is on in the child: when it dies by a signal its Python stack (all threads) is
kept in the finding's evidence.

Which checks run isolated (:func:`isolated_checks`): the ``isolate`` argument of
:func:`audit.runner.run_audit`, else the ``AUDIT_ISOLATE`` environment variable (``all``,
``none``, or comma-separated check names), else the checks whose class sets ``isolate = True``.
The cost is one interpreter start plus importing torch and the check's libraries, and copying
the subject (measured in ``bench/crash_hunt.py overhead``).
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit.execution import one_line
from audit.policy import CHECK_CRASHED
from audit.result import Section, Severity

if TYPE_CHECKING:
    from audit.checks import Check
    from audit.subject import Subject

ISOLATE_ENV = "AUDIT_ISOLATE"
"""Environment variable: ``all``, ``none``, or comma-separated names of checks to isolate."""

_HEADER = "header.pkl"
_PAYLOAD = "payload.pt"
_RESULT = "result.pkl"
_STDERR = "stderr.txt"
_STACK_CHARS = 4000


def isolated_checks(names: Iterable[str], declared: Iterable[str],
                    isolate: bool | Sequence[str] | None = None) -> set[str]:
    """The names among ``names`` to run in a subprocess.

    ``isolate`` True/False: all/none; a sequence: those names. ``None``: the ``AUDIT_ISOLATE``
    environment variable if set, else ``declared`` (checks whose class sets ``isolate``).
    """
    names = list(names)
    if isolate is None:
        env = os.environ.get(ISOLATE_ENV, "").strip()
        if env:
            low = env.lower()
            if low in ("all", "1", "true", "yes"):
                isolate = True
            elif low in ("none", "0", "false", "no"):
                isolate = False
            else:
                isolate = [n.strip() for n in env.split(",") if n.strip()]
    if isolate is True:
        return set(names)
    if isolate is False:
        return set()
    if isolate is None:
        return set(declared) & set(names)
    return {n for n in isolate if n in names}


@dataclass
class _Header:
    """What the child needs before it can unpickle the payload (the user's modules may live on
    paths added at run time, e.g. an ``--arch`` module in the working directory)."""

    sys_path: list[str]
    cwd: str
    threads: int
    deterministic: bool
    warning_filters: list[Any]


def run_isolated(check: Check[Any], subject: Subject, seed: int) -> Section:
    """Run ``check`` on ``subject`` in a fresh process; its section, or an errored section if the
    process died. Exceptions the runner lets through (usage errors, interrupts) are raised
    again here. Falls back to running in this process (with a ``RuntimeWarning``) when the
    check or subject cannot be pickled (a TorchScript model, a class defined in a function)."""
    import torch

    from audit.execution import execute_check

    with tempfile.TemporaryDirectory(prefix="audit-isolated-") as tmp:
        folder = Path(tmp)
        try:
            torch.save({"check": check, "subject": subject, "seed": seed}, folder / _PAYLOAD)
        except Exception as e:  # e.g. a TorchScript model or a check defined in a function
            warnings.warn(f"{check.name}: running in the audit's own process, not isolated: "
                          f"the check or subject cannot be copied to another process "
                          f"({type(e).__name__}: {one_line(e)})", RuntimeWarning,
                          stacklevel=2)
            return execute_check(check, subject, seed)
        header = _Header(sys_path=list(sys.path), cwd=os.getcwd(),
                         threads=torch.get_num_threads(),
                         deterministic=torch.are_deterministic_algorithms_enabled(),
                         warning_filters=_picklable_filters())
        (folder / _HEADER).write_bytes(pickle.dumps(header))
        with (folder / _STDERR).open("wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "audit.isolation", str(folder)],
                                    stderr=err, stdin=subprocess.DEVNULL)
            try:
                code = proc.wait()
            finally:  # interrupted (Ctrl-C, SIGTERM): do not leave the child running
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        stderr = (folder / _STDERR).read_text(errors="replace")
        result = folder / _RESULT
        if code == 0 and result.exists():
            _forward(stderr)
            kind, value = pickle.loads(result.read_bytes())
            if kind == "raise":
                raise value
            section: Section = value
            return section
    _forward(stderr)
    return crashed_section(check, code, stderr)


def crashed_section(check: Check[Any], code: int, stderr: str = "") -> Section:
    """The errored section of a check whose process ended with exit status ``code`` (negative:
    killed by signal ``-code``) without returning a result."""
    if code < 0:
        sig = _signal_name(-code)
        what = f"check crashed with signal {-code} ({sig})"
        hint = (" (SIGKILL: most often the out-of-memory killer; lower the check's sample "
                "counts or batch size)" if -code == signal.SIGKILL else "")
    else:
        sig = None
        what = f"check process exited with status {code} without a result"
        hint = ""
    stack = _stack(stderr)
    sec = check.section(status="error", error=f"{what}{hint}",
                        summary="This check crashed the process it ran in (a fault in native "
                                "code it calls); its results are missing. The other checks "
                                "ran normally.")
    evidence: dict[str, Any] = {"exit_status": code, "isolated": True}
    if sig:
        evidence["signal"] = sig
    if stack:
        evidence["stack"] = stack
    sec.findings.append(CHECK_CRASHED(
        Severity.HIGH, check=check.name,
        title=f"{check.title} crashed" + (f" ({sig})" if sig else ""),
        detail=f"{what}{hint}. It ran in an isolated process, so the audit went on; the stack "
               "at the crash is in this finding's evidence." if stack else f"{what}{hint}.",
        evidence=evidence,
        recommendation="Run the audit again (native crashes can be intermittent); if it "
                       "repeats, run with OMP_NUM_THREADS=1 and report it with the stack."))
    return sec


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _stack(stderr: str) -> str:
    """faulthandler's report (from 'Fatal Python error' on), else the end of stderr."""
    i = stderr.find("Fatal Python error")
    text = stderr[i:] if i >= 0 else stderr
    return text[-_STACK_CHARS:].strip() if i < 0 else text[:_STACK_CHARS].strip()


def _forward(stderr: str) -> None:
    if stderr:
        sys.stderr.write(stderr)
        sys.stderr.flush()


def _picklable_filters() -> list[Any]:
    out = []
    for f in warnings.filters:
        try:
            pickle.dumps(f)
        except Exception:
            continue
        out.append(f)
    return out



def _die_with_parent() -> None:
    """On Linux, ask for SIGKILL when the audit process dies (e.g. killed with SIGKILL), so an
    isolated check never outlives it."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child(folder: Path) -> int:
    """The child's side: read the header and payload, run the check, write the outcome."""
    faulthandler.enable(all_threads=True)
    _die_with_parent()
    header: _Header = pickle.loads((folder / _HEADER).read_bytes())
    sys.path[:] = header.sys_path
    os.chdir(header.cwd)
    warnings.filters[:] = header.warning_filters  # type: ignore[index]
    import torch

    torch.set_num_threads(header.threads)
    torch.use_deterministic_algorithms(header.deterministic)
    from audit.execution import execute_check

    # our own file, written a moment ago by the parent in a private temporary folder
    payload = torch.load(folder / _PAYLOAD, weights_only=False)
    try:
        outcome: tuple[str, Any] = ("section", execute_check(payload["check"],
                                                             payload["subject"],
                                                             payload["seed"]))
    except BaseException as e:  # what the runner lets through: usage errors, interrupts
        outcome = ("raise", e)
    try:
        data = pickle.dumps(outcome)
    except Exception as e:
        data = pickle.dumps(("raise", RuntimeError(f"the check's result could not be sent "
                                                   f"back: {type(e).__name__}: {e}")))
    tmp = folder / (_RESULT + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(folder / _RESULT)
    return 0


if __name__ == "__main__":
    sys.exit(_child(Path(sys.argv[1])))
