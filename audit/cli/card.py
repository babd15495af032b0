"""``audit card``: model cards. ``--init MODEL --data FILE`` writes a card skeleton inferred
from the model and the data, and prints what was inferred and what the user must write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from audit.cli.common import TrustCheckpoint, out_console, safe
from audit.errors import UsageError


def card_cmd(
    init: Annotated[str | None, typer.Option(
        "--init", metavar="MODEL", help="Write a card skeleton for this checkpoint (a state dict "
                                        "with --arch, safetensors, TorchScript, torch.export), "
                                        "inferred from it and --data.")] = None,
    data: Annotated[Path | None, typer.Option(help="Data the model takes: .npz (arrays x, y) "
                                                   "or .csv with a label column (ideally the "
                                                   "training file: a CSV's encoder is fitted on "
                                                   "it).")] = None,
    arch: Annotated[str | None, typer.Option(help="Architecture 'module:Class' of a state-dict "
                                                  "checkpoint.")] = None,
    arch_kwargs: Annotated[str | None, typer.Option(
        "--arch-kwargs", metavar="JSON", help="Constructor arguments of --arch as a JSON "
                                              "object, e.g. '{\"classes\": 5}'.")] = None,
    out: Annotated[Path | None, typer.Option(help="Card to write (default: card.json beside "
                                                  "the weights, where the loader looks).")
                   ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing card.")] = False,
    target: Annotated[str | None, typer.Option(help="Label column of a CSV (default: a column "
                                                    "named target, label, y or class, else the "
                                                    "last one).")] = None,
    sensitive: Annotated[bool, typer.Option(
        "--sensitive", help="Write the columns that look like protected attributes (sex, race, "
                            "age, ...) into the card's 'sensitive' (without it they are only "
                            "printed).")] = False,
    name: Annotated[str | None, typer.Option(help="The model's name in the card (default: the "
                                                  "weights' file name).")] = None,
    trust_checkpoint: TrustCheckpoint = False,
) -> None:
    """Model cards: --init MODEL --data FILE writes a card skeleton inferred from the model
    and the data (input kind, shape, range, classes; for a CSV the target and an encoder),
    with placeholders for what only you can write."""
    from audit.apps.card_init import card_json, init_card
    from audit.io import atomic_write_text, check_writable

    if init is None:
        raise UsageError("nothing to do: pass --init MODEL --data FILE to write a card skeleton")
    if data is None:
        raise UsageError("--init needs --data FILE (.npz with x, y or .csv) to infer the card "
                         "from")
    kwargs = _kwargs(arch_kwargs)
    model_path = Path(init)
    target_path = out or (model_path if model_path.is_dir() else model_path.parent) / "card.json"
    if target_path.suffix.lower() != ".json":
        raise UsageError(f"--out {target_path} must end in .json")
    if target_path.exists() and not force:
        raise UsageError(f"{target_path} exists; pass --force to overwrite it, or --out "
                         "another.json")
    if target_path.resolve() in (model_path.resolve(), data.resolve()):
        raise UsageError(f"--out {target_path} is the model or the data file")
    check_writable(target_path)
    draft = init_card(init, data, arch=arch, arch_kwargs=kwargs, target=target,
                      write_sensitive=sensitive, name=name, trust_checkpoint=trust_checkpoint)
    atomic_write_text(target_path, card_json(draft.card))
    _print(draft, target_path, init, sensitive)


def _kwargs(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"--arch-kwargs is not valid JSON ({e.msg}); give an object such as "
                         "'{\"classes\": 5}'") from None
    if not isinstance(value, dict):
        raise UsageError("--arch-kwargs must be a JSON object such as '{\"classes\": 5}'")
    return value


def _print(draft: Any, path: Path, model: str, sensitive: bool) -> None:
    """What was inferred and how, what to check, what to write; strings from the data are
    escaped (column names and labels are data)."""
    p = out_console.print
    p(f"wrote {safe(path)}: edit the fields marked FILL IN before you rely on an audit")
    p("[bold]inferred[/]")
    for n in draft.inferred:
        p(f"  {safe(n.key):<22} {safe(n.text, 400)}")
    if draft.accuracy is not None:
        p(f"  {'check':<22} the model's accuracy on these {draft.rows} rows with this card: "
          f"{draft.accuracy:.1%} (majority class {draft.chance:.1%})")
    if draft.suggested_sensitive:
        names = ", ".join(safe(c) for c in draft.suggested_sensitive)
        written = draft.card.get("sensitive") or []
        if sensitive:
            p(f"  {'sensitive':<22} {', '.join(safe(c) for c in written) or 'none'} (columns "
              f"that look like protected attributes: {names})")
        else:
            p(f"[bold yellow]suggested sensitive columns:[/] {names} (not written: add them "
              "to 'sensitive', or rerun with --sensitive, to audit fairness across them)")
    for w in draft.warnings:
        p(f"[bold yellow]warning:[/] {safe(w)}")
    p("[bold]for you to write[/]")
    for n in draft.fill:
        p(f"  {safe(n.key):<22} {safe(n.text, 400)}")
    spec = Path(model)
    beside = (spec if spec.is_dir() else spec.parent) / "card.json"
    card_opt = "" if path.resolve() == beside.resolve() else f" --card {path}"
    p(f"next: audit run {safe(model)}{safe(card_opt)} --data YOUR_TEST_FILE --quick")


def register(app: typer.Typer) -> None:
    """Add ``audit card`` to the command line."""
    app.command("card")(card_cmd)
