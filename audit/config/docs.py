"""Reference documentation of ``audit.toml``, generated from the registered checks.

Every check declares its settings as a ``Params`` dataclass; this module reads those classes
(names, types, defaults, ``--quick`` overrides and a one-line help per field) and writes either
a complete ``audit.toml`` holding every default (``audit config``) or a Markdown reference
(``audit config --markdown``), so the documentation cannot drift from the code.

A field's help text is, in this order: ``field(metadata={"help": ...})``, a string literal
right after the field (an attribute docstring), or a ``# comment`` at the end of its line.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass
from typing import Any

from audit.checks import Check, all_checks
from audit.config.write import toml_value
from audit.result import SEVERITIES

AUDIT_KEYS: list[tuple[str, str, Any, str]] = [
    ("checks", "list[str]", None,
     "Checks to run, in order (default: every check that applies to the model)."),
    ("fail_on", "str", "high",
     "Exit 1 when a finding is at or above this severity: info, low, medium, high, critical."),
    ("seed", "int", 0, "Seed of the whole audit; the same seed gives the same result."),
    ("quick", "bool", False, "Smaller budgets for a fast look (each check's quick overrides)."),
    ("batch_size", "int", 256, "Batch size of model evaluations (bounded so one batch's "
     "activations fit 1 GiB on the CPU, a quarter of the free memory on a GPU)."),
    ("scale_budgets", "bool", True, "Shrink each check's budgets for models costlier than "
     "the defaults are sized for (100 MFLOP per sample on the CPU, 5 GFLOP on a GPU), down to "
     "each budget's floor; every shrunk check says what changed."),
    ("samples", "int | str", None, "Set every check's sample cap (robustness max_samples and "
     "suite_samples, certified max_samples, saliency samples, surrogate max_rows, slices "
     "reliance_rows, drift c2st_max_rows and mmd_max_samples) to this, or \"all\" for the "
     "whole dataset; keys set in [checks.NAME] win. Each section lists its samples."),
]
"""The ``[audit]`` table: (key, type, default, help)."""


@dataclass
class ParamDoc:
    """One setting of one check."""

    name: str
    type: str
    default: Any
    quick: Any
    has_quick: bool
    help: str


@dataclass
class CheckDoc:
    """One check with its settings."""

    name: str
    title: str
    description: str
    params: list[ParamDoc]


def type_name(hint: Any) -> str:
    """A short readable name of a type hint (``float``, ``list[float]``, ``str | None``)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join("None" if a is type(None) else type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_name(a) for a in args)}]" if args else name
    if hint is Any:
        return "any"
    return getattr(hint, "__name__", str(hint))


