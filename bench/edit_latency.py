"""Edit latency per request on the shipped fact-world model: MEND (one backward pass and the editor network)
vs ROME and MEMIT (value optimisation and a solve), each in single mode (every edit from the unedited model); and
ROME with C factorised once per run (the editor's cache) vs ROME factorising C again for every request, whole
edits and the u = C⁻¹k̄ step alone (at the model's key size and, with ``--key-size``, on a random C of that size).

Every method edits the same requests; statistics and context templates are prepared before the clock starts
(setup is reported apart), the weights are restored after each edit outside the timed region.
    python bench/edit_latency.py [--requests 20] [--device cuda] [--key-size 6400]

With ``--easyedit PATH`` (a checkout of zjunlp/EasyEdit; not a dependency, imported from there at run time) it times
instead lit-edit's ROME (one request at a time) and MEMIT (one batch of all requests), as
``configs/edit/methods/factworld/{rome,memit}.yaml`` set them, against EasyEdit's, on the same requests,
hyperparameters, context templates and C, the two sides alternating, and checks that they compute the same
ΔW (``bench/easyedit_comparison.py``); ``--profile`` adds where each side spends an edit.
    OMP_NUM_THREADS=1 python bench/edit_latency.py --requests 10 --easyedit ../EasyEdit [--profile]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time

import torch

from lit_edit.editing import read_zsre
from lit_edit.editing.rank_one import rome_direction
from lit_edit.editing.solver import PreparedMoment
from lit_edit.editing.values import ValueHyperparams
from lit_edit.editors import MEMIT, MEND, ROME
from lit_edit.editors.base import EditContext, snapshot
from lit_edit.models import architecture_of, load_model_and_tokenizer
from lit_edit.stats import StatisticsConfig


def editors() -> dict:
    """The fact-world configs' settings (configs/edit/methods/factworld/{mend,rome,memit}.yaml)."""
    values = dict(lr=0.5, kl_factor=0.0625, weight_decay=0.5, clamp_norm_factor=4.0)
    return {"mend": MEND(checkpoint="checkpoints/mend-factworld-gpt2"),
            "rome": ROME(layer=0, values=ValueHyperparams(steps=40, **values)),
            "rome-refactor": ROME(layer=0, values=ValueHyperparams(steps=40, **values)),
            "memit": MEMIT(layers=(0, 1), preservation_weight=300, values=ValueHyperparams(steps=25, **values))}


def direction_seconds(moment: PreparedMoment, solver, sync, repeats: int = 5) -> tuple[float, float]:
    """Seconds of ROME's u = C⁻¹k̄ for one request: factorising C first (no cache) and with the cached factorisation."""
    k = torch.randn(moment.matrix.shape[0], dtype=torch.float64, device=moment.matrix.device)
    fresh, cached = [], []
    for _ in range(repeats):
        moment.forget_factorisations()
        for times in (fresh, cached):
            sync()
            start = time.perf_counter()
            rome_direction(k, moment, solver)
            sync()
            times.append(time.perf_counter() - start)
    return min(fresh), min(cached)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="checkpoints/factworld-gpt2")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--key-size", type=int, default=0, help="also time u = C⁻¹k̄ on a random C of this size")
    parser.add_argument("--easyedit", metavar="PATH", help="compare ROME and MEMIT with EasyEdit's, imported from PATH")
    parser.add_argument("--easyedit-python", metavar="PYTHON",
                        help="the interpreter that runs EasyEdit's side (default: this one)")
    parser.add_argument("--memit-repeats", type=int, default=3, help="with --easyedit: MEMIT batches timed per side")
    parser.add_argument("--profile", action="store_true", help="with --easyedit: also profile both sides (cProfile)")
    args = parser.parse_args()
    if args.easyedit:
        from easyedit_worker import easyedit_folder_problem

        problem = easyedit_folder_problem(args.easyedit)
        if args.easyedit_python and not shutil.which(args.easyedit_python):
            problem = f"--easyedit-python {args.easyedit_python!r}: no such interpreter; give the path of a python"
        if args.memit_repeats < 1:
            problem = f"--memit-repeats must be >= 1, got {args.memit_repeats}"
        if args.device != "cpu":
            problem = f"--easyedit compares both sides on one CPU thread; drop --device {args.device}"
        if problem:
            parser.error(problem)
        torch.set_num_threads(1)      # both sides on one thread (the worker takes this process's count)
    torch.manual_seed(0)
    model, tokenizer = load_model_and_tokenizer(args.model, device=args.device)
    model.requires_grad_(False)
    sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)
    arch = architecture_of(model)
    requests = read_zsre("data/factworld/zsre/zsre_factworld.json").requests[: args.requests]
    context = EditContext(args.model, StatisticsConfig(corpus="data/factworld/corpus/train.jsonl",
                                                       cache_dir="checkpoints/stats", max_tokens=100000), progress=False)
    print(f"model {args.model}, {len(requests)} requests one at a time, "
          f"{torch.cuda.get_device_name(model.device) if model.device.type == 'cuda' else f'{torch.get_num_threads()} threads'}")
    if args.easyedit:
        from easyedit_comparison import compare, configured_editor

        rome, memit = (configured_editor(f"configs/edit/methods/factworld/{name}.yaml") for name in ("rome", "memit"))
        compare(model, tokenizer, arch, requests, context, rome, memit, args.easyedit,
                args.easyedit_python or sys.executable, args.memit_repeats, args.profile)
        return
    timings, rome_moment = {}, None
    for name, editor in editors().items():
        start = time.perf_counter()
        editor.setup(model, tokenizer, arch, context)
        setup = time.perf_counter() - start
        originals = snapshot(model, editor.parameter_names(model, arch))
        editor.edit(model, tokenizer, arch, requests[:1])                    # warm-up
        per_edit = []
        for request in requests:
            for key, value in originals.items():
                model.get_parameter(key).data.copy_(value)
            sync()
            start = time.perf_counter()
            if name == "rome-refactor":      # C factorised again for this request, as without the editor's cache
                editor.second_moment.forget_factorisations()
            editor.edit(model, tokenizer, arch, [request])
            sync()
            per_edit.append(time.perf_counter() - start)
        for key, value in originals.items():
            model.get_parameter(key).data.copy_(value)
        timings[name] = sum(per_edit) / len(per_edit)
        if name == "rome":
            rome_moment = (editor.second_moment, editor.hp.solver)
        print(f"  {name:13s} {1000 * timings[name]:9.1f} ms per edit   (setup {setup:.2f} s)")
    for name in ("rome", "memit"):
        print(f"  {name} / mend  {timings[name] / timings['mend']:8.1f} x")
    print(f"  rome-refactor / rome (C factorised per request / once per run)  "
          f"{timings['rome-refactor'] / timings['rome']:6.3f} x")
    moments = [rome_moment]
    if args.key_size:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(args.key_size, 2 * args.key_size, generator=g, dtype=torch.float64)
        moments.append((PreparedMoment((x @ x.T / x.shape[1]).to(args.device), "random C"), rome_moment[1]))
    for moment, solver in moments:
        fresh, cached = direction_seconds(moment, solver, sync)
        print(f"  u = C⁻¹k̄ at m = {moment.matrix.shape[0]}: {1000 * fresh:9.2f} ms factorising C per request, "
              f"{1000 * cached:7.2f} ms cached  ({fresh / cached:.0f} x)")


if __name__ == "__main__":
    main()
