"""What a user sees when lit-edit refuses an input: one line naming the thing at fault and the fix, exit status 2,
no traceback (``LIT_EDIT_DEBUG=1`` shows it). ``main.py`` and ``python -m lit_edit.tools`` run through
:func:`run_reporting_errors`.

Known errors are :class:`lit_edit.errors.UserError`, the project's error types for bad data, options, paths, models
and run states (:func:`known_errors`, mapped here rather than rewritten), a missing file, Lightning's configuration
errors, and an option the configuration parser refuses (named by its full key). Any other exception is a fault of
lit-edit and keeps its traceback.
"""

from __future__ import annotations

import os
import re
import sys
from argparse import ArgumentError
from collections.abc import Callable, Iterator
from typing import TypeVar

from lit_edit.errors import UserError

DEBUG_VARIABLE = "LIT_EDIT_DEBUG"
EXIT_STATUS = 2
T = TypeVar("T")


class ConfigurationError(UserError, ValueError):
    """A class named in a configuration refused its options while being built (the message is its own)."""


def known_errors() -> tuple[type[BaseException], ...]:
    """The exception types whose message is meant for the user (each names the file, record, option or path)."""
    # imported when an error is reported, for start-up speed: a command loads only the layers it runs
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from lit_edit.editing.mend_checkpoint import MendCheckpointError
    from lit_edit.editing.requests import EditRequestError
    from lit_edit.export import EditsFileError
    from lit_edit.models.architectures import UnsupportedArchitectureError
    from lit_edit.models.loading import ModelLoadError
    from lit_edit.run_state import ResumeError
    from lit_edit.stats import MissingStatisticsError
    from lit_edit.tasks.formats import TaskFormatError

    return (UserError, EditRequestError, TaskFormatError, ModelLoadError, UnsupportedArchitectureError, ResumeError,
            MissingStatisticsError, MendCheckpointError, EditsFileError, FileNotFoundError, MisconfigurationException)


def causes(error: BaseException, implicit: bool = True) -> Iterator[BaseException]:
    """``error`` and the exceptions it was raised from (``raise ... from``), outermost first; with ``implicit`` also
    those it was raised while handling."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or (error.__context__ if implicit else None)


def raised_by_parser(error: BaseException) -> bool:
    """Whether ``error`` was raised inside jsonargparse (a wrapper around the error of a class it was building)."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and f"{os.sep}jsonargparse{os.sep}" in frame.tb_frame.f_code.co_filename


def own_error(error: BaseException) -> BaseException | None:
    """The first exception in the chain that jsonargparse did not raise (the error of the class it was building);
    None when jsonargparse raised them all."""
    return next((link for link in causes(error) if not raised_by_parser(link)), None)


def message_of(error: BaseException) -> str:
    """The exception's message (a KeyError's without the quotes ``str`` adds)."""
    if len(error.args) == 1 and isinstance(error.args[0], str):
        return error.args[0]
    return str(error) or type(error).__name__


def parser_message(error: BaseException) -> str:
    """A refused option as one line: its full key (``model.init_args.editor.init_args``) and the deepest reason;
    an unknown editor class also lists the editors."""
    keys, reason = [], ""
    for link in causes(error):
        text = str(link)
        key = re.match(r'Parser key "([^"]+)":', text)
        if key and (not keys or keys[-1] != key.group(1)):
            keys.append(key.group(1))
        if re.match(r"Problem with given class_path '[^']+':", text) and keys and keys[-1] != "init_args":
            keys.append("init_args")
        reason = text.strip().splitlines()[0] if text.strip() else reason
    if keys and keys[-1] == "init_args" and re.search(r"has no attribute|No module named|[Ii]mport", reason):
        keys[-1] = "class_path"
    option = ".".join(keys)
    unknown = re.match(r"Option '([^']+)' is not accepted", reason)
    if unknown:
        return f"option {option}.{unknown.group(1)} is not accepted (a typo? --help lists the options)"
    if re.search(r"(^|\.)editor(\.class_path)?$", option) and re.search(r"attribute|module|import", reason, re.I):
        from lit_edit.editors import EDITORS  # for start-up speed: only when an editor option is at fault

        reason += "; the editors are " + ", ".join(f"lit_edit.editors.{cls.__name__}" for cls in EDITORS.values())
    return f"option {option}: {reason}" if option else reason


def describe(error: BaseException) -> str | None:
    """The one-line report of a known error (the error, or one it was raised from); None for any other."""
    known = known_errors()
    for link in causes(error, implicit=False):
        if isinstance(link, known):
            return message_of(link)
    if isinstance(error, ArgumentError) or type(error).__name__ == "ArgumentError":
        return parser_message(error)
    return None


def run_reporting_errors(command: Callable[[], T]) -> T:
    """Run ``command``; a known error ends the process with its message on stderr and exit status 2 (with
    ``LIT_EDIT_DEBUG=1``, the exception and its traceback as usual)."""
    try:
        return command()
    except Exception as error:
        if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
            raise
        message = describe(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_STATUS) from None
