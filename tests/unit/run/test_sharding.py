"""A sharded model (FSDP over two gloo processes, ``lit_edit.sharding``) edits and scores like the whole model.

The default test spawns two processes that shard the fact-world model, collect the statistics (a pass that a whole
model cuts after the deepest edited layer), make an edit step and score it with generation (KV cache, early stop):
every rank must run the same passes, and the edited weights and scores must equal one unsharded process's — for
MEMIT, COMEBA-HK (hook layers), FT, KN and MEND. The ``slow`` test runs the CLI with
``lit_edit.strategies.ShardedEditingStrategy`` (``configs/edit/strategies/fsdp.yaml``).
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.multiprocessing as mp

from lit_edit.data import EditDataModule
from lit_edit.distributed import SINGLE, Ranks
from lit_edit.editing.values import ValueHyperparams
from lit_edit.editors import COMEBA, FT, KN, MEMIT, MEND
from lit_edit.editors.base import EditContext
from lit_edit.metrics import pre_edit_reference, score_requests
from lit_edit.models.architectures import architecture_of
from lit_edit.models.loading import load_model, load_tokenizer
from lit_edit.sharding import data_parallel_mesh, full_value, is_sharded, shard_for_editing
from lit_edit.stats import StatisticsConfig, weights_sha256
from lit_edit.tasks.suite import DownstreamConfig, DownstreamSuite
from tests.conftest import FACTWORLD, ROOT

MODEL = str(ROOT / "checkpoints" / "factworld-gpt2")
FAMILIES = ("token", "generation")


def _editor(kind: str):
    values = ValueHyperparams(steps=25, lr=0.5, kl_factor=0.0625, weight_decay=0.5, clamp_norm_factor=4.0)
    # λ 100: with C from only 3,000 tokens, λ 300 flips 1 of the 3 requests on the shipped model (3 of 3 here).
    # Templates of 3 sampled tokens (``template_length_rule: new``), the setting those counts were measured with.
    templates = {"template_tokens": 3, "template_length_rule": "new"}
    return {"memit": lambda: MEMIT(layers=[0, 1], preservation_weight=100, values=values, **templates),
            "comeba": lambda: COMEBA(layers=[0, 1], preservation_weight=300, values=values, **templates),
            "ft": lambda: FT(layers=[1], lr=0.01, steps=5, norm_constraint=0.05),
            "kn": lambda: KN(layers=[2, 3], steps=4, batch_size=64),
            "mend": lambda: MEND(checkpoint=str(ROOT / "checkpoints" / "mend-factworld-gpt2"), layers=[1, 2, 3])}[kind]()


KINDS = ("memit", "comeba", "ft", "kn", "mend")


def _edit_and_score(kind: str, stats_dir: str, ranks: Ranks, shard_mesh=None) -> dict:
    torch.manual_seed(0)
    model, tokenizer = load_model(MODEL), load_tokenizer(MODEL)
    model.requires_grad_(False)
    arch = architecture_of(model)
    editor = _editor(kind)
    sha_before = weights_sha256(model) if shard_mesh is None else None
    sharding = None
    if shard_mesh is not None:
        sharding = shard_for_editing(model, arch, editor.parameter_names(model, arch), shard_mesh)
        sha_before = weights_sha256(model)   # gathers every parameter: must equal the whole model's digest
    data = EditDataModule(root=str(FACTWORLD), n=6, batch_size=3)
    data.setup("test")
    requests = data.requests
    editor.setup(model, tokenizer, arch, EditContext("factworld-gpt2", StatisticsConfig(
        corpus=str(FACTWORLD / "corpus" / "train.jsonl"), cache_dir=stats_dir, max_tokens=3000, max_length=64),
        progress=False, ranks=ranks))
    # the statistics pass (cut after the deepest edited layer when the model is whole) left no block gathered
    after_setup = {name: type(p).__name__ for name, p in model.named_parameters()}
    assert weights_sha256(model) == sha_before
    reference = pre_edit_reference(model, tokenizer, requests, FAMILIES, max_new_tokens=6, batch_size=4)
    editor.edit(model, tokenizer, arch, requests[:3])
    scores = score_requests(model, tokenizer, requests, FAMILIES, reference, max_new_tokens=6, batch_size=4)
    kinds = {name: type(p).__name__ for name, p in model.named_parameters()}
    return {"after_setup": after_setup,
            "weights": {k: v.clone() for k, v in editor.effective_weights(model, arch).items()}, "scores": scores,
            "sha_before": sha_before, "kinds": kinds, "sharding": sharding.to_dict() if sharding else None,
            "embedding": full_value(model.get_parameter(f"{arch.embedding}.weight").detach()).clone()}


def _worker(rank: int, world: int, init_file: str, stats_dir: str, out: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        mesh = init_device_mesh("cpu", (world,))
        ranks = Ranks(rank, world, shares_work=False)
        results = {kind: _edit_and_score(kind, stats_dir, ranks, mesh) for kind in KINDS}
        # the suite of a sharded run (the ranks do not share the work): every record once, not gathered twice
        model = load_model(MODEL)
        shard_for_editing(model, architecture_of(model), [], mesh)
        suite = DownstreamSuite(DownstreamConfig(root=str(FACTWORLD / "tasks"), tasks=["sentiment"], subset=5), ranks)
        results["downstream_indices"] = suite.evaluate(model, load_tokenizer(MODEL), after_edit=False)["sentiment"].indices
        torch.save(results, f"{out}.{rank}")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_sharded_model_edits_and_scores_like_the_whole_model(tmp_path):
    out = str(tmp_path / "result")
    mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "stats2"), out), nprocs=2,
                       start_method="spawn")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # as each rank: the same kernels, the same rounding
    try:
        wholes = {kind: _edit_and_score(kind, str(tmp_path / "stats1"), SINGLE) for kind in KINDS}
    finally:
        torch.set_num_threads(threads)   # the tests after this one run with the session's thread count
    for rank in range(2):
        assert len(torch.load(f"{out}.{rank}", weights_only=False)["downstream_indices"]) == 5
    for rank, kind in itertools.product(range(2), KINDS):
        sharded, whole = torch.load(f"{out}.{rank}", weights_only=False)[kind], wholes[kind]
        info = sharded["sharding"]
        assert info["ranks"] == 2 and info["blocks"] == 4
        kept = set(whole["weights"])
        assert set(info["kept_whole"]) == kept
        in_blocks = {name for name in sharded["kinds"] if name.startswith("transformer.h.")}
        assert all(sharded["kinds"][name] == sharded["after_setup"][name] == "DTensor" for name in in_blocks - kept)
        assert all(kind == "Parameter" for name, kind in sharded["kinds"].items() if name not in in_blocks - kept)
        split = sum(p.numel() * 4 for name, p in load_model(MODEL).named_parameters() if name in in_blocks - kept)
        # the blocks' other weights split in two (rows rounded up per rank), the rest whole on each rank
        assert split > 0.25 * info["full_parameter_bytes"]
        assert abs(info["local_parameter_bytes"] - (info["full_parameter_bytes"] - split / 2)) < 0.01 * split
        assert sharded["sha_before"] == whole["sha_before"]
        assert torch.equal(sharded["embedding"], whole["embedding"])
        assert sharded["weights"].keys() == whole["weights"].keys()
        for name, weight in whole["weights"].items():
            torch.testing.assert_close(sharded["weights"][name], weight, rtol=0, atol=1e-6)
        assert any(not torch.equal(w, load_model(MODEL).get_parameter(n)) for n, w in whole["weights"].items()), kind
        assert sharded["scores"] == whole["scores"], kind
    edited = [s["token/reliability"] for s in wholes["memit"]["scores"][:3]]
    assert sum(edited) >= 2, edited   # the edited requests are learnt


class _FakeMesh:
    """The shape of a 2-D device mesh with a tensor-parallel dimension (one process cannot build a real one)."""

    def __init__(self, sizes: dict[str, int]):
        self.sizes, self.mesh_dim_names, self.ndim = sizes, tuple(sizes), len(sizes)

    def __getitem__(self, name):
        return _FakeMesh({name: self.sizes[name]})

    def size(self):
        return self.sizes[self.mesh_dim_names[0]] if self.ndim == 1 else None


def test_sharding_refuses_what_it_cannot_do(tmp_path):
    """Tensor parallelism in the strategy's mesh, and a name that is not a parameter, give errors that say so."""
    from torch.distributed.device_mesh import init_device_mesh

    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1, 1), mesh_dim_names=("data_parallel", "tensor_parallel"))
        assert data_parallel_mesh(mesh).mesh_dim_names == ("data_parallel",)
        with pytest.raises(ValueError, match="tensor parallelism .tensor_parallel_size=2. is not supported"):
            data_parallel_mesh(_FakeMesh({"data_parallel": 1, "tensor_parallel": 2}))
        odd = init_device_mesh("cpu", (1, 1), mesh_dim_names=("a", "b"))
        with pytest.raises(ValueError, match=r"expected a 1-D mesh or Lightning's \(data_parallel, tensor_parallel\)"):
            data_parallel_mesh(odd)
        model = load_model(MODEL)
        with pytest.raises(ValueError, match="cannot keep 'transformer.h.9.mlp.c_proj.weight' whole"):
            shard_for_editing(model, architecture_of(model), ["transformer.h.9.mlp.c_proj.weight"], mesh)
        assert not is_sharded(model)
        shard_for_editing(model, architecture_of(model), [], init_device_mesh("cpu", (1,)))
        assert is_sharded(model)
        with pytest.raises(ValueError, match="already sharded"):
            shard_for_editing(model, architecture_of(model), [], init_device_mesh("cpu", (1,)))
    finally:
        torch.distributed.destroy_process_group()