def _source_help(cls: type) -> dict[str, str]:
    """Help per field from attribute docstrings and trailing comments in ``cls``'s source."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    lines: dict[int, str] = {}
    for i, node in enumerate(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            lines[node.end_lineno or node.lineno] = node.target.id
            nxt = body[i + 1] if i + 1 < len(body) else None
            if (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                out[node.target.id] = " ".join(nxt.value.value.split())
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT and tok.start[0] in lines:
                name = lines[tok.start[0]]
                out.setdefault(name, tok.string.lstrip("#").strip())
    except (tokenize.TokenError, SyntaxError):
        pass
    return out


_SEVERITY_SUFFIXES = tuple(s.value for s in SEVERITIES)


def _guess_help(name: str) -> str:
    """Help for an undocumented field named like ``<measure>_<severity>``: a threshold."""
    head, _, tail = name.rpartition("_")
    if head and tail in _SEVERITY_SUFFIXES:
        return f"Threshold on {head.replace('_', ' ')} for a {tail}-severity finding."
    return ""


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def check_docs() -> list[CheckDoc]:
    """Every registered check with its documented settings, in report order."""
    return [_check_doc(cls) for cls in all_checks().values()]


def _check_doc(cls: type[Check]) -> CheckDoc:
    params_cls = cls.Params
    hints = typing.get_type_hints(params_cls)
    helps = _source_help(params_cls)
    params = []
    for f in dataclasses.fields(params_cls):
        help_text = (str(f.metadata.get("help", "")) or helps.get(f.name, "")
                     or _guess_help(f.name))
        params.append(ParamDoc(name=f.name, type=type_name(hints.get(f.name, Any)),
                               default=_default(f), quick=cls.quick.get(f.name),
                               has_quick=f.name in cls.quick, help=help_text))
    description = cls.description or (inspect.getdoc(cls) or "").split("\n")[0]
    return CheckDoc(name=cls.name, title=cls.title, description=description, params=params)


def defaults_toml(docs: list[CheckDoc] | None = None) -> str:
    """A complete ``audit.toml`` with every key at its default and its help as a comment.

    It is valid configuration: loading it changes nothing. Keys whose default is ``None``
    (no TOML form) are commented out.
    """
    docs = check_docs() if docs is None else docs
    out = ["# audit.toml: every setting at its default (generated by `audit config`).",
           "# Delete what you do not change; unknown keys are errors that name the key.", "",
           "[audit]"]
    for key, typ, default, help_text in AUDIT_KEYS:
        out.append(f"# {help_text} ({typ})")
        out.append(f"# {key} = {toml_value([d.name for d in docs])}" if default is None
                   else f"{key} = {toml_value(default)}")
    for d in docs:
        out += ["", f"# {d.title}: {d.description}".rstrip(": "), f"[checks.{d.name}]"]
        if not d.params:
            out.append("# (no settings)")
        for p in d.params:
            note = p.help or ""
            if p.has_quick:
                note += f"{'; ' if note else ''}--quick uses {toml_value(p.quick) or 'none'}"
            out.append(f"# {note} ({p.type})" if note else f"# ({p.type})")
            value = toml_value(p.default) if p.default is not None else ""
            out.append(f"# {p.name} =  (default: none)" if p.default is None
                       else f"{p.name} = {value}")
    return "\n".join(out) + "\n"


def _md(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def defaults_markdown(docs: list[CheckDoc] | None = None) -> str:
    """The Markdown reference of ``audit.toml`` (the README's configuration section)."""
    docs = check_docs() if docs is None else docs
    out = ["### `[audit]`", "", "| Key | Type | Default | Meaning |", "|---|---|---|---|"]
    for key, typ, default, help_text in AUDIT_KEYS:
        unset = "every check that applies" if key == "checks" else "each check's own"
        shown = unset if default is None else f"`{toml_value(default)}`"
        out.append(f"| `{key}` | {_md(typ)} | {shown} | {_md(help_text)} |")
    for d in docs:
        out += ["", f"### `[checks.{d.name}]`: {_md(d.title)}", ""]
        if d.description:
            out += [_md(d.description), ""]
        if not d.params:
            out.append("No settings.")
            continue
        out += ["| Key | Type | Default | `--quick` | Meaning |", "|---|---|---|---|---|"]
        for p in d.params:
            default = "none" if p.default is None else f"`{_md(toml_value(p.default))}`"
            quick = (f"`{_md(toml_value(p.quick))}`" if p.has_quick and p.quick is not None
                     else ("none" if p.has_quick else ""))
            out.append(f"| `{p.name}` | {_md(p.type)} | {default} | {quick} | "
                       f"{_md(p.help)} |")
    return "\n".join(out) + "\n"


def policy_markdown() -> str:
    """The severity policy as Markdown: what each severity means, the categories and their
    bounds, and every finding kind the registered checks declare (``audit config --policy``)."""
    import audit.history_kinds  # noqa: F401 -- the kinds of audit history
    from audit.crosscheck import all_cross_checks
    from audit.policy import MEANING, Category, kinds

    all_checks()  # importing the checks and cross-checks declares their kinds
    all_cross_checks()
    lines = ["| Severity | What it means for the model |", "|---|---|"]
    lines += [f"| {s.value} | {MEANING[s]} |" for s in reversed(SEVERITIES)]
    lines += ["", "| Category | Severities | About |", "|---|---|---|"]
    for c in Category:
        lo, hi = c.severities
        lines.append(f"| {c.value} | {lo.value} to {hi.value} | {c.meaning} |")
    lines += ["", "| Finding id | Category | Meaning |", "|---|---|---|"]
    lines += [f"| `{k.pattern}` | {k.category.value} | {k.meaning} |" for k in kinds()]
    return "\n".join(lines) + "\n"
