"""The second-moment solver in the editors and the run record: ROME's factorisation of C is computed once per layer
and solver setting, ``exact`` refuses the shipped model's singular layer 1 by name, and ``metrics.json`` says which
solver ran and how ill-conditioned each C was."""

import json

import pytest
import torch

from lit_edit.editing.least_squares import UpdateSolveError
from lit_edit.editing.requests import EditRequest
from lit_edit.editing.rome import RomeHyperparams, apply_rome
from lit_edit.editing.solver import SecondMomentSolver
from lit_edit.editing.values import ValueHyperparams
from lit_edit.editors import D4S, MEMIT, RECT, ROME, AlphaEdit
from lit_edit.editors.base import EditContext, value_targets
from lit_edit.models import architecture_of, load_model_and_tokenizer
from lit_edit.stats import StatisticsConfig, second_moments_for
from tests.conftest import FACTWORLD, ROOT, make_tiny_model, run_edit_cli
from tests.edit_configs import method_config

SHIPPED = ROOT / "checkpoints" / "factworld-gpt2"
REQUESTS = [EditRequest(prompt="{} was born in", subject="Alda Venkor", target_new="Port Ivory", record_id="r0"),
            EditRequest(prompt="{} works as a", subject="Mirel Oskan", target_new="baker", record_id="r1"),
            EditRequest(prompt="{} lives in", subject="Tova Brannik", target_new="Elm Harbor", record_id="r2")]
VALUES = ValueHyperparams(steps=3, lr=0.5, clamp_norm_factor=4.0)


def _loaded(folder):
    model, tokenizer = load_model_and_tokenizer(str(folder))
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tokenizer, architecture_of(model)


def _context(folder, tmp_path, max_tokens=3000):
    statistics = StatisticsConfig(corpus=str(FACTWORLD / "corpus" / "train.jsonl"), cache_dir=str(tmp_path / "stats"),
                                  max_tokens=max_tokens)
    return EditContext(str(folder), statistics, progress=False)


class _FactorisationCounter:
    """Counts the factorisations of a symmetric matrix (Cholesky or eigendecomposition) while active."""

    def __init__(self, monkeypatch):
        self.calls = 0
        for name in ("cholesky_ex", "eigh"):
            original = getattr(torch.linalg, name)
            monkeypatch.setattr(torch.linalg, name, self._counting(original))

    def _counting(self, original):
        def wrapper(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)
        return wrapper


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model("gpt2", tmp_path_factory.mktemp("tiny-rome-cache"), seed=3)


