"""A two-process DDP MEND training shares its running moments across ranks (the slow tier of
tests/cli/test_mend_fit.py)."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from lit_edit.data.mend import MendDataModule
from tests.cli.test_mend_fit import _edit_rows, _fit


@pytest.mark.slow
def test_two_process_ddp_training_shares_its_running_moments_across_ranks(tmp_path):
    """20 training edits, 5 per rank per step, one epoch: each rank sees 10, the moments must have seen all 20."""
    _fit(tmp_path, "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_epochs", "1",
         "--data.init_args.train_stop", "320", "--data.init_args.batch_size", "5")
    state = load_file(str(tmp_path / "mend" / "mend.safetensors"))
    data = MendDataModule(train_stop=320)
    data.setup("fit")
    rows = _edit_rows(data.train_requests)
    fc = sum(n for name, n in rows.items() if name.endswith("c_fc"))
    proj = sum(n for name, n in rows.items() if name.endswith("c_proj"))
    assert int(state["transforms.192x768.input_moments.count"]) == fc
    assert int(state["transforms.768x192.output_grad_moments.count"]) == proj
