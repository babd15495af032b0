"""Running an audit: load the model and data, run the checks, assemble the result.

One failing check becomes an errored section (with a high-severity finding saying the check
could not run); it never stops the others. A check run isolated (:mod:`audit.isolation`) that
crashes its process natively (SIGSEGV, SIGABRT) becomes an errored section naming the signal.
Every check is seeded from the run seed and its own name, so results do not depend on which
other checks ran.
"""

from __future__ import annotations

import datetime as _dt
import platform
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from audit.card import ModelCard
from audit.checks import Check, all_checks, get_check, make_params
from audit.config import AuditConfig, resolve_config
from audit.cost import budget_scaled, scale_params
from audit.crosscheck import CROSSCHECK, Audited, cross_check_section
from audit.datasets.spec import audit_data, path_or_name
from audit.datasets.spec import in_memory_data as in_memory_data  # re-exported
from audit.datasets.spec import load_data as load_data  # re-exported
from audit.devices import resolve_device
from audit.distributed import current
from audit.errors import DataError, UsageError
from audit.execution import execute_check, seed_everything
from audit.isolation import isolated_checks, run_isolated
from audit.loading import LoadedModel, infer_card, load_model
from audit.policy import CHECK_SKIPPED
from audit.result import AuditResult, Section, Severity, section_status, summarize
from audit.resume import Checkpoint
from audit.sample_budget import Samples, sample_caps, samples_table, with_samples
from audit.subject import AuditData, Subject, derive_seed
from audit.version import __version__

ProgressFn = Callable[[str, float], None]


def build_subject(
    model: str | Path | LoadedModel | torch.nn.Module,
    *,
    data: str | Path | AuditData | tuple[Any, Any] | None = None,
    target: str | None = None,
    sensitive: Sequence[str] | None = None,
    arch: str | None = None,
    card: str | Path | None = None,
    trust_checkpoint: bool = False,
    seed: int = 0,
    quick: bool = False,
    batch_size: int = 256,
    reference: str | Path | AuditData | tuple[Any, Any] | None = None,
    labels: bool = True,
    device: str | torch.device | None = None,
    amp: bool = False,
) -> Subject:
    """Load model and data (and the ``reference`` data of the drift check) and check that the
    model runs on them (raises on any problem). ``labels=False`` accepts data without labels
    (a file lacking its label column); the reference always needs labels. ``device``:
    ``auto`` (default: CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``. ``amp``: the
    subject's batched forward passes (:meth:`Subject.logits`) run under ``torch.autocast``;
    gradient-based attacks, explainers and certification stay exact."""
    run_on = resolve_device(device)  # a bad --device fails before anything loads
    in_memory = LoadedModel | torch.nn.Module | torch.export.ExportedProgram
    loaded = _as_loaded(model, card) if isinstance(model, in_memory) \
        else load_model(path_or_name(model, "model"), arch=arch, card=card,
                        trust_checkpoint=trust_checkpoint)
    model_card = loaded.card
    if model_card is None and data is None:
        raise UsageError(f"{loaded.path} has no card.json; pass --data (and --card to give "
                         "class names and value range)")
    loaded_data = audit_data(data, model_card, target=target, sensitive=sensitive, seed=seed,
                             labels=labels)
    if model_card is None:
        model_card = infer_card(loaded, loaded_data.x, loaded_data.classes, loaded_data.kind)
    ref_data = None if reference is None else audit_data(
        reference, model_card, target=target, sensitive=sensitive, seed=seed, split="train")
    if ref_data is not None and not ref_data.labelled:
        raise DataError(f"the reference data {ref_data.source or ref_data.name} has no labels; "
                        "the reference must be labelled (pass --target for a CSV)")
    loaded.model.to(run_on)
    subject = Subject(model=loaded.model, card=model_card, data=loaded_data,
                      model_info=loaded.info(model_card), seed=seed, quick=quick, device=run_on,
                      batch_size=batch_size, reference=ref_data, amp=amp)
    subject.batch_size = subject.cost.batch(batch_size)  # peak memory follows the batch
    logits = subject.data_logits  # fails early, with a clear message, if the model is broken
    if logits.ndim != 2 or logits.shape[1] != model_card.num_classes:
        raise UsageError(f"the model returns shape {tuple(logits.shape)} but the card lists "
                         f"{model_card.num_classes} classes; fix the card's classes")
    return subject