def test_rome_factorises_c_once_per_layer_across_requests(tiny, tmp_path, monkeypatch):
    model, tokenizer, arch = _loaded(tiny)
    editor = ROME(layer=1, values=VALUES, templates_per_seed=1, template_tokens=4)
    counter = _FactorisationCounter(monkeypatch)
    editor.setup(model, tokenizer, arch, _context(tiny, tmp_path))   # eigenvalues of C, then its factorisation
    assert counter.calls == 1
    for request in REQUESTS:                      # instance-sequential: one edit call per request
        editor.edit(model, tokenizer, arch, [request])
    assert counter.calls == 1
    editor.second_moment.forget_factorisations()
    editor.edit(model, tokenizer, arch, REQUESTS[:1])
    assert counter.calls == 2


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_cached_factorisation_gives_the_updates_of_a_fresh_one_and_follows_the_solver(tiny, tmp_path):
    """Three requests through the editor (C factorised once) and through ``apply_rome`` with C as a tensor
    (factorised anew for every request): the same ΔW, bit for bit. Changing the solver between requests uses the
    factorisation of that solver, not the cached one; editing another layer than the one set up is refused."""
    context = _context(tiny, tmp_path)
    model, tokenizer, arch = _loaded(tiny)
    editor = ROME(layer=1, values=VALUES, templates_per_seed=1, template_tokens=4)
    editor.setup(model, tokenizer, arch, context)
    ridge = SecondMomentSolver("ridge", ridge=1e-2)
    solvers = [SecondMomentSolver(), SecondMomentSolver(), ridge]
    cached = []
    for request, solver in zip(REQUESTS, solvers):
        editor.hp.solver = solver
        cached.append(editor.edit(model, tokenizer, arch, [request]).deltas)

    fresh_model, _, _ = _loaded(tiny)
    c = second_moments_for(fresh_model, tokenizer, arch, str(tiny), [1], context.statistics, progress=False)[1]
    [name] = editor.parameter_names(fresh_model, arch)
    weight = fresh_model.get_parameter(name)
    for request, solver, deltas in zip(REQUESTS, solvers, cached):
        before = weight.detach().clone()
        if solver is ridge:       # the cached pinv factorisation would give another update for this request
            hp = RomeHyperparams(layer=1, values=VALUES)
            apply_rome(fresh_model, tokenizer, arch, value_targets([request]), hp, editor.context_templates, c)
            assert not torch.allclose(weight.detach() - before, deltas[name], rtol=1e-3, atol=0)
            with torch.no_grad():
                weight.copy_(before)
        hp = RomeHyperparams(layer=1, values=VALUES, solver=solver)
        apply_rome(fresh_model, tokenizer, arch, value_targets([request]), hp, editor.context_templates, c.clone())
        assert torch.equal(weight.detach() - before, deltas[name])
    editor.hp.layer = 0
    with pytest.raises(RuntimeError, match="loaded C of layer 1, but the editor now edits layer 0; run setup again"):
        editor.edit(model, tokenizer, arch, REQUESTS[:1])


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_exact_refuses_the_shipped_models_singular_layer_by_name_before_any_edit(tmp_path):
    """Layer 1 of the shipped GPT-2 has FFN neurons that never fire: C is singular and ``exact`` (the reference's
    solve) has no solution. ROME, MEMIT and D4S say so at setup, before any weight changes, naming the layer and the
    other solvers; AlphaEdit, which only takes C's null space, accepts it. Layer 0 is well-conditioned."""
    model, tokenizer, arch = _loaded(SHIPPED)
    original = {name: p.detach().clone() for name, p in model.named_parameters()}
    context = _context(SHIPPED, tmp_path, max_tokens=20000)
    exact = SecondMomentSolver("exact")
    refusal = ("layer 1: the second moment C is not positive definite.*solver method 'exact' has no solution; "
               "choose solver method 'ridge'.*or 'pinv'")
    for editor in (MEMIT(layers=(0, 1), preservation_weight=300, values=VALUES, solver=exact),
                   D4S(layers=(0, 1), preservation_weight=300, values=VALUES, solver=exact),
                   ROME(layer=1, values=VALUES, solver=exact, templates_per_seed=1, template_tokens=4)):
        with pytest.raises(UpdateSolveError, match=refusal):
            editor.setup(model, tokenizer, arch, context)
    assert all(torch.equal(p, original[name]) for name, p in model.named_parameters())
    AlphaEdit(layers=(0, 1), values=VALUES, solver=exact).setup(model, tokenizer, arch, context)
    rome = ROME(layer=0, values=VALUES, solver=exact, templates_per_seed=1, template_tokens=4)
    rome.setup(model, tokenizer, arch, context)
    assert torch.isfinite(next(iter(rome.edit(model, tokenizer, arch, REQUESTS[:1]).deltas.values()))).all()


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_rect_passes_on_the_report_of_the_method_it_wraps(tmp_path):
    model, tokenizer, arch = _loaded(SHIPPED)
    editor = RECT(MEMIT(layers=(0, 1), preservation_weight=300, values=VALUES))
    editor.setup(model, tokenizer, arch, _context(SHIPPED, tmp_path, max_tokens=20000))
    editor.edit(model, tokenizer, arch, REQUESTS[:1])
    report = editor.report(model, tokenizer, arch, REQUESTS[:1])
    assert report == editor.editor.report(model, tokenizer, arch, REQUESTS[:1])
    assert set(report.summary["second_moment_solver"]["layers"]) == {0, 1}


@pytest.mark.parametrize("method", ["pinv", "ridge"])
@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_metrics_json_records_the_solver_and_the_conditioning_of_each_layer(tmp_path, method):
    """A MEMIT run on the shipped model (the config's statistics: 100,000 tokens of the training corpus) records
    the solver and, per layer, the eigenvalues of C: layer 1 has 22 keys that are 0 on every token and 86 of 768
    eigenvalues at or below 1e-10 of the largest; layer 0 none."""
    run_edit_cli(tmp_path, *method_config("memit"),
                 "--data.init_args.n", "2", "--data.init_args.batch_size", "2",
                 "--trainer.eval_every_n_batches", "0", "--model.init_args.monitor_docs", "4",
                 "--model.init_args.families", "[token]", "--model.init_args.editor.init_args.values.steps", "3",
                 "--model.init_args.editor.init_args.solver.method", method)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    record = metrics["editor_report"]["second_moment_solver"]
    assert record["method"] == method and record["rcond"] == 1e-10 and record["ridge"] == 1e-8
    layers = record["layers"]
    assert set(layers) == {"0", "1"}
    assert layers["1"]["dimension"] == 768 and layers["1"]["zero_keys"] == 22
    assert layers["1"]["condition_number"] is None and layers["1"]["smallest_to_largest"] < 1e-15
    assert layers["0"]["below_cutoff"] == 0 and layers["0"]["condition_number"] > 1
    if method == "pinv":
        assert layers["1"]["cutoff"] == 1e-10 and layers["1"]["below_cutoff"] == 86
    else:
        assert layers["1"]["cutoff"] == 1e-8 and layers["1"]["ridge_added"] > 0
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["editor"]["hp"]["solver"] == {"method": method, "ridge": 1e-8, "rcond": 1e-10}
