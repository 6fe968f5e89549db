"""What ``python main.py --help`` and ``python main.py test --help`` say about this project: what each subcommand
does here, and the editors with their options (``lit_edit.editors.options``: the fields of an editor's
hyperparameter dataclass, described by its ``Attributes:``, or its constructor's ``Args:``) and, for an option that
is itself a hyperparameter dataclass, its fields."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import shutil
import textwrap
import typing

import docstring_parser
from jsonargparse import DefaultHelpFormatter

DESCRIPTION = ("lit-edit: edit the factual knowledge of a causal language model and measure what the edits change. "
               "A run is set by a YAML config under configs/ (--config); any option can be overridden after it, "
               "e.g. --data.init_args.n 20. Each subcommand lists its options with --help.")

SUBCOMMANDS = {
    "fit": "Train a model: pretrain the fact-world model (configs/fit/factworld*.yaml) or train a MEND editor "
           "network (configs/fit/mend_*.yaml).",
    "test": "Run an editing job: edit a model batch after batch of requests with one editor and score the edits and "
            "the downstream tasks (configs/edit/...); or score a model on the downstream tasks without editing "
            "(configs/eval/tasks.yaml).",
}

SUBCOMMANDS_OF_LIGHTNING = {
    "validate": "One pass over the validation set of a fit config (the language-model and MEND modules have one).",
    "predict": "Not used by lit-edit: no module of the project defines a prediction step.",
}

EDITOR_OPTION = "--model.init_args.editor"


def _width() -> int:
    """The width argparse wraps help to."""
    return min(shutil.get_terminal_size().columns - 2, 118)


def _fill(text: str, indent: str, width: int, hang: str = "    ") -> str:
    """One paragraph wrapped to ``width``; its continuation lines indented by ``hang`` more."""
    return textwrap.fill(" ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent + hang)


def _yaml_value(value) -> str:
    """A default as it is written in a config."""
    if value is inspect.Parameter.empty:
        return "(required)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return str(list(value))
    if dataclasses.is_dataclass(value):   # a hyperparameter dataclass: the fields that differ from its defaults
        changed = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)
                   if f.default is not dataclasses.MISSING and getattr(value, f.name) != f.default}
        return "{" + ", ".join(f"{name}: {_yaml_value(v)}" for name, v in changed.items()) + "}"
    return str(value)


def _documented(doc: docstring_parser.Docstring) -> dict[str, str]:
    """Each documented name → its description; an entry ``a / b / c: ...`` documents a, b and c."""
    described = {}
    for param in doc.params:
        for name in param.arg_name.split("/"):
            described.setdefault(name.strip(), param.description or "")
    return described


def _summary(cls: type) -> str:
    """The first paragraph of a class docstring."""
    return inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0]


def _dataclass_of(annotation) -> type | None:
    """The hyperparameter dataclass an option takes (``ValueHyperparams | None`` → ValueHyperparams), if any."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


def editor_rows(cls: type) -> list[tuple[list[str], str]]:
    """The constructor options of an editor class as (``option=default`` items, description) rows; options that
    one docstring entry describes together (or consecutive undocumented ones) share a row. Defaults are written as in a config."""
    from lit_edit.editors.options import editor_options, option_docstrings  # lazy: `main.py --help` imports no torch

    described = {}
    for doc in reversed(option_docstrings(cls)):   # a derived dataclass's entry wins
        described |= _documented(docstring_parser.parse(doc))
    rows: list[tuple[list[str], str]] = []
    for name, param in editor_options(cls).items():
        item, description = f"{name}={_yaml_value(param.default)}", described.get(name, "")
        if rows and rows[-1][1] == description:
            rows[-1][0].append(item)
        else:
            rows.append(([item], description))
    return rows