def _as_loaded(model: Any, card: str | Path | None) -> LoadedModel:
    """A model object as a :class:`LoadedModel`: an ``nn.Module`` (a TorchScript module or an
    ``ExportedProgram`` too, given layers that take hooks) gets the ``card`` given (or none:
    then one is inferred from the data) and the sha256 of its weights."""
    if isinstance(model, LoadedModel):
        return model
    import hashlib

    from audit.loading import hookable

    model = hookable(model)
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    cls = type(model)
    return LoadedModel(model=model.eval(), card=ModelCard.load(Path(card)) if card else None,
                       path=Path(f"<{cls.__name__} in memory>"), format="module",
                       sha256=h.hexdigest(), arch=f"{cls.__module__}:{cls.__qualname__}")


def select_checks(subject: Subject, config: AuditConfig,
                  explicit: Sequence[str] | None) -> list[tuple[type[Check], bool]]:
    """The checks to run as (class, explicitly requested)."""
    if explicit:
        names, forced = list(explicit), True
    elif config.checks:
        names, forced = list(config.checks), True
    elif subject.card.checks:
        names, forced = list(subject.card.checks), False
    else:
        names, forced = list(all_checks()), False
    seen: list[tuple[type[Check], bool]] = []
    for n in names:
        cls = get_check(n)
        if all(cls is not c for c, _ in seen):
            seen.append((cls, forced))
    return seen


def run_checks(subject: Subject, config: AuditConfig,
               checks: Sequence[tuple[type[Check], bool]],
               progress: ProgressFn | None = None,
               isolate: bool | Sequence[str] | None = None,
               checkpoint: Checkpoint | None = None) -> list[Section]:
    """Run each check, isolating failures; returns sections in order.

    With a ``checkpoint`` (``--resume``) a check whose section was saved by an earlier run of
    the same audit is read back instead of run, and every section that ran is saved as soon as
    it is done; an errored one is not, so a resumed audit tries it again.

    Checks named by :func:`audit.isolation.isolated_checks` (``isolate``, else the
    ``AUDIT_ISOLATE`` environment variable, else those whose class sets ``isolate = True``) run
    in a fresh process, so that a native crash in one becomes an errored section.
    """
    in_subprocess = isolated_checks(
        [c.name for c, _ in checks],
        [c.name for c, _ in checks if c.isolate], isolate)
    made: list[tuple[Check, str | None]] = []
    scaled: dict[str, dict[str, tuple[int, int]]] = {}
    for cls, forced in checks:  # every precondition before any check runs: bad input costs
        given = config.params.get(cls.name)
        params = make_params(cls, given, config.quick)  # no time
        params = with_samples(params, config.samples, set(given or {}), len(subject.data))
        if config.scale_budgets:  # caps --samples set are the user's too: they stay
            chosen = set(given or {}) | (set(sample_caps(params)) if config.samples else set())
            params, scaled[cls.name] = scale_params(params, subject.cost, chosen, config.quick)
        check = cls(params)
        made.append((check, _applies(check, subject, forced)))
    sections: list[Section] = []
    for i, ((cls, forced), (check, reason)) in enumerate(zip(checks, made, strict=True)):
        if progress:
            progress(f"{cls.title}", i / max(len(checks), 1))
        start = time.perf_counter()
        saved = _saved(checkpoint, check) if reason is None else None
        if saved is not None:
            saved.status = section_status(saved, config.fail_on)
            sections.append(saved)
            continue
        if reason is not None:
            sec = check.section(status="skipped", summary=f"Not run: {reason}")
            if forced:
                sec.findings.append(CHECK_SKIPPED(
                    Severity.INFO, f"{cls.title} was requested but does not apply", reason,
                    check=cls.name))
        elif cls.name in in_subprocess:
            sec = run_isolated(check, subject, derive_seed(subject.seed, cls.name))
        else:
            sec = execute_check(check, subject, derive_seed(subject.seed, cls.name))
        if reason is None and scaled.get(cls.name):
            sec.findings.append(budget_scaled(cls.name, scaled[cls.name], subject.cost))
        if reason is None and sec.error is None:
            sec.tables.append(samples_table(check.params, len(subject.data)))
        sec.duration_s = time.perf_counter() - start
        sec.status = section_status(sec, config.fail_on)
        if checkpoint is not None and reason is None and sec.status != "error":
            checkpoint.save(sec, _params_of(check))
        sections.append(sec)
    if progress:
        progress("done", 1.0)
    return sections


