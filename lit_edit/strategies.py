"""The Lightning strategy of a sharded editing run (``configs/edit/strategies/fsdp.yaml``; ``lit_edit.sharding``)."""

from __future__ import annotations

from lightning.pytorch.strategies import ModelParallelStrategy


class ShardedEditingStrategy(ModelParallelStrategy):
    """Lightning's ``ModelParallelStrategy`` (FSDP2) set up for editing: the model is sharded over every process
    (the data-parallel size is the number of processes, no tensor parallelism); ``EditingModule.configure_model``
    calls ``lit_edit.sharding.shard_for_editing``.

    Args:
        process_group_backend: ``nccl`` on GPUs, ``gloo`` on CPU (default: chosen from the device).
    """

    def __init__(self, process_group_backend: str | None = None):
        super().__init__(data_parallel_size="auto", tensor_parallel_size=1,
                         process_group_backend=process_group_backend)

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes   # "auto" would mean the number of nodes
        super().setup_environment()
