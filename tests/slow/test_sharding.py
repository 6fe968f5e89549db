"""A sharded two-process editing run equals one process (the slow tier of tests/unit/run/test_sharding.py)."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.slow
def test_sharded_two_process_editing_run_equals_one_process(tmp_path):
    """The CLI with ``configs/edit/strategies/fsdp.yaml`` on two CPU processes: the same 20 MEMIT edits, scores,
    monitors, downstream scores (12 records per task, each counted once) and edited weights as one unsharded
    process; its run state resumes on the sharded model."""
    from tests.unit.run.test_distributed import edit_cli

    downstream = ("--config", "configs/edit/downstream/factworld.yaml", "--model.init_args.downstream.subset", "12",
                  "--model.init_args.downstream.bootstrap_resamples", "50")   # every rank scores every record
    one, one_tensors = edit_cli(tmp_path, 1, *downstream)
    sharded = ("--config", "configs/edit/strategies/fsdp.yaml", "--trainer.accelerator", "cpu",
               "--trainer.checkpoint_every_n_batches", "2")
    two, two_tensors = edit_cli(tmp_path, 2, *downstream, *sharded, name="fsdp", strategy=None)
    sharding = two["processes"]["sharding"]
    assert sharding["ranks"] == 2 and len(sharding["kept_whole"]) == 2
    assert sharding["local_parameter_bytes"] < sharding["full_parameter_bytes"]
    assert two["processes"]["identical_weights"] and one["processes"]["sharding"] is None
    assert one["n_edits"] == two["n_edits"] == 20
    for key in ("pre", "immediate", "final", "periodic", "retention", "monitors", "downstream"):
        assert one[key] == two[key], key
    assert all(task["post"] is not None for task in two["downstream"].values())
    assert two["downstream_setup"]["examples"] == {task: 12 for task in two["downstream"]}
    assert one_tensors["edits"].keys() == two_tensors["edits"].keys()
    for name, tensor in one_tensors["edits"].items():
        assert torch.equal(tensor, two_tensors["edits"][name]), name
    # the finished run's state, resumed on the sharded model: the final evaluation again, the same numbers
    again, _ = edit_cli(tmp_path, 2, *downstream, *sharded, "--trainer.resume_from",
                        str(tmp_path / "edit2fsdp" / "run"), name="fsdp", strategy=None)
    for key in ("pre", "immediate", "final", "monitors", "downstream", "processes"):
        assert again[key] == two[key], key
