"""The several-processes half of the editing module: sharding the model over the ranks and checking that every rank
holds the same edited model at the end.

:class:`SeveralProcesses` is mixed into :class:`~lit_edit.modules.editing.EditingModule`. Lightning calls
:meth:`~SeveralProcesses.configure_model` before the run (under ``lit_edit.strategies.ShardedEditingStrategy`` it
shards the model, ``lit_edit.sharding``); ``finish_run`` records :meth:`~SeveralProcesses._compare_ranks` in
``metrics.json`` ``processes``. How the work is shared between ranks: ``lit_edit.distributed``.
"""

from __future__ import annotations

import torch

from lit_edit.export import EDITS_FILE
from lit_edit.run_state import tensor_digest


def _tensors(state, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a nested state (dicts and lists), by dotted path."""
    if isinstance(state, torch.Tensor):
        return {prefix: state}
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, (list, tuple)) else ()
    out = {}
    for key, value in items:
        out |= _tensors(value, f"{prefix}.{key}" if prefix else str(key))
    return out


class SeveralProcesses:
    """Methods of the editing module for runs over several processes (they use its model, editor and ranks)."""

    def configure_model(self) -> None:
        """Under Lightning's ``ModelParallelStrategy``: shard the model with FSDP over the ranks, the parameters
        the editor changes kept whole (``lit_edit.sharding``)."""
        from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy

        if isinstance(self.trainer.strategy, (FSDPStrategy, DeepSpeedStrategy)):
            raise ValueError(f"trainer.strategy: {type(self.trainer.strategy).__name__} wraps the whole module, whose "
                             "editing code reads and writes the model's weights directly; to shard a large model use "
                             "lit_edit.strategies.ShardedEditingStrategy (configs/edit/strategies/fsdp.yaml)")
        if self._device_mesh is None or self.sharding is not None:
            return
        from lit_edit.sharding import shard_for_editing

        if self.hparams.export_model_dir:
            raise ValueError(f"model.export_model_dir={self.hparams.export_model_dir} with a sharded model: no rank "
                             f"holds the whole model; keep the run's {EDITS_FILE} and apply it to the base "
                             "(python -m lit_edit.tools apply_edits)")
        self.sharding = shard_for_editing(self.model, self.arch, self.editor.parameter_names(self.model, self.arch),
                                          self._device_mesh)

    def _compare_ranks(self) -> dict:
        """Every rank made every edit: a digest of each rank's effective edited weights and editor state, gathered,
        shows that they all hold the same model (``metrics.json`` ``processes``)."""
        digest = tensor_digest({**{f"weight:{k}": v for k, v in self._effective().items()},
                                **{f"editor:{k}": v for k, v in _tensors(self.editor.state_dict()).items()}})
        digests = self.ranks.gather(digest)
        return {"world_size": self.ranks.world_size, "edited_weights_sha256": digests,
                "identical_weights": len(set(digests)) == 1,
                "sharding": self.sharding.to_dict() if self.sharding is not None else None}
