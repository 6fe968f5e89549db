"""The LightningCLI of the project: ``fit`` (pretraining, MEND training) and ``test`` (editing runs)."""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from lit_edit.error_report import ConfigurationError, message_of, own_error, parser_message, run_reporting_errors
from lit_edit.loops import EditTrainer


class LitEditCLI(LightningCLI):
    """LightningCLI in subclass mode: a config names its module and datamodule by ``class_path``; the trainer is
    :class:`~lit_edit.loops.EditTrainer`, whose test loop runs editing runs (its schedule options sit under
    ``trainer:``)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trainer_class", EditTrainer)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(**kwargs)

    def instantiate_classes(self) -> None:
        """Build the configured classes; an option a class refuses (a ``ValueError`` from its constructor) becomes a
        :class:`~lit_edit.error_report.ConfigurationError` with the class's own message, not the parser's dump of
        the whole config."""
        try:
            super().instantiate_classes()
        except ValueError as error:
            own = own_error(error)
            raise ConfigurationError(parser_message(error) if own is None else message_of(own)) from error


def main(args=None) -> None:
    """``main.py``: a refused option or input ends with one line and exit status 2 (``lit_edit.error_report``)."""
    run_reporting_errors(lambda: LitEditCLI(args=args, parser_kwargs={"exit_on_error": False}))
