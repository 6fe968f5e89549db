"""The LightningCLI of the project: ``fit`` (pretraining, MEND training) and ``test`` (editing runs)."""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from lit_edit.checkpoint_loading import safe_checkpoint_options
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

    def _load_checkpoints_safely(self) -> None:
        """``--ckpt_path`` is read with ``weights_only=True`` (``lit_edit.checkpoint_loading``)."""
        safe_checkpoint_options(self.config_init[self.subcommand])

    before_fit = before_validate = before_test = before_predict = _load_checkpoints_safely


def main(args=None) -> None:
    LitEditCLI(args=args)
