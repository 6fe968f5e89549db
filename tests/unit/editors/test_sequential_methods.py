"""D4S, COMEBA (with and without hook layers) and AlphaEdit against their closed forms on a tiny float64 model."""

import pytest
import torch

from lit_edit.editing.accumulated import AccumulatedKeys
from lit_edit.editing.alphaedit import AlphaEditHyperparams, apply_alphaedit, null_space_basis
from lit_edit.editing.comeba import ComebaHyperparams, apply_comeba
from lit_edit.editing.d4s import D4sHyperparams, D4sLayerState, apply_d4s
from lit_edit.editing.hook_layers import HookBank
from lit_edit.editing.memit import MemitHyperparams, apply_memit
from lit_edit.editing.values import ValueHyperparams, ValueTarget
from lit_edit.models import architecture_of, load_model_and_tokenizer
from tests.conftest import make_tiny_model
from tests.direct import LIVE_VALUES, clamp_binds, keys_and_outputs, memit_replica

TARGETS = [ValueTarget("{} was born in", "Alda Venkor", "Port Ivory"),
           ValueTarget("The pet of {} is a", "Bram Tosk", "parrot"),
           ValueTarget("{} works for", "Ziva Lorn", "Quillon Systems"),
           ValueTarget("{} plays the", "Omar Teel", "violin")]
GROUPS = (("{}",), ("The weather was mild. {}", "Nobody expected it. {}"))
VALUES = LIVE_VALUES
LAMBDA = 3.0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = make_tiny_model("gpt2", tmp_path_factory.mktemp("seq"), seed=5)
    model, tokenizer = load_model_and_tokenizer(str(folder))
    arch = architecture_of(model)
    m = arch.inner_size(model)
    g = torch.Generator().manual_seed(0)
    base = torch.randn(m, 4 * m, generator=g, dtype=torch.float64)
    moments = {layer: base @ base.T / (4 * m) for layer in (0, 1, 2)}
    return folder, moments


def _fresh(folder):
    model, tokenizer = load_model_and_tokenizer(str(folder))
    model = model.double()
    return model, tokenizer, architecture_of(model)


def _math(model, arch, layer):
    return arch.to_math(arch.edit_weight(model, layer)).detach().clone()


