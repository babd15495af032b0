"""``audit harden``: adversarially train a model (or train it under Gaussian noise for
randomized smoothing: ``--method smoothing --sigma 0.25``), write the hardened bundle, and
compare the audits before and after.

Distributed: ``torchrun --nproc_per_node=K -m audit harden ...`` trains with
DistributedDataParallel (gloo on CPU, NCCL with CUDA); ``--batch-size`` is the global batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from audit.cli.common import (
    ShowProgress,
    TrustCheckpoint,
    command_line,
    err_console,
    out_console,
    require_html,
    safe,
    show_progress,
    split,
)
from audit.errors import AuditError, Interrupted, UsageError

if TYPE_CHECKING:  # the CLI imports the library lazily, so that --help stays fast
    from audit.apps.harden_data import HardenData
    from audit.subject import AuditData

EXIT_CODES = ("Exit codes: 0 hardened (and audited); 2 error (bad input, unreadable or "
              "mismatched checkpoint, unwritable output); 3 unsafe checkpoint refused (needs "
              "--trust-checkpoint); 4 usage error (bad flags, an earlier run's checkpoint in "
              "--out without --resume); 130 interrupted (finished epochs are kept: run again "
              "with --resume).")


class _EpochProgress:
    """A rich progress bar over all training batches with the last epoch's validation numbers;
    one line per epoch is printed above it (and alone when stderr is not a terminal)."""

    def __init__(self, console: Any, epochs: int, show_bar: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = console
        self.epochs = epochs
        self.progress = Progress(
            TextColumn("[bold]harden[/] {task.description}"), BarColumn(),
            MofNCompleteColumn(), TextColumn("{task.fields[val]}"), TimeElapsedColumn(),
            TimeRemainingColumn(), console=console, transient=True, disable=not show_bar)
        self.task = self.progress.add_task("epoch 1", total=None, val="")

    def __enter__(self) -> _EpochProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def on_batch(self, epoch: int, batch: int, batches: int) -> None:
        self.progress.update(self.task, total=self.epochs * batches,
                             completed=epoch * batches + batch,
                             description=f"epoch {epoch + 1}/{self.epochs}")

    def on_epoch(self, s: Any) -> None:
        if "sigma" in s.info:  # Gaussian augmentation: accuracy under noise, not attacks
            val = f"val clean {s.val_clean_accuracy:.1%} noisy {s.val_noisy_accuracy:.1%}"
            how = f"{s.method} sigma {s.sigma:.4g}"
            train = f"train noisy {s.train_noisy_accuracy:.1%}"
        else:
            val = f"val clean {s.val_clean_accuracy:.1%} robust {s.val_robust_accuracy:.1%}"
            how = f"{s.method} eps {s.eps:.4g}"
            train = f"train robust {s.train_robust_accuracy:.1%}"
        self.progress.update(self.task, val=val)
        best = " [green](best)[/]" if s.best else ""
        self.console.print(
            f"epoch {s.epoch}/{self.epochs} {how}: loss {s.train_loss:.3f}"
            f", {train}, {val} ({s.seconds:.1f} s){best}",
            highlight=False)
        for event in s.events:
            self.console.print(f"[yellow]warning:[/] {safe(event)}")


def harden_cmd(
    model: Annotated[str, typer.Argument(help="Model to harden: bundled name, folder with "
                                              "card.json, or checkpoint file (with --card).")],
    out: Annotated[Path, typer.Option(help="Folder for the hardened model (model.safetensors, "
                                           "card.json, and training/checkpoint.pt while it "
                                           "runs).")],
    eps: Annotated[float | None, typer.Option(help="Perturbation budget in input units (pixels "
                                                   "in [0, 1] for images), e.g. 0.1.")] = None,
    method: Annotated[str, typer.Option(help="pgd (Madry), trades (Zhang), fast (FGSM with "
                                             "random start, Wong et al.) or smoothing "
                                             "(Gaussian data augmentation for randomized "
                                             "smoothing, Cohen et al.; needs --sigma).")
                      ] = "pgd",
    sigma: Annotated[float | None, typer.Option(help="Smoothing: the Gaussian noise level in "
                                                     "input units, e.g. 0.25 (the certified "
                                                     "check certifies at it).")] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 10,
    data: Annotated[str | None, typer.Option(help="Training data: bundled dataset name or a "
                                                  ".npz/.csv file (default: the card's "
                                                  "dataset, train split).")] = None,
    test_data: Annotated[str | None, typer.Option(
        "--test-data", help="Data for the test metrics and the before/after audits: bundled "
                            "dataset name (its test split) or a .npz/.csv file (default: the "
                            "bundled dataset's test split, else a share of --data held out "
                            "from training).")] = None,
    test_fraction: Annotated[float | None, typer.Option(
        "--test-fraction", help="Share of a --data file held out from training for the test "
                                "metrics and audits when there is no test split (default "
                                "0.2).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its "
                                                          "last finished epoch.")] = False,
    seed: Annotated[int, typer.Option(help="Seed (shuffling, random starts, validation "
                                           "split).")] = 0,
    norm: Annotated[str, typer.Option(help="Threat model: linf or l2.")] = "linf",
    batch_size: Annotated[int, typer.Option(help="Global batch size (split over processes "
                                                 "under torchrun).")] = 64,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, one-cycle).")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.0,
    steps: Annotated[int, typer.Option(help="PGD/TRADES attack steps while training.")] = 10,
    beta: Annotated[float, typer.Option(help="TRADES: weight of the robustness (KL) term.")
                    ] = 6.0,
    warmup_epochs: Annotated[float, typer.Option(help="Ramp eps linearly from 0 over this "
                                                      "many epochs.")] = 0.0,
    augment: Annotated[str, typer.Option(help="Data augmentation for images: none or shift "
                                              "(random translation by 1 pixel).")] = "none",
    val_fraction: Annotated[float, typer.Option(help="Share of the training data held out to "
                                                     "pick the best robust epoch.")] = 0.1,
    co_action: Annotated[str, typer.Option(
        "--co-action", help="Fast method, on catastrophic overfitting: fallback (to PGD), "
                            "stop, or warn.")] = "fallback",
    name: Annotated[str | None, typer.Option(help="Name in the new card (default: the --out "
                                                  "folder's name).")] = None,
    report: Annotated[Path | None, typer.Option(help="Before/after comparison HTML (default: "
                                                     "reports/<name>-hardening.html); the two "
                                                     "audits are written beside it.")] = None,
    run_audit: Annotated[bool, typer.Option("--audit/--no-audit", help="Audit the model "
                                                                       "before and after.")
                         ] = True,
    checks: Annotated[str | None, typer.Option(help="Checks of the before/after audits "
                                                    "(default: all that apply).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Smaller audit budgets.")] = False,
    audit_config: Annotated[Path | None, typer.Option(
        "--config", help="audit.toml with the checks and parameters of the before/after "
                         "audits.")] = None,
    keep_checkpoint: Annotated[bool, typer.Option("--keep-checkpoint", help="Keep "
                                                  "training/checkpoint.pt after success.")
                               ] = False,
    arch: Annotated[str | None, typer.Option(help="Architecture 'module:Class' for a "
                                                  "state-dict checkpoint.")] = None,
    card: Annotated[Path | None, typer.Option(help="card.json of the model.")] = None,
    trust_checkpoint: TrustCheckpoint = False,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch (default: torch's "
                                                     "choice; 1 is fastest for small models).")
                       ] = None,
    progress: ShowProgress = True,
) -> None:
    """Adversarially train MODEL (PGD, TRADES or fast FGSM) or train it under Gaussian noise
    (smoothing), keep the epoch with the best robust (noisy) validation accuracy, write the
    hardened model and card into --out, then audit the model before and after and write a
    side-by-side comparison."""
    from audit.apps.harden import CHECKPOINT, SmoothingConfig, harden
    from audit.io import check_writable
    from audit.training import init_distributed, random_shift

    if augment not in ("none", "shift"):
        raise UsageError(f"--augment must be none or shift, got {augment!r}")
    config = _config(method, eps, sigma, {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
        "seed": seed}, {"norm": norm, "steps": steps, "beta": beta,
                        "warmup_epochs": warmup_epochs, "co_action": co_action})
    config.validate()
    new_name = name or out.resolve().name
    report_path = report or Path("reports") / f"{new_name}-hardening.html"
    if run_audit:
        require_html(report_path, "--report")
        _check_audit_options(checks, audit_config)
    dist = init_distributed()
    if dist.is_main:
        check_writable(out / CHECKPOINT)
        if run_audit:
            check_writable(report_path)
    aug_fn = random_shift if augment == "shift" else None
    show = dist.is_main and show_progress(progress)
    bar = _EpochProgress(err_console, epochs, show)
    try:
        with bar:
            outcome = harden(
                model, out, config, data=data, test_data=test_data,
                test_fraction=test_fraction, val_fraction=val_fraction, resume=resume,
                name=name, command=command_line(), augment=aug_fn,
                augment_name=None if augment == "none" else "random shift up to 1 pixel",
                keep_checkpoint=keep_checkpoint, arch=arch, card=card,
                trust_checkpoint=trust_checkpoint, dist=dist,
                on_batch=bar.on_batch if dist.is_main else None,
                on_epoch=bar.on_epoch if dist.is_main and progress else None,
                threads=threads)
    except Interrupted as e:
        raise Interrupted(f"{e.message} (finished epochs are saved in {out / CHECKPOINT}; "
                          "continue with --resume)") from None
    if dist.enabled:
        import torch.distributed

        torch.distributed.destroy_process_group()
    if not dist.is_main:
        return
    parent = outcome.parent.card.name if outcome.parent.card else model
    smoothing = isinstance(config, SmoothingConfig)
    how = f"smoothing, sigma {config.sigma:g}" if isinstance(config, SmoothingConfig) else \
        f"{config.method}, {config.norm} eps {config.eps:g}"
    _print_outcome(outcome, parent, out, how, resume, run_audit)
    if run_audit:
        labels = (f"{parent} (before)", f"{new_name} (after)")
        # both audits certify at the training sigma, so the comparison has the parent's too
        params = {"certified": {"sigmas": [config.sigma]}} if smoothing else None
        try:
            _audit_before_after(model, out, labels, report_path, checks, quick, seed,
                                _audit_data(outcome.data), arch, card, trust_checkpoint, show,
                                params, audit_config)
        except AuditError as e:
            raise type(e)(f"the hardened model is in {out}, but the before/after audit "
                          f"failed: {e.message}") from None


def _print_outcome(outcome: Any, parent: str, out: Path, how: str, resume: bool,
                   audited: bool) -> None:
    """What was trained and how it measures on the test split."""
    m = outcome.card.metrics
    summary = ", ".join(f"{k} {v:g}" for k, v in m.items())
    if outcome.resumed_epoch:
        out_console.print(f"resumed from epoch {outcome.resumed_epoch}", highlight=False)
    elif resume:
        out_console.print(f"no checkpoint in {safe(out)} to resume from: trained from the start")
    out_console.print(f"hardened {safe(parent)} -> {safe(out)} ({safe(how)}): {safe(summary)}")
    d = outcome.data
    size = "" if d.test_from == "held-out" else f" ({len(d.test)} samples)"
    out_console.print(f"trained on {safe(d.trained_on)} ({d.n_train} samples, {d.n_val} for "
                      f"validation); tested{' and audited' if audited else ''} on "
                      f"{safe(d.tested_on)}{size}",
                      highlight=False)


def _check_audit_options(checks: str | None, config: Path | None) -> None:
    """Refuse unknown checks and a bad audit.toml before training, not after it."""
    from audit.checks import get_check
    from audit.config import load_config
    from audit.crosscheck import CROSSCHECK

    for name in split(checks) or []:
        if name != CROSSCHECK:
            get_check(name)
    if config is not None:
        load_config(config)


def _audit_data(data: HardenData) -> str | AuditData | None:
    """What the before/after audits load: the test file or dataset name as given (so the
    results record it as ``audit run --data`` would), or the held-out rows themselves."""
    return data.test if data.test_from == "held-out" else data.test_spec


def _audit_before_after(model: str, out: Path, labels: tuple[str, str], report: Path,
                        checks: str | None, quick: bool, seed: int, data: Any,
                        arch: str | None, card: Path | None, trust: bool,
                        progress: bool, params: dict[str, dict[str, Any]] | None = None,
                        config: Path | None = None) -> None:
    """Audit the parent and the hardened model on the same test data (never the rows trained
    on) and write the comparison."""
    from audit.report.diff import write_diff
    from audit.report.render import write_report
    from audit.runner import run_audit

    common: dict[str, Any] = {"data": data, "checks": split(checks), "seed": seed,
                              "config": config,
                              "quick": quick or None, "progress": progress, "params": params}
    stem = report.with_suffix("")
    before = run_audit(model, arch=arch, card=card, trust_checkpoint=trust,
                       command=f"audit run {model} --seed {seed}", **common)
    after = run_audit(out, command=f"audit run {out.as_posix()} --seed {seed}", **common)
    paths = [write_report(before, Path(f"{stem}-before.html"))[0],
             write_report(after, Path(f"{stem}-after.html"))[0]]
    html, md_path = write_diff(before, after, report, labels)
    out_console.print(f"before: {safe(paths[0])}\nafter: {safe(paths[1])}\ncomparison: "
                      f"{safe(html)} (markdown: {safe(md_path)})")


def _config(method: str, eps: float | None, sigma: float | None, train: dict[str, Any],
            attack: dict[str, Any]) -> Any:
    """The run's settings: a :class:`SmoothingConfig` for ``--method smoothing`` (needs
    ``--sigma``), else an :class:`AdversarialConfig` (needs ``--eps``)."""
    from audit.apps.harden import AdversarialConfig, SmoothingConfig

    if method == "smoothing":
        if sigma is None:
            raise UsageError("--method smoothing needs --sigma (the Gaussian noise level in "
                             "input units, e.g. 0.25)")
        return SmoothingConfig.from_dict({"sigma": sigma, **train})
    if eps is None:
        raise UsageError(f"--method {method} needs --eps (the perturbation budget in input "
                         "units, e.g. 0.1)")
    return AdversarialConfig.from_dict({"method": method, "eps": eps, **attack, **train})


def register(app: typer.Typer) -> None:
    """Add ``audit harden`` to the command line."""
    app.command("harden", epilog=EXIT_CODES)(harden_cmd)
