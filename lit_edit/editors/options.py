"""The options an editor class takes, as a config's ``editor.init_args`` names them: the fields of its
hyperparameter dataclass (``hyperparams_class``; the constructor takes them as ``**hyperparams``, which
jsonargparse resolves to the dataclass), or else its constructor's parameters (RECT, MEND)."""

from __future__ import annotations

import dataclasses
import inspect
import typing


def editor_options(cls: type) -> dict[str, inspect.Parameter]:
    """Option name → its parameter (default and type), in the order the constructor takes them."""
    hyperparams = getattr(cls, "hyperparams_class", None)
    if hyperparams is None:
        hints = typing.get_type_hints(cls.__init__)
        return {name: param.replace(annotation=hints.get(name, param.annotation))
                for name, param in inspect.signature(cls.__init__).parameters.items() if name != "self"}
    hints = typing.get_type_hints(hyperparams)
    fields = {field.name: field for field in dataclasses.fields(hyperparams)}
    options = {}
    for name in inspect.signature(hyperparams).parameters:   # dataclass order, keyword-only fields last
        field = fields[name]
        default = field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
        options[name] = inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                          annotation=hints[name])
    return options


def option_docstrings(cls: type) -> list[str]:
    """The docstrings that document the options: the hyperparameter dataclass's and those of the dataclasses it
    extends (``Attributes:``, most derived first), or the editor class's (``Args:``)."""
    hyperparams = getattr(cls, "hyperparams_class", None)
    if hyperparams is None:
        return [cls.__doc__ or ""]
    return [base.__doc__ or "" for base in hyperparams.__mro__ if dataclasses.is_dataclass(base)]