def test_d4s_on_one_layer_after_n_edits_equals_batch_memit_over_them(tiny):
    folder, moments = tiny
    model, tokenizer, arch = _fresh(folder)
    hp = D4sHyperparams(layers=(1,), preservation_weight=LAMBDA, values=VALUES)
    w0 = {1: arch.edit_weight(model, 1).detach().clone()}
    states = {1: D4sLayerState(moments[1], _math(model, arch, 1).shape[0], hp, "layer 1")}
    for target in TARGETS:                                  # instance-sequential, batch size 1
        apply_d4s(model, tokenizer, arch, [target], hp, GROUPS, w0, states)
    batch, tok, _ = _fresh(folder)
    memit = MemitHyperparams(layers=(1,), preservation_weight=LAMBDA, values=VALUES)
    _, values = apply_memit(batch, tok, arch, TARGETS, memit, GROUPS, moments)
    assert clamp_binds(values)            # the per-request terms are live: a coupling through them would show
    torch.testing.assert_close(_math(model, arch, 1), _math(batch, arch, 1), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("residual", ["recompute", "reference"])
@pytest.mark.parametrize("incremental", [True, False])
def test_d4s_on_several_layers_is_w0_plus_the_running_sums_solved(tiny, residual, incremental):
    folder, moments = tiny
    model, tokenizer, arch = _fresh(folder)
    layers = (0, 1)
    hp = D4sHyperparams(layers=layers, preservation_weight=LAMBDA, values=VALUES, residual=residual,
                        incremental=incremental, refactor_every=2)
    w0 = {layer: arch.edit_weight(model, layer).detach().clone() for layer in layers}
    states = {layer: D4sLayerState(moments[layer], _math(model, arch, layer).shape[0], hp, f"layer {layer}")
              for layer in layers}
    numerators = {layer: 0 for layer in layers}
    keys = {layer: [] for layer in layers}
    for target in TARGETS[:3]:
        updates, _ = apply_d4s(model, tokenizer, arch, [target], hp, GROUPS, w0, states)
        for p, update in enumerate(updates):
            undivided = update.residuals * (len(layers) - p)       # LayerUpdate stores R/(L − p)
            stored = undivided if residual == "reference" else update.residuals
            numerators[update.layer] = numerators[update.layer] + stored @ update.keys.T
            keys[update.layer].append(update.keys)
    for p, layer in enumerate(layers):
        k = torch.cat(keys[layer], 1)
        solved = numerators[layer] @ torch.linalg.inv(LAMBDA * moments[layer] + k @ k.T)
        if residual == "reference":
            solved = solved / (len(layers) - p)
        torch.testing.assert_close(_math(model, arch, layer) - arch.to_math(w0[layer]), solved, rtol=1e-7, atol=1e-9)
    if residual == "reference":   # the first layer's residual is reused: both layers were asked for the same Z − H
        torch.testing.assert_close(updates[0].residuals * 2, updates[1].residuals * 1)


def _comeba(folder, moments, hooks, alpha=float("-inf"), steps=2):
    model, tokenizer, arch = _fresh(folder)
    layers = (0, 1)
    hp = ComebaHyperparams(layers=layers, preservation_weight=LAMBDA, alpha=alpha, values=VALUES)
    accumulated = {layer: AccumulatedKeys(LAMBDA * moments[layer], refactor_every=3) for layer in layers}
    bank = HookBank(model, arch, layers, alpha) if hooks else None
    w_before = {layer: _math(model, arch, layer) for layer in layers}
    history, values = [], []
    for i in range(steps):
        updates, step = apply_comeba(model, tokenizer, arch, TARGETS[2 * i: 2 * i + 2], hp, GROUPS, accumulated, bank)
        history.append(updates)
        values.append(step.values)
    return model, arch, bank, w_before, history, values


def test_comeba_without_hooks_applies_the_accumulated_update_each_step(tiny):
    folder, moments = tiny
    model, arch, _, w0, history, _ = _comeba(folder, moments, hooks=False)
    for layer_index, layer in enumerate((0, 1)):
        keys, total = [], torch.zeros_like(w0[layer])
        for updates in history:
            update = updates[layer_index]
            keys.append(update.keys)
            k = torch.cat(keys, 1)
            expected = update.residuals @ update.keys.T @ torch.linalg.inv(LAMBDA * moments[layer] + k @ k.T)  # eq. 13
            torch.testing.assert_close(update.delta, expected, rtol=1e-7, atol=1e-9)
            total = total + expected
        torch.testing.assert_close(_math(model, arch, layer) - w0[layer], total, rtol=1e-7, atol=1e-9)


def test_comeba_hk_with_an_always_open_gate_equals_the_ablation_and_never_touches_the_model(tiny):
    folder, moments = tiny
    plain, arch, _, _, _, _ = _comeba(folder, moments, hooks=False)
    hooked, _, bank, w0, _, _ = _comeba(folder, moments, hooks=True, alpha=float("-inf"))
    for layer in (0, 1):
        torch.testing.assert_close(_math(hooked, arch, layer), w0[layer], rtol=0, atol=0)   # base model untouched
        torch.testing.assert_close(w0[layer] + bank.layers[layer].delta.double(),
                                   _math(plain, arch, layer), rtol=1e-5, atol=1e-6)
    # only the edited layers: a float32 master of ΔW and its copy in the activation dtype (float64 here)
    assert bank.nbytes == sum(h.delta.numel() * (4 + 8) for h in bank.layers.values())


@pytest.mark.parametrize("hooks", [False, True])
def test_comeba_steps_equal_a_replica_measuring_each_layer_after_the_earlier_ones(tiny, hooks):
    """Eqs. 13–15 from a replica (tests/direct.py) that measures each step's keys and h^L with fresh forward passes on
    a plain model holding every earlier update, earlier layers of the same step included, and keeps
    C_accu = λC + Σ KKᵀ itself; COMEBA's effective weights (with hook layers: always open) are the replica's."""
    folder, moments = tiny
    model, arch, bank, w0, _, values = _comeba(folder, moments, hooks=hooks)
    replica, tokenizer, _ = _fresh(folder)
    layers = (0, 1)
    accumulated = {layer: LAMBDA * moments[layer] for layer in layers}

    def solve(layer, residuals, keys):                                      # ΔW = R Kᵀ C_accu⁻¹, C_accu with K
        accumulated[layer] = accumulated[layer] + keys @ keys.T
        return residuals @ keys.T @ torch.linalg.inv(accumulated[layer])

    for i, step_values in enumerate(values):
        targets = TARGETS[2 * i: 2 * i + 2]
        _, outputs = keys_and_outputs(replica, tokenizer, arch, 0, max(layers), targets, GROUPS)
        torch.testing.assert_close(step_values.initial_outputs.double(), outputs.T, rtol=1e-5, atol=1e-7)
        memit_replica(replica, tokenizer, arch, targets, step_values.values, layers, GROUPS, solve)
    for layer in layers:
        effective = w0[layer] + bank.layers[layer].delta.double() if hooks else _math(model, arch, layer)
        torch.testing.assert_close(effective, _math(replica, arch, layer), rtol=1e-5, atol=1e-7)


def test_comeba_hk_lowers_the_threshold_to_the_edit_prompts(tiny):
    folder, moments = tiny
    _, _, bank, _, _, _ = _comeba(folder, moments, hooks=True, alpha=50.0, steps=1)
    assert all(hook.alpha < 50.0 for hook in bank.layers.values())


def test_alphaedit_accumulates_previous_keys_and_leaves_the_preserved_space_alone(tiny):
    """Two batches against a replica (tests/direct.py): each layer's keys and h^L measured after the earlier layers,
    the published update X = (P G + αI)⁻¹ P K Rᵀ with G = KKᵀ + Σ K_pK_pᵀ solved as the non-symmetric system it is,
    and after each batch the keys measured again on the edited model and added to the sum. The sum is that of both
    batches (forgetting the first changes it and the second batch's update), and the weights are the replica's."""
    folder, moments = tiny
    model, tokenizer, arch = _fresh(folder)
    replica, _, _ = _fresh(folder)
    layers, l2 = (0, 1), 1.0
    eigenvalues = torch.linalg.eigvalsh(moments[0])
    half = eigenvalues.numel() // 2
    # midway between two eigenvalues: the null space has `half` dimensions whatever the eigensolver's last bits
    assert eigenvalues[half] - eigenvalues[half - 1] > 1e-3 * eigenvalues[half]
    threshold = float(eigenvalues[half - 1] + eigenvalues[half]) / 2
    hp = AlphaEditHyperparams(layers=layers, nullspace_threshold=threshold, l2=l2, values=VALUES)
    bases = {layer: null_space_basis(moments[layer], threshold) for layer in layers}
    assert all(b.shape[1] == half for b in bases.values())
    eigenvectors = {layer: torch.linalg.eigh(moments[layer]).eigenvectors for layer in layers}
    projectors = {layer: v[:, :half] @ v[:, :half].T for layer, v in eigenvectors.items()}
    previous = {layer: torch.zeros(b.shape[0], b.shape[0], dtype=torch.float64) for layer, b in bases.items()}
    expected_previous = {layer: torch.zeros_like(p) for layer, p in previous.items()}
    w0 = {layer: _math(model, arch, layer) for layer in layers}
    eye = torch.eye(w0[0].shape[1], dtype=torch.float64)

    def solve(layer, residuals, keys):
        p, g = projectors[layer], keys @ keys.T + expected_previous[layer]
        return torch.linalg.solve(p @ g + l2 * eye, p @ keys @ residuals.T).T

    for batch in (TARGETS[:2], TARGETS[2:]):
        _, values = apply_alphaedit(model, tokenizer, arch, batch, hp, GROUPS, bases, previous)
        _, outputs = keys_and_outputs(replica, tokenizer, arch, 0, max(layers), batch, GROUPS)
        torch.testing.assert_close(values.initial_outputs.double(), outputs.T, rtol=1e-5, atol=1e-7)
        memit_replica(replica, tokenizer, arch, batch, values.values, layers, GROUPS, solve)
        for layer in layers:                                 # the batch's keys on the edited model, every layer
            keys, _ = keys_and_outputs(replica, tokenizer, arch, layer, max(layers), batch, GROUPS)
            expected_previous[layer] = expected_previous[layer] + keys @ keys.T
            torch.testing.assert_close(previous[layer], expected_previous[layer], rtol=1e-7, atol=1e-10)
            torch.testing.assert_close(_math(model, arch, layer), _math(replica, arch, layer), rtol=1e-7, atol=1e-9)
    for layer in layers:
        kept = eigenvectors[layer][:, half:]
        change = _math(model, arch, layer) - w0[layer]
        assert change.abs().max() > 1e-6
        assert (change @ kept).abs().max() < 1e-9 * change.abs().max().clamp_min(1)


def test_comeba_gate_statistics_warns_unless_values_are_optimised_one_request_at_a_time():
    import warnings

    one_at_a_time = ValueHyperparams(requests_per_pass=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ComebaHyperparams()                                           # the default rule needs nothing
        ComebaHyperparams(gate_statistics="all_positions", values=one_at_a_time)
    for per_pass in (None, 4):
        with pytest.warns(UserWarning, match=f"requests_per_pass {per_pass}.*requests_per_pass: 1"):
            ComebaHyperparams(gate_statistics="all_positions", values=ValueHyperparams(requests_per_pass=per_pass))
    with pytest.raises(ValueError, match="gate_statistics 'padded'"):
        ComebaHyperparams(gate_statistics="padded")


def test_the_comeba_editor_builds_its_hook_gate_with_the_chosen_statistics(tiny, monkeypatch):
    from lit_edit.editors import COMEBA, locate_context
    from lit_edit.editors.base import EditContext

    folder, moments = tiny
    model, tokenizer, arch = _fresh(folder)
    monkeypatch.setattr(locate_context, "second_moments_for", lambda *args, **kwargs: {k: moments[k] for k in (0, 1)})
    for rule in ("real_tokens", "all_positions"):
        editor = COMEBA(layers=[0, 1], values=ValueHyperparams(requests_per_pass=1), template_tokens=3,
                        gate_statistics=rule)
        editor.setup(model, tokenizer, arch, EditContext("tiny", progress=False))
        assert editor.hp.gate_statistics == rule and editor.bank.gate_statistics == rule
        assert editor.hyperparameters()["hp"]["gate_statistics"] == rule     # in the run's fingerprint
        editor.bank.remove()


def _gate_sensitive_to_padding(model, tokenizer, arch, targets, groups):
    """A hook bank counting padding (layer 0 gated, layer 1 off) whose α lies between the z of one token of the
    bare prompts batched alone and padded to the width of the keys' pass over every template: the two passes gate
    that token differently."""
    from lit_edit.editing.positions import subject_token_indices
    from lit_edit.scoring import pad_right

    bank = HookBank(model, arch, (0, 1), alpha=0.0, gate_statistics="all_positions").install()
    g = torch.Generator().manual_seed(1)
    for hook in bank.layers.values():
        hook.add(torch.randn(hook.delta.shape, generator=g, dtype=torch.float64) * 0.5)
    bare = [tokenizer(t.prompt.format(t.subject))["input_ids"] for t in targets]
    width = max(len(tokenizer(c.format(t.prompt).format(t.subject))["input_ids"]) for group in groups for c in group
                for t in targets)
    alone = bank.record_scores(*pad_right(bare, tokenizer.pad_token_id))[0][0][0]
    padded = bank.record_scores(*pad_right(bare + [[tokenizer.pad_token_id] * width], tokenizer.pad_token_id))
    padded = padded[0][0][0][: len(bare)]
    subject = subject_token_indices(tokenizer, [t.prompt for t in targets], [t.subject for t in targets])
    gap, row, token = max((float((padded[r, t] - alone[r, t]).abs()), r, t) for r in range(len(bare))
                          for t in range(subject[r] + 1))
    assert gap > 1e-3
    bank.layers[0].alpha = float(alone[row, token] + padded[row, token]) / 2
    bank.set_mode("validated", [0])
    return bank


@pytest.mark.parametrize("bare_pass", [False, True])
def test_the_residual_is_read_in_a_pass_over_the_bare_prompts_alone_on_request(tiny, bare_pass):
    """When the gate counts padding, h^L at the bare prompts depends on the width of the pass that reads it: MEMIT's
    layer loop reads it in the keys' pass over every template (one pass), or, with ``bare_pass``, in a pass over
    the bare prompts alone (the reference code's order, which COMEBA-HK follows under ``all_positions``)."""
    from lit_edit.editing.keys import module_io_at_subject, template_keys
    from lit_edit.editing.memit import spread_over_layers

    folder, _ = tiny
    model, tokenizer, arch = _fresh(folder)
    targets = TARGETS[:3]
    groups = (("{}",), ("A much longer prefix, written to pad the bare prompts by many tokens in the keys' pass. {}",))
    bank = _gate_sensitive_to_padding(model, tokenizer, arch, targets, groups)
    prompts, subjects = [t.prompt for t in targets], [t.subject for t in targets]
    alone = module_io_at_subject(model, tokenizer, arch.layer(1), prompts, subjects)[1].double()
    together = template_keys(model, tokenizer, arch, 1, prompts, subjects, groups, also=arch.layer(1)).bare_output
    assert not torch.allclose(alone, together.double(), rtol=1e-4, atol=1e-6)     # the two passes differ here
    values = torch.zeros_like(alone)
    read = []

    def update(step):
        read.append(values - step.residuals.T)
        return torch.zeros(1)

    spread_over_layers(model, tokenizer, arch, targets, values, (0, 1), groups, "subject_last", update,
                       bare_pass=bare_pass)
    for outputs in read:
        torch.testing.assert_close(outputs, alone if bare_pass else together.double())
    bank.remove()


def test_comeba_reads_the_residual_alone_exactly_when_the_gate_counts_padding(tiny, monkeypatch):
    import lit_edit.editing.comeba as comeba

    folder, moments = tiny
    seen = []
    original = comeba.spread_over_layers
    monkeypatch.setattr(comeba, "spread_over_layers", lambda *args, **kwargs: seen.append(kwargs.get("bare_pass"))
                        or original(*args, **kwargs))
    model, tokenizer, arch = _fresh(folder)
    for rule, hooks in (("real_tokens", True), ("all_positions", True), ("all_positions", False)):
        hp = ComebaHyperparams(layers=(0, 1), preservation_weight=LAMBDA, alpha=float("-inf"), gate_statistics=rule,
                               values=ValueHyperparams(steps=2, lr=0.05, requests_per_pass=1))
        accumulated = {layer: AccumulatedKeys(LAMBDA * moments[layer]) for layer in (0, 1)}
        bank = HookBank(model, arch, (0, 1), float("-inf"), rule) if hooks else None
        apply_comeba(model, tokenizer, arch, TARGETS[:2], hp, GROUPS, accumulated, bank)
        if bank is not None:
            bank.remove()
    assert seen == [False, True, False]
