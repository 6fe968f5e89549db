"""An editing run over several processes: sharding the model over the ranks and checking that every rank holds the
same edited model at the end (``metrics.json`` ``processes``). How the work is shared between ranks:
``lit_edit.distributed``; the sharding itself: ``lit_edit.sharding``.
"""

from __future__ import annotations

import torch

from lit_edit.distributed import Ranks
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


def check_strategy(strategy, export_model_dir: str | None, sharded: bool) -> None:
    """Refuse Lightning's strategies that wrap the whole module (its editing code reads and writes the model's
    weights directly), and a Hugging Face export of a sharded model (no rank holds the whole model)."""
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy

    if isinstance(strategy, (FSDPStrategy, DeepSpeedStrategy)):
        raise ValueError(f"trainer.strategy: {type(strategy).__name__} wraps the whole module, whose "
                         "editing code reads and writes the model's weights directly; to shard a large model use "
                         "lit_edit.strategies.ShardedEditingStrategy (configs/edit/strategies/fsdp.yaml)")
    if sharded and export_model_dir:
        raise ValueError(f"model.export_model_dir={export_model_dir} with a sharded model: no rank "
                         f"holds the whole model; keep the run's {EDITS_FILE} and apply it to the base "
                         "(python -m lit_edit.tools apply_edits)")


def compare_ranks(effective: dict[str, torch.Tensor], editor_state: dict, ranks: Ranks, sharding) -> dict:
    """Every rank made every edit: a digest of each rank's effective edited weights and editor state, gathered,
    shows that they all hold the same model (``metrics.json`` ``processes``)."""
    digest = tensor_digest({**{f"weight:{k}": v for k, v in effective.items()},
                            **{f"editor:{k}": v for k, v in _tensors(editor_state).items()}})
    digests = ranks.gather(digest)
    return {"world_size": ranks.world_size, "edited_weights_sha256": digests, "identical_weights": len(set(digests)) == 1,
            "sharding": sharding.to_dict() if sharding is not None else None}


def check_identical(processes: dict, method: str, folder) -> None:
    """Refuse the numbers of a run whose processes ended with different edited weights (:func:`compare_ranks`)."""
    if not processes["identical_weights"]:
        raise RuntimeError(f"the processes of this run hold different edited weights (sha256 per rank: "
                           f"{processes['edited_weights_sha256']}): {method} is not deterministic across processes, "
                           f"so the numbers in {folder} mix different models; run it in one process")
