"""Memory per editing method at GPT-2 XL size, estimated from tensor sizes (no GPU measurement).

Each entry counts the tensors this code allocates (``lit_edit/editing``, ``lit_edit/editors``, the editing module's
copies), for the settings of ``configs/edit/methods/gpt2-xl/*.yaml`` on ``configs/edit/models/gpt2-xl.yaml`` (edited
layers, batch size, rollback, templates, statistics dtype) and ``configs/fit/mend_gpt2-xl.yaml`` (the MEND network).
Per method:

* **C held**: the statistics an editor keeps for the run, float32 on the model's device (``second_moments_for``).
* **statistics pass**: the peak of computing C once (setup; cached afterwards): the running sums Σkkᵀ of every
  layer in the accumulation dtype plus one batch (4,096 tokens) of recorded FFN inputs/outputs and its keys.
* **editor state**: what the editor carries across edits (D4S's sums and inverse, COMEBA-HK's accumulated keys and
  hook layers, AlphaEdit's projector and keys, MEND's network, D4S's copy of W0).
* **weight copies**: copies of the edited matrices alive during one step (the run's originals, the editor's
  snapshot, the change, the effective weights for the monitors, the rollback copy, FT's Adam state...).
* **solve**: float64 m × m temporaries of the update (Cholesky, eigendecomposition), one layer at a time.
* **activations**: what autograd saves for the backward pass of value optimisation (FT, KN, MEND: of their
  loss), ``(4m + 8d + s)`` values per token and layer after the one that carries the gradient (measured below
  with ``saved_tensors_hooks``: GPT-2's tanh-GELU saves four FFN-width tensors, attention and layer norms eight
  model-width ones); rows = context templates + 1 KL prompt, per request of the step (ROME: of one request),
  **32 tokens a row (assumed)**.
* **run state**: ``run_state.pt`` (the changed weights in their dtype + ``editor.state_dict()``; history not counted).
* **peak** ≈ weights + C held + editor state + weight copies + max(solve, activations), with fp32 or bf16 weights
  and activations (statistics, solves and editor states stay float32/float64 in this code).

The estimator is then run at the fact-world model's size and compared with tensors measured there (one real edit
per method with 2 value steps, the MEND checkpoint, autograd's saved tensors).

    python bench/memory_estimate.py [--tokens-per-row 32] [--no-validate]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FP32, BF16, F64 = 4, 2, 8
STATS_BATCH_TOKENS = 4096   # token_batches' tokens_per_batch
TEMPLATE_SEEDS = 5          # lit_edit.editing.contexts.MEMIT_SEEDS
GPT2_XL_CONFIGS = {"ROME": "rome", "MEMIT": "memit", "FT": "ft", "KN": "kn", "MEND": "mend", "D4S": "d4s",
                   "COMEBA-HK": "comeba", "AlphaEdit": "alphaedit", "RECT (ROME)": "rome-rect",
                   "RECT (MEMIT)": "memit-rect"}


@dataclass(frozen=True)
class Shape:
    """A GPT-2-layout model: layers, width d, FFN width m, vocabulary, positions, heads (tied embeddings)."""

    name: str
    n_layers: int
    d: int
    m: int
    vocab: int
    positions: int
    heads: int

    @property
    def params(self) -> int:
        d, m = self.d, self.m
        block = 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * m + m) + (m * d + d)
        return self.vocab * d + self.positions * d + self.n_layers * block + 2 * d

    @classmethod
    def from_hf(cls, folder: Path) -> Shape:
        c = json.loads((folder / "config.json").read_text())
        return cls(folder.name, c["n_layer"], c["n_embd"], c.get("n_inner") or 4 * c["n_embd"], c["vocab_size"],
                   c["n_positions"], c["n_head"])


GPT2_XL = Shape("GPT-2 XL", 48, 1600, 6400, 50257, 1024, 25)


@dataclass
class Plan:
    """What a config makes an editing run allocate (read from the config and the editor's defaults)."""

    label: str
    kind: str                      # the editor's name: rome, memit, ft, kn, mend, d4s, comeba, alphaedit
    layers: list[int]
    batch: int
    rollback: bool
    stats_dtype: int | None        # bytes of the accumulation dtype; None: no statistics
    templates: int = 1             # value-optimisation context templates, the bare prompt included
    rect: bool = False
    hooks: bool = False
    requests_per_pass: int | None = None   # value optimisation in passes of this many requests (None: all)
    args: dict = field(default_factory=dict)
    mend: dict = field(default_factory=dict)


def _editor_args(spec: dict) -> tuple[type, dict]:
    module, _, name = spec["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    return cls, {**defaults, **spec.get("init_args", {})}


def config_files(model: str, method: str) -> list[Path]:
    """The files of an editing run: ``configs/edit/models/<model>.yaml``, then ``methods/<model>/<method>.yaml``."""
    return [ROOT / f"configs/edit/models/{model}.yaml", ROOT / f"configs/edit/methods/{model}/{method}.yaml"]


def _merged(earlier, later):
    """A later config file over an earlier one as the CLI stacks them: mappings key by key, a value replaced."""
    if not (isinstance(earlier, dict) and isinstance(later, dict)):
        return later
    return {**earlier, **{k: _merged(earlier[k], v) if k in earlier else v for k, v in later.items()}}


def plan_from_config(label: str, model: str, method: str, shape: Shape) -> Plan:
    config = {}
    for path in config_files(model, method):
        config = _merged(config, yaml.safe_load(path.read_text()))
    module = config["model"]["init_args"]
    spec, rect = module["editor"], False
    if spec["class_path"].endswith(".RECT"):
        spec, rect = spec["init_args"]["editor"], True
    cls, args = _editor_args(spec)
    kind = cls.name
    statistics = module.get("statistics") or {}
    stats_dtype = {"float64": F64, "float32": FP32}[statistics.get("dtype", "float64")]
    plan = Plan(label, kind, [], config["data"]["init_args"].get("batch_size", 1), module.get("rollback", False),
                None, rect=rect, args=args)
    if kind == "rome":
        plan.layers = [args["layer"]]
        plan.stats_dtype = stats_dtype if args["mom2_adjustment"] else None
    elif kind == "kn":
        plan.layers = list(range(shape.n_layers)) if args["layers"] is None else list(args["layers"])
    elif kind == "mend":
        fit = next(yaml.safe_load(p.read_text()) for p in sorted((ROOT / "configs/fit").glob("mend_*.yaml"))
                   if yaml.safe_load(p.read_text())["model"]["init_args"].get("export_dir") == args["checkpoint"])
        plan.mend = fit["model"]["init_args"]
        plan.layers = list(plan.mend["layers"])
    else:
        plan.layers = list(args["layers"])
        plan.stats_dtype = stats_dtype if kind != "ft" else None
    if "templates_per_seed" in args:
        plan.templates = 1 + TEMPLATE_SEEDS * args["templates_per_seed"]
    plan.hooks = kind == "comeba" and args["hooks"]
    values = args.get("values")
    plan.requests_per_pass = (values.get("requests_per_pass") if isinstance(values, dict)
                              else getattr(values, "requests_per_pass", None))
    return plan


def mend_network_bytes(plan: Plan, shape: Shape) -> int:
    """The MEND network (lit_edit/editing/mend_network.py) in float32, its running moments in float64."""
    sizes = {"ffn_in": (shape.d, shape.m), "ffn_out": (shape.m, shape.d)}
    shapes = [sizes[t] for _ in plan.layers for t in plan.mend["modules"]]
    groups: dict = {}
    for i, s in enumerate(shapes):
        groups.setdefault(s if plan.mend["shared"] else i, []).append(s)
    total = 0
    for members in groups.values():
        n_in, n_out = members[0]
        size = n_in + n_out
        rank = min(plan.mend["rank"], size)
        per_layer = 2 * rank * size + size + 2 * len(members) * size
        total += (plan.mend["n_hidden"] + 1) * per_layer * FP32 + (2 + 2 * size) * F64
    return total + len(shapes) * FP32


def edited_numel(plan: Plan, shape: Shape) -> int:
    """Entries of the parameters the editor reports (what the module copies and rolls back)."""
    if plan.kind == "ft":
        return len(plan.layers) * (shape.d * shape.m + shape.d)           # weight and bias
    if plan.kind == "mend":
        return len(plan.layers) * len(plan.mend["modules"]) * shape.d * shape.m
    return len(plan.layers) * shape.d * shape.m


def estimate(plan: Plan, shape: Shape, b: int, tokens_per_row: int = 32, null_space: int | None = None) -> dict:
    """Bytes per component (module docstring) with weights and activations of ``b`` bytes; ``null_space``: AlphaEdit's
    null-space dimensions summed over the layers (unknown before C exists: m per layer, the upper bound)."""
    d, m, n = shape.d, shape.m, len(plan.layers)
    mat = d * m
    out = {"weights": shape.params * b}
    stat_layers = n if plan.stats_dtype else 0
    out["C held"] = stat_layers * m * m * FP32
    acc = plan.stats_dtype or F64
    out["statistics pass"] = (stat_layers * m * m * acc + STATS_BATCH_TOKENS * (stat_layers * (m + d) * b + m * (b + acc))
                              if stat_layers else 0)
    # carried editor state (state_dict and what is held beside it)
    state = {"d4s": n * ((3 * m * m + 2 * mat) * F64 + mat * b),              # λC, ΣKKᵀ, A⁻¹, S, S·A⁻¹; W0
             "comeba": n * 3 * m * m * F64 + (n * mat * (FP32 + (b if b != FP32 else 0)) if plan.hooks else 0),
             "alphaedit": (n * m * m + m * (null_space or n * m)) * F64,      # Σ K_pK_pᵀ; U (m × r)
             "mend": mend_network_bytes(plan, shape) if plan.kind == "mend" else 0}
    out["editor state"] = state.get(plan.kind, 0)
    # copies of the edited parameters alive during one step: the module's originals, the editor's snapshot, the
    # change, the effective weights for the monitors (4), the rollback copy; MEND takes no snapshot; FT adds its
    # originals, Adam's two moments, the gradient and the clamp's bounds and result; COMEBA-HK's are float32
    numel = edited_numel(plan, shape)
    copies = {"rome": 4, "memit": 4, "d4s": 4, "alphaedit": 4, "kn": 4, "mend": 3, "comeba": 4, "ft": 8}[plan.kind]
    copies += plan.rollback + 3 * plan.rect                    # RECT: its before, after and kept weights
    out["weight copies"] = copies * numel * (FP32 if plan.kind == "comeba" else b)
    # every float64 ΔW the step returns (ROME: one per request, the MEMIT family: one per layer) is kept until the
    # step ends, and one is cast to the weight's dtype at a time
    f64_updates = {"rome": plan.batch, "memit": n, "d4s": n, "comeba": n, "alphaedit": n}.get(plan.kind, 0)
    out["weight copies"] += f64_updates * mat * F64 + (mat * b if f64_updates else 0)
    if plan.rect:   # |ΔW/W| in float32 (5 temporaries), the int64 top-k indices of 40 %, the mask: one matrix at a time
        out["weight copies"] += int(mat * (5 * FP32 + 0.4 * 8 + 1))
    solves = {"rome": 2, "memit": 4, "d4s": 5, "comeba": 5, "alphaedit": 4}   # float64 m × m buffers alive at once
    out["solve"] = solves.get(plan.kind, 0) * m * m * F64 if plan.kind != "rome" or plan.stats_dtype else 0
    # activations saved for the backward pass
    per_token_layer = (4 * m + 8 * d + tokens_per_row) * b
    logits = 0
    if plan.kind in ("rome", "memit", "d4s", "comeba", "alphaedit"):
        per_pass = 1 if plan.kind == "rome" else min(plan.batch, plan.requests_per_pass or plan.batch)   # ROME: one
        rows = per_pass * (plan.templates + 1)                                                     # at a time
        after = shape.n_layers - 1 - max(plan.layers)
        extra = d * b
    elif plan.kind == "ft":
        rows = min(plan.batch, plan.args["batch_size"])
        after = shape.n_layers - 1 - min(plan.layers)
        extra = m * b + d * b
        logits = rows * tokens_per_row * shape.vocab * (b + 2 * FP32)   # logits, .float(), log_softmax
    elif plan.kind == "kn":
        rows, after, extra = plan.args["batch_size"], shape.n_layers - min(plan.layers), d * b
    else:   # mend: the probes at the lowest edited layer's FFN input projection
        rows, after, extra = plan.batch, shape.n_layers - min(plan.layers), d * b
        tokens_per_row = plan.args["max_length"]
        logits = rows * tokens_per_row * shape.vocab * (b + FP32)
    out["activations"] = rows * tokens_per_row * (after * per_token_layer + extra) + logits
    # the run state: changed weights (none with rollback or hook layers) + editor.state_dict()
    out["run weights"] = 0 if plan.rollback or plan.hooks else numel * b
    out["run editor"] = {"d4s": n * (3 * m * m + 2 * mat) * F64,
                         "comeba": n * 3 * m * m * F64 + (n * mat * FP32 if plan.hooks else 0),
                         "alphaedit": n * m * m * F64}.get(plan.kind, 0)
    out["run state"] = out["run weights"] + out["run editor"]
    out["peak"] = (out["weights"] + out["C held"] + out["editor state"] + out["weight copies"]
                   + max(out["solve"], out["activations"]))
    return out


def fmt(n: float) -> str:
    if n == 0:
        return "0"
    if n >= 2**30:
        return f"{n / 2**30:.2f} GiB"
    if n >= 2**20:
        return f"{n / 2**20:.0f} MiB" if n >= 100 * 2**20 else f"{n / 2**20:.1f} MiB"
    return f"{n / 2**10:.1f} KiB"


def gpt2_xl_table(tokens_per_row: int) -> None:
    s = GPT2_XL
    print("## Memory per method at GPT-2 XL size, estimated from tensor sizes (no GPU measurement)\n")
    print(f"{s.params / 1e9:.3f} B parameters (48 layers, d = 1600, m = 6400, vocabulary 50,257): weights "
          f"{fmt(s.params * FP32)} in fp32, {fmt(s.params * BF16)} in bf16/fp16. One edited matrix d × m: "
          f"{fmt(s.d * s.m * FP32)} fp32. C of one layer (m × m): {fmt(s.m ** 2 * F64)} float64, "
          f"{fmt(s.m ** 2 * FP32)} float32. Activations assume {tokens_per_row} tokens a row.\n")
    print("| method (config) | layers | batch | C held | statistics pass (f64 / f32 sums) | editor state | "
          "weight copies / step | solve (f64) | activations fp32 / bf16 | run state | peak fp32 / bf16 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, name in GPT2_XL_CONFIGS.items():
        plan = plan_from_config(label, "gpt2-xl", name, s)
        e32, e16 = estimate(plan, s, FP32, tokens_per_row), estimate(plan, s, BF16, tokens_per_row)
        f32_stats = estimate(Plan(**{**plan.__dict__, "stats_dtype": FP32 if plan.stats_dtype else None}), s, FP32,
                             tokens_per_row)["statistics pass"]
        f64_stats = estimate(Plan(**{**plan.__dict__, "stats_dtype": F64 if plan.stats_dtype else None}), s, FP32,
                             tokens_per_row)["statistics pass"]
        bound = "≤ " if plan.kind == "kn" else ""   # the changed matrices among all edited layers
        layers = (f"{plan.layers[0]}–{plan.layers[-1]}" if len(plan.layers) > 3 else
                  ", ".join(map(str, plan.layers)))
        print(f"| {label} (`gpt2-xl/{name}`) | {layers} | {plan.batch}{' (rollback)' if plan.rollback else ''} | "
              f"{fmt(e32['C held'])} | {fmt(f64_stats)} / {fmt(f32_stats)} | {fmt(e32['editor state'])}"
              f"{' / ' + fmt(e16['editor state']) if e16['editor state'] != e32['editor state'] else ''} | "
              f"{fmt(e32['weight copies'])} / {fmt(e16['weight copies'])} | {fmt(e32['solve'])} | "
              f"{fmt(e32['activations'])} / {fmt(e16['activations'])} | {bound}{fmt(e32['run state'])} / "
              f"{bound}{fmt(e16['run state'])} | **{fmt(e32['peak'])}** / **{fmt(e16['peak'])}** |")
    plan = plan_from_config("MEMIT", "gpt2-xl", "memit", s)
    per_request = estimate(Plan(**{**plan.__dict__, "batch": 1}), s, FP32, tokens_per_row)["activations"]
    print(f"\nROME optimises one request at a time; the MEMIT family runs the requests of a step in one padded batch "
          f"(or passes of `values.requests_per_pass`: AlphaEdit's configs use 10), "
          f"{plan.templates + 1} rows each: {fmt(per_request)} of activations per request in fp32 (δ at layer 17), "
          f"half in bf16 (the batch-sequential mode's 10 requests: {fmt(10 * per_request)}). Every DDP rank "
          "holds all of the above (each rank makes every edit); ranks share only the statistics pass and the "
          "evaluation. Weight copies and solve temporaries are counted from the code; the other columns are "
          "checked against measured tensors below.")


# ------------------------------------------------------------------------------------ validation (fact world)


def _tensor_bytes(obj, params: set[int], seen: set[int] | None = None, depth: int = 0) -> int:
    """Bytes of the distinct tensor storages reachable from ``obj`` (dicts, lists, plain objects; not modules,
    not the model's parameters)."""
    import torch

    seen = set() if seen is None else seen
    if depth > 6 or isinstance(obj, (torch.nn.Module, str, bytes, int, float, type(None))):
        return 0
    if isinstance(obj, torch.Tensor):
        storage = obj.untyped_storage()
        if storage.data_ptr() in seen or storage.data_ptr() in params:
            return 0
        seen.add(storage.data_ptr())
        return storage.nbytes()
    if isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, (list, tuple, set)):
        items = list(obj)
    elif hasattr(obj, "__dict__"):
        items = list(vars(obj).values())
    else:
        return 0
    return sum(_tensor_bytes(item, params, seen, depth + 1) for item in items)


def _saved_activation_bytes(model, tokenizer, arch, plan: Plan, editor, requests) -> tuple[int, int, int]:
    """Autograd's saved tensors (distinct storages, parameters excluded) of one value-optimisation forward, and
    the number of token positions it ran (rows × padded width) and the padded width."""
    import torch

    from lit_edit.editing.values import ValueHyperparams, ValueTarget, optimize_values

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    shapes = []
    handle = model.register_forward_pre_hook(lambda mod, args, kwargs: shapes.append(kwargs["input_ids"].shape),
                                             with_kwargs=True)
    if plan.kind == "rome":
        module, templates = arch.ffn_at(plan.layers[0]), editor.context_templates
    else:
        module, templates = arch.layer(max(plan.layers)), [t for g in editor.template_groups for t in g]
    targets = [ValueTarget(r.prompt, r.subject, r.target_new) for r in requests]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            optimize_values(model, tokenizer, module, targets, ValueHyperparams(steps=1), templates)  # 1 forward
    finally:
        handle.remove()
    return sum(saved.values()), shapes[0][0] * shapes[0][1], shapes[0][1]


def validate(tokens_per_row: int) -> None:
    """Run the estimator at the fact-world model's size and compare with tensors measured there."""
    import tempfile

    import torch
    from safetensors import safe_open

    from lit_edit.cli import LitEditCLI
    from lit_edit.editors.base import EditContext, snapshot
    from lit_edit.export import changed_parameters

    shape = Shape.from_hf(ROOT / "checkpoints/factworld-gpt2")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("rome", "memit", "d4s", "comeba", "alphaedit"):
            configs = [arg for path in config_files("factworld", method) for arg in ("--config", str(path))]
            cli = LitEditCLI(args=[*configs, "--trainer.logger", "false", "--trainer.default_root_dir", tmp,
                                   "--model.init_args.editor.init_args.values.steps", "2"], run=False)
            module, data = cli.model, cli.datamodule
            data.setup("test")
            plan = plan_from_config(method, "factworld", method, shape)
            requests = data.requests[:plan.batch]
            editor, model, arch = module.editor, module.model, module.arch
            torch.manual_seed(0)
            editor.setup(model, module.tokenizer, arch, EditContext(str(module.hparams.name_or_path),
                                                                     module.statistics, progress=False))
            before = snapshot(model, editor.parameter_names(model, arch))
            editor.edit(model, module.tokenizer, arch, requests)
            params = {p.untyped_storage().data_ptr() for p in model.parameters()}
            null_space = sum(b.shape[1] for b in editor._bases.values()) if method == "alphaedit" else None
            est = estimate(plan, shape, FP32, tokens_per_row, null_space)
            held = _tensor_bytes({k: v for k, v in vars(editor).items() if k != "bank"}, params)
            if getattr(editor, "bank", None) is not None:
                held += _tensor_bytes([h.delta for h in editor.bank.layers.values()], params)
            state = _tensor_bytes(editor.state_dict(), params)
            weights = sum(t.numel() * t.element_size() for t in
                          changed_parameters(model, editor.parameter_names(model, arch), before).values())
            label = plan.kind + (f" (U: m × r, Σr = {null_space} measured)" if null_space else "")
            rows.append((f"{label}: editor-held tensors after one edit (C + state)",
                         est["C held"] + est["editor state"], held))
            if est["run editor"] or state:
                rows.append((f"{plan.kind}: editor.state_dict() (run state)", est["run editor"], state))
            rows.append((f"{plan.kind}: changed weights (run state)", est["run weights"], weights))
            if method in ("rome", "memit"):
                measured, positions, width = _saved_activation_bytes(model, module.tokenizer, arch, plan, editor,
                                                                     requests)
                after = shape.n_layers - 1 - max(plan.layers)
                predicted = positions * (after * (4 * shape.m + 8 * shape.d + width) + shape.d) * FP32
                rows.append((f"{plan.kind}: saved activations, one value step ({positions} positions, {after} "
                             "layers after)", predicted, measured))
            del cli, module, editor, model
    mend_plan = plan_from_config("mend", "factworld", "mend", shape)
    with safe_open(str(ROOT / mend_plan.args["checkpoint"] / "mend.safetensors"), framework="pt") as f:
        mend_bytes = sum(f.get_tensor(k).numel() * f.get_tensor(k).element_size() for k in f.keys())
    rows.append(("mend: network tensors (checkpoint)", mend_network_bytes(mend_plan, shape), mend_bytes))
    from lit_edit.models import load_model

    model = load_model(str(ROOT / "checkpoints/factworld-gpt2"), "float32")
    rows.append(("model weights fp32", shape.params * FP32, sum(p.numel() * p.element_size()
                                                               for p in model.parameters())))
    from lit_edit.stats import load_moment

    moment, _ = load_moment(next((ROOT / "checkpoints/stats").rglob("layer0_float64.safetensors")))
    rows.append(("C of one layer, float64 sums (cache file)", shape.m ** 2 * F64,
                 moment.sum_kkt.numel() * moment.sum_kkt.element_size()))
    print(f"\n## Validation at the fact-world model's size ({shape.n_layers} layers, d = {shape.d}, m = {shape.m}, "
          f"vocabulary {shape.vocab}; configs/edit/methods/factworld/*.yaml, fp32)\n")
    print("| quantity | estimated | measured | measured / estimated |")
    print("|---|---|---|---|")
    for name, predicted, measured in rows:
        ratio = f"{measured / predicted:.3f}" if predicted else ("–" if not measured else "∞")
        print(f"| {name} | {predicted:,} B | {measured:,} B | {ratio} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens-per-row", type=int, default=32, help="assumed tokens of a value-optimisation row")
    parser.add_argument("--no-validate", action="store_true", help="skip the comparison at the fact-world size")
    args = parser.parse_args()
    gpt2_xl_table(args.tokens_per_row)
    if not args.no_validate:
        validate(args.tokens_per_row)


if __name__ == "__main__":
    main()
