"""The LightningCLI of the project: ``fit`` (pretraining, MEND training) and ``test`` (editing runs)."""

from __future__ import annotations

import sys

from lightning.pytorch.cli import LightningCLI

from lit_edit.checkpoint_loading import safe_checkpoint_options
from lit_edit.cli_help import SUBCOMMANDS, SUBCOMMANDS_OF_LIGHTNING, subcommand_parser_kwargs
from lit_edit.editors import EDITORS
from lit_edit.error_report import ConfigurationError, message_of, own_error, parser_message, run_reporting_errors
from lit_edit.loops import EditTrainer
from lit_edit.paths import resolve_config_args, set_data_root
from lit_edit.third_party_notices import silence_third_party_notices


class LitEditCLI(LightningCLI):
    """LightningCLI in subclass mode: a config names its module and datamodule by ``class_path``; the trainer is
    :class:`~lit_edit.loops.EditTrainer`, whose test loop runs editing runs (its schedule options sit under
    ``trainer:``)."""

    def __init__(self, **kwargs):
        silence_third_party_notices()
        kwargs["parser_kwargs"] = {**subcommand_parser_kwargs(EDITORS), **(kwargs.get("parser_kwargs") or {})}
        kwargs.setdefault("trainer_class", EditTrainer)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(**kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--data_root", type=str | None, default=None,
                            help="The folder that data paths in configs are read from ('data/...' means this "
                                 "folder); default: $LIT_EDIT_DATA, else the project's data/ (lit_edit/paths.py).")

    def _add_subcommands(self, parser, **kwargs) -> None:
        """Lightning's subcommands, listed in the main ``--help`` with what each does in this project."""
        super()._add_subcommands(parser, **kwargs)
        describe_subcommands(parser, {**SUBCOMMANDS, **SUBCOMMANDS_OF_LIGHTNING})

    def before_instantiate_classes(self) -> None:
        root = self.config[self.subcommand].get("data_root") if self.subcommand else self.config.get("data_root")
        if root:
            set_data_root(root)

    def _load_checkpoints_safely(self) -> None:
        """``--ckpt_path`` is read with ``weights_only=True`` (``lit_edit.checkpoint_loading``)."""
        safe_checkpoint_options(self.config_init[self.subcommand])

    before_fit = before_validate = before_test = before_predict = _load_checkpoints_safely

    def instantiate_classes(self) -> None:
        """Build the configured classes; an option a class refuses (a ``ValueError`` from its constructor) becomes a
        :class:`~lit_edit.error_report.ConfigurationError` with the class's own message, not the parser's dump of
        the whole config."""
        try:
            super().instantiate_classes()
        except ValueError as error:
            own = own_error(error)
            raise ConfigurationError(parser_message(error) if own is None else message_of(own)) from error


def describe_subcommands(parser, descriptions: dict[str, str]) -> None:
    """Replace the one-line help of the named subcommands (Lightning takes it from the Trainer's docstrings)."""
    for choice in parser._subcommands_action._choices_actions:
        choice.help = descriptions.get(choice.dest, choice.help)


def main(args=None) -> None:
    """``main.py``: a refused option or input ends with one line and exit status 2 (``lit_edit.error_report``)."""
    args = resolve_config_args(sys.argv[1:] if args is None else args)
    run_reporting_errors(lambda: LitEditCLI(args=args, parser_kwargs={"exit_on_error": False}))
