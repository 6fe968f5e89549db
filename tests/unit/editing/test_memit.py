import torch

from lit_edit.editing.keys import module_io_at_subject
from lit_edit.editing.memit import MemitHyperparams, apply_memit
from lit_edit.editing.values import ValueHyperparams, ValueTarget
from lit_edit.models import architecture_of, load_model_and_tokenizer
from tests.conftest import make_tiny_model
from tests.direct import LIVE_VALUES, clamp_binds, keys_and_outputs, memit_replica

TARGETS = [ValueTarget("{} was born in", "Alda Venkor", "Port Ivory"),
           ValueTarget("The pet of {} is a", "Bram Tosk", "parrot"),
           ValueTarget("{} works for", "Ziva Lorn", "Quillon Systems")]
GROUPS = (("{}",), ("The weather was mild. {}", "Nobody expected it. {}"))


def test_memit_layer_updates_equal_the_closed_form_and_spread_the_residual(tmp_path):
    model, tokenizer = load_model_and_tokenizer(str(make_tiny_model("gpt2", tmp_path, seed=5)))
    model = model.double()
    arch = architecture_of(model)
    m = arch.inner_size(model)
    g = torch.Generator().manual_seed(0)
    base = torch.randn(m, 4 * m, generator=g, dtype=torch.float64)
    moments = {layer: base @ base.T / (4 * m) for layer in (0, 1)}
    original = {layer: arch.to_math(arch.edit_weight(model, layer)).detach().clone() for layer in (0, 1)}
    hp = MemitHyperparams(layers=(0, 1), preservation_weight=3.0,
                          values=ValueHyperparams(steps=5, lr=0.01, weight_decay=0.0, clamp_norm_factor=100.0))
    updates, values = apply_memit(model, tokenizer, arch, TARGETS, hp, GROUPS, moments)

    for update in updates:
        k, r, c = update.keys.double(), update.residuals.double(), moments[update.layer]
        expected = r @ k.T @ torch.linalg.inv(3.0 * c + k @ k.T)
        torch.testing.assert_close(update.delta, expected, rtol=1e-8, atol=1e-10)
        applied = arch.to_math(arch.edit_weight(model, update.layer)).detach() - original[update.layer]
        torch.testing.assert_close(applied, expected.to(applied.dtype), rtol=1e-8, atol=1e-10)
    # the first layer is asked for half of the total residual Z − H (two layers)
    _, h_before = module_io_at_subject(load_model_and_tokenizer(str(tmp_path))[0].double(), tokenizer,
                                       arch.layer(1), [t.prompt for t in TARGETS], [t.subject for t in TARGETS])
    torch.testing.assert_close(updates[0].residuals, (values.values.double() - h_before).T / 2, rtol=1e-6, atol=1e-8)


def test_each_layer_is_solved_for_keys_and_residual_measured_after_the_earlier_layers(tmp_path):
    """The residual is recomputed per layer (docs/methods.md §3): a replica (tests/direct.py) measures layer p's keys and
    h^L with a fresh, unbatched forward pass on a model holding the updates of layers < p, asks layer p for
    (Z − H_p)/(P − p), solves eq. 14 with an explicit inverse and applies it; MEMIT's weights are the replica's."""
    folder = make_tiny_model("gpt2", tmp_path, seed=5)
    model, tokenizer = load_model_and_tokenizer(str(folder))
    model, replica = model.double(), load_model_and_tokenizer(str(folder))[0].double()
    arch = architecture_of(model)
    layers, lam = (0, 1, 2), 3.0
    m = arch.inner_size(model)
    g = torch.Generator().manual_seed(0)
    base = torch.randn(m, 4 * m, generator=g, dtype=torch.float64)
    moments = {layer: base @ base.T / (4 * m) for layer in layers}
    hp = MemitHyperparams(layers=layers, preservation_weight=lam, values=LIVE_VALUES)
    updates, values = apply_memit(model, tokenizer, arch, TARGETS, hp, GROUPS, moments)
    _, unedited_outputs = keys_and_outputs(replica, tokenizer, arch, 0, max(layers), TARGETS, GROUPS)
    torch.testing.assert_close(values.initial_outputs.double(), unedited_outputs.T, rtol=1e-6, atol=1e-8)
    assert clamp_binds(values)

    def solve(layer, residuals, keys):                                                   # eq. 14
        return residuals @ keys.T @ torch.linalg.inv(lam * moments[layer] + keys @ keys.T)

    expected = memit_replica(replica, tokenizer, arch, TARGETS, values.values, layers, GROUPS, solve)
    for layer, update, delta in zip(layers, updates, expected):
        torch.testing.assert_close(update.delta, delta, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(arch.to_math(arch.edit_weight(model, layer)).detach(),
                                   arch.to_math(arch.edit_weight(replica, layer)).detach(), rtol=1e-9, atol=1e-10)