def _params_of(check: Check) -> dict[str, Any]:
    return dict(check.section().params)


def _saved(checkpoint: Checkpoint | None, check: Check) -> Section | None:
    """The section ``checkpoint`` holds for ``check``; in a distributed audit rank 0 reads
    it and every rank takes rank 0's answer, so the ranks agree on what runs."""
    if checkpoint is None:
        return None
    world = current()
    saved = checkpoint.load(check.name, _params_of(check)) if world.is_main else None
    if not world.enabled:
        return saved
    saved = world.gather(saved)[0]
    if saved is not None and not world.is_main:
        checkpoint.resumed.append(check.name)
    return saved


def _applies(check: Check, subject: Subject, forced: bool) -> str | None:
    """``check.applies(subject)``; a :class:`DataError` from it (an input only the user can
    name is missing, e.g. a sensitive column) is the run's error when the check was asked for
    by name, and the reason it is skipped otherwise. Data without labels is such a case for
    every check that needs labels (``Check.needs_labels``)."""
    try:
        if check.needs_labels and not subject.data.labelled:
            raise DataError(f"{check.name} needs labelled data, and {subject.data.name} has "
                            "none (pass --target COLUMN naming its label column)")
        return check.applies(subject)
    except DataError as e:
        if forced:
            raise
        return e.message


