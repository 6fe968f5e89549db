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

from .conftest import make_tiny_model

TARGETS = [ValueTarget("{} was born in", "Alda Venkor", "Port Ivory"),
           ValueTarget("The pet of {} is a", "Bram Tosk", "parrot"),
           ValueTarget("{} works for", "Ziva Lorn", "Quillon Systems"),
           ValueTarget("{} plays the", "Omar Teel", "violin")]
GROUPS = (("{}",), ("The weather was mild. {}", "Nobody expected it. {}"))
VALUES = ValueHyperparams(steps=6, lr=0.05, weight_decay=0.0, clamp_norm_factor=100.0)
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
    apply_memit(batch, tok, arch, TARGETS, MemitHyperparams((1,), LAMBDA, VALUES), GROUPS, moments)
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
    history = []
    for i in range(steps):
        updates, step = apply_comeba(model, tokenizer, arch, TARGETS[2 * i: 2 * i + 2], hp, GROUPS, accumulated, bank)
        history.append(updates)
    return model, arch, bank, w_before, history


def test_comeba_without_hooks_applies_the_accumulated_update_each_step(tiny):
    folder, moments = tiny
    model, arch, _, w0, history = _comeba(folder, moments, hooks=False)
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
    plain, arch, _, _, _ = _comeba(folder, moments, hooks=False)
    hooked, _, bank, w0, _ = _comeba(folder, moments, hooks=True, alpha=float("-inf"))
    for layer in (0, 1):
        torch.testing.assert_close(_math(hooked, arch, layer), w0[layer], rtol=0, atol=0)   # base model untouched
        torch.testing.assert_close(w0[layer] + bank.layers[layer].delta.double(),
                                   _math(plain, arch, layer), rtol=1e-5, atol=1e-6)
    # only the edited layers: a float32 master of ΔW and its copy in the activation dtype (float64 here)
    assert bank.nbytes == sum(h.delta.numel() * (4 + 8) for h in bank.layers.values())


def test_comeba_hk_lowers_the_threshold_to_the_edit_prompts(tiny):
    folder, moments = tiny
    _, _, bank, _, _ = _comeba(folder, moments, hooks=True, alpha=50.0, steps=1)
    assert all(hook.alpha < 50.0 for hook in bank.layers.values())


def test_alphaedit_accumulates_previous_keys_and_leaves_the_preserved_space_alone(tiny):
    folder, moments = tiny
    model, tokenizer, arch = _fresh(folder)
    layers = (0, 1)
    eigenvalues = torch.linalg.eigvalsh(moments[0])
    threshold = float(eigenvalues[eigenvalues.numel() // 2])
    hp = AlphaEditHyperparams(layers=layers, nullspace_threshold=threshold, l2=1.0, values=VALUES)
    bases = {layer: null_space_basis(moments[layer], threshold) for layer in layers}
    previous = {layer: torch.zeros(b.shape[0], b.shape[0], dtype=torch.float64) for layer, b in bases.items()}
    w0 = {layer: _math(model, arch, layer) for layer in layers}
    apply_alphaedit(model, tokenizer, arch, TARGETS[:2], hp, GROUPS, bases, previous)
    assert all(previous[layer].abs().sum() > 0 for layer in layers)
    first = {layer: previous[layer].clone() for layer in layers}
    apply_alphaedit(model, tokenizer, arch, TARGETS[2:], hp, GROUPS, bases, previous)
    for layer in layers:
        assert not torch.equal(first[layer], previous[layer])
        kept = torch.linalg.eigh(moments[layer]).eigenvectors[:, bases[layer].shape[1]:]
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
    from lit_edit.editors import COMEBA, locate
    from lit_edit.editors.base import EditContext

    folder, moments = tiny
    model, tokenizer, arch = _fresh(folder)
    monkeypatch.setattr(locate, "second_moments_for", lambda *args, **kwargs: {k: moments[k] for k in (0, 1)})
    for rule in ("real_tokens", "all_positions"):
        editor = COMEBA(layers=[0, 1], values=ValueHyperparams(requests_per_pass=1), template_tokens=3,
                        gate_statistics=rule)
        editor.setup(model, tokenizer, arch, EditContext("tiny", progress=False))
        assert editor.hp.gate_statistics == rule and editor.bank.gate_statistics == rule
        assert editor.hyperparameters()["hp"]["gate_statistics"] == rule     # in the run's fingerprint
        editor.bank.remove()