def nested_hyperparameters(cls: type) -> dict[str, type]:
    """Option name → the hyperparameter dataclass it takes (e.g. ``values`` → ValueHyperparams)."""
    from lit_edit.editors.options import editor_options  # lazy: `main.py --help` imports no torch

    return {name: nested for name, param in editor_options(cls).items()
            if (nested := _dataclass_of(param.annotation)) is not None}


def _option_lines(rows: list[tuple[list[str], str]], indent: str, width: int) -> list[str]:
    return [_fill(", ".join(items) + (f": {text}" if text else ""), indent, width) for items, text in rows]


def editors_help(editors: dict[str, type], width: int | None = None) -> str:
    """The editors section of ``test --help``: each editor's name, class, summary and options, then the fields of
    the hyperparameter dataclasses that options take (listed once)."""
    width = width or _width()
    lines = [_fill(f"Editors (the method of an editing run: {EDITOR_OPTION} CLASS, e.g. {EDITOR_OPTION} "
                   f"lit_edit.editors.ROME; an option: {EDITOR_OPTION}.init_args.OPTION VALUE; the types of all "
                   f"options: --model.help lit_edit.modules.EditingModule):", "", width, "")]
    nested: dict[tuple[str, type], None] = {}
    for name, cls in editors.items():
        lines += ["", _fill(f"{name}: {cls.__module__.rsplit('.', 1)[0]}.{cls.__name__}. {_summary(cls)}", "  ",
                            width)]
        lines += _option_lines(editor_rows(cls), "    ", width)
        nested.update(dict.fromkeys(nested_hyperparameters(cls).items()))
    for option, hyperparameters in nested:
        fields = _documented(docstring_parser.parse(hyperparameters.__doc__ or ""))
        rows = [([f"{field.name}={_yaml_value(field.default)}"], fields.get(field.name, ""))
                for field in dataclasses.fields(hyperparameters) if field.default is not dataclasses.MISSING]
        lines += ["", _fill(f"{option} ({EDITOR_OPTION}.init_args.{option}.FIELD; an editor's row notes a default "
                            f"of its own): {_summary(hyperparameters)}", "  ", width)]
        lines += _option_lines(rows, "    ", width)
    return "\n".join(lines)


class ListingHelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's help formatter, printing the description and the epilog as written (they are wrapped
    already), so that the editor listing keeps one line per option."""


def subcommand_parser_kwargs(editors: dict[str, type]) -> dict[str, dict]:
    """LightningCLI ``parser_kwargs``: the main description and each subcommand's; ``test`` lists the editors. The
    formatter is the main parser's because jsonargparse gives it to every subcommand."""
    width = _width()
    return {"description": _fill(DESCRIPTION, "", width, ""), "formatter_class": ListingHelpFormatter,
            "fit": {"description": _fill(SUBCOMMANDS["fit"], "", width, "")},
            "test": {"description": _fill(SUBCOMMANDS["test"] + " The editors and their options are listed at the end.",
                                          "", width, ""),
                     "epilog": editors_help(editors, width)}}


def top_level_parser(prog: str | None = None):
    """The parser of ``python main.py`` without a subcommand, built without importing Lightning: the same options and
    subcommand listing as LightningCLI's main parser (a test compares the two help texts), so ``main.py --help``
    answers in a fraction of a second."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    width = _width()
    parser = ArgumentParser(prog=prog, description=_fill(DESCRIPTION, "", width, ""),
                            formatter_class=ListingHelpFormatter)
    parser.add_argument("-c", "--config", action=ActionConfigFile,
                        help="Path to a configuration file in json or yaml format.")
    subcommands = parser.add_subcommands()
    for name in ("fit", "validate", "test", "predict"):
        description = {**SUBCOMMANDS, **SUBCOMMANDS_OF_LIGHTNING}[name]
        subcommands.add_subcommand(name, ArgumentParser(description=description), help=description)
    return parser


def asks_for_top_level_help(args: list[str]) -> bool:
    """``main.py --help`` / ``-h`` alone: answered by :func:`top_level_parser`."""
    return len(args) == 1 and args[0] in ("-h", "--help")