def run_audit(
    model: str | Path | LoadedModel | torch.nn.Module,
    *,
    data: str | Path | AuditData | tuple[Any, Any] | None = None,
    checks: Sequence[str] | None = None,
    config: AuditConfig | str | Path | None = None,
    seed: int | None = None,
    quick: bool | None = None,
    samples: Samples = None,
    fail_on: str | Severity | None = None,
    target: str | None = None,
    sensitive: Sequence[str] | None = None,
    arch: str | None = None,
    card: str | Path | None = None,
    trust_checkpoint: bool = False,
    params: dict[str, dict[str, Any]] | None = None,
    progress: bool | ProgressFn = False,
    command: str | None = None,
    isolate: bool | Sequence[str] | None = None,
    reference: str | Path | AuditData | tuple[Any, Any] | None = None,
    labels: bool = True,
    device: str | torch.device | None = None,
    amp: bool = False,
    resume: str | Path | Callable[[str], Path] | None = None,
) -> AuditResult:
    """Audit a model and return the :class:`AuditResult`.

    ``model`` is a bundled name (``"digits-cnn"``), a folder, a checkpoint file, or an
    ``nn.Module`` (with ``card=`` for its classes and value range, else inferred from the
    data). ``data`` is a bundled dataset name, a file, or an ``(x, y)`` pair of arrays; by
    default the card's dataset (test split). Keyword
    arguments override ``config`` (an :class:`AuditConfig` or a path to ``audit.toml``);
    ``params`` overrides per-check parameters, e.g. ``{"saliency": {"layer": "features.4"}}``.
    ``samples`` (an integer or ``"all"``) sets every cap on the rows a check uses
    (:mod:`audit.sample_budget`; keys set in ``params`` or the config win); each section
    then has a table of the samples its numbers rest on.
    ``isolate`` runs checks in a fresh process each (True: all, False: none, or a list of
    names; default: the ``AUDIT_ISOLATE`` environment variable, else the checks that declare
    ``isolate = True``), so a native crash in one is reported as that check's error.
    ``reference`` (like ``data``; by default none) is the labelled data the ``drift`` check
    compares ``data`` with; ``labels=False`` lets ``data`` lack labels (then only checks that
    need none, such as ``drift``, apply). ``device`` is ``auto`` (default), ``cpu``,
    ``cuda`` or ``cuda:N`` (:func:`audit.devices.resolve_device`). ``amp=True`` runs the
    forward passes where exactness is not needed (performance, slices, drift, corruptions:
    :meth:`Subject.logits`) under ``torch.autocast`` (float16 on CUDA, bfloat16 on the CPU);
    gradient-based attacks, explainers and certification stay in full precision.
    ``resume`` is a folder for partial results (:mod:`audit.resume`), or a function of the
    model's name giving one: each finished check is saved there, and a rerun of the same
    audit reads them back instead of running again.

    Under ``torchrun`` (:func:`audit.distributed.init_distributed`, then this call inside
    :func:`audit.distributed.using`) every rank runs the audit and each per-sample stage is
    split over the ranks; every rank returns the same result, and only rank 0 should write it.
    """
    t0 = time.perf_counter()
    world = current()
    if world.enabled:  # one device per rank; a check's child process is not in the group
        device = world.device if device in (None, "auto") else device
        isolate = False
    cfg = resolve_config(config, seed=seed, quick=quick, fail_on=fail_on, samples=samples)
    for name, overrides in (params or {}).items():
        cls = get_check(name)
        merged = {**cfg.params.get(name, {}), **overrides}
        make_params(cls, merged, quick=False, where="command line")
        cfg.params[name] = merged
    # cross-checks compare sections: they run with the default selection of checks, or
    # when "crosscheck" is named among explicit ones
    named = list(checks or cfg.checks or [])
    cross = not named or CROSSCHECK in named
    checks = [c for c in checks if c != CROSSCHECK] if checks else checks
    cfg.checks = [c for c in cfg.checks if c != CROSSCHECK] if cfg.checks else cfg.checks
    if checks:
        for name in checks:
            get_check(name)
    seed_everything(cfg.seed)
    subject = build_subject(model, data=data, target=target, sensitive=sensitive, arch=arch,
                            card=card, trust_checkpoint=trust_checkpoint, seed=cfg.seed,
                            quick=cfg.quick, batch_size=cfg.batch_size, reference=reference,
                            labels=labels, device=device, amp=amp)
    selected = select_checks(subject, cfg, checks)
    progress_fn: ProgressFn | None = progress if callable(progress) and world.is_main else None
    ctx: Any = nullcontext()
    if progress is True and world.is_main:
        ctx = _RichProgress(len(selected))
        progress_fn = ctx.update
    folder = resume(str(subject.model_info["name"])) if callable(resume) else resume
    checkpoint = None if folder is None else \
        Checkpoint(Path(folder), _context(subject), writer=world.is_main)
    with ctx:
        sections = run_checks(subject, cfg, selected, progress_fn, isolate, checkpoint)
    crossed = cross_check_section(Audited(sections, subject.card.to_dict(),
                                          subject.data.info(), subject.model_info)) \
        if cross else None
    if crossed is not None:
        crossed.status = section_status(crossed, cfg.fail_on)
        sections.append(crossed)
    duration = time.perf_counter() - t0
    effective = cfg.to_dict()
    effective["checks"] = [c.name for c, _ in selected] + ([CROSSCHECK] if crossed else [])
    # a card's expected verdict is about its default audit, not a chosen subset of checks
    effective["selection"] = "requested" if checks or cfg.checks else "default"
    effective["params"] = {s.check: s.params for s in sections}
    return AuditResult(
        tool={"name": "audit", "version": __version__},
        model=subject.model_info,
        data=subject.data.info(),
        config=effective,
        summary=summarize(sections, cfg.fail_on, duration),
        sections=sections,
        card=subject.card.to_dict(),
        run={
            "command": command or "",
            "seed": cfg.seed,
            "quick": cfg.quick,
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "platform": platform.platform(terse=True),
            "device": str(subject.device),
            "amp": subject.amp,
            "world_size": world.world_size,
            **({} if checkpoint is None else {"resumed": checkpoint.resumed}),
        },
    )


def _context(subject: Subject) -> dict[str, Any]:
    """What every section of an audit of ``subject`` depends on, besides its parameters."""
    ref = subject.reference
    return {"model": subject.model_info.get("sha256"), "data": subject.data.sha256,
            "reference": None if ref is None else ref.sha256, "card": subject.card.to_dict(),
            "version": __version__, "seed": subject.seed, "quick": subject.quick,
            "device": subject.device.type, "amp": subject.amp}


class _RichProgress:
    """A rich progress bar on stderr, one step per check."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("[bold]audit[/] {task.description}"), BarColumn(),
                                  TextColumn("{task.completed}/{task.total}"),
                                  TimeElapsedColumn(), console=Console(stderr=True),
                                  transient=False)
        self._task = self._progress.add_task("starting", total=total)
        self._total = total

    def __enter__(self) -> _RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, description: str, fraction: float) -> None:
        self._progress.update(self._task, description=description,
                              completed=round(fraction * self._total))
