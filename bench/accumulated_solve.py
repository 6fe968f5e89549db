"""Per-step time of the accumulated least squares (D4S, COMEBA-HK): Woodbury-updated inverse vs a full solve.

One layer, random matrices: λC (m×m, positive definite), then S steps of N new keys K (m×N) and residuals R
(d×N). Each variant is timed over the same steps, side by side:

- D4S: S += RKᵀ, A += KKᵀ, then D = S A⁻¹ — by the recursive update (``incremental``) or a full solve;
- COMEBA-HK: the gain Kᵀ A_n⁻¹ and ΔW = R·gain — by the Woodbury update or a full solve of A_n.

It prints ms per step, the ratio, and the largest relative difference of the final results (they must agree).
Sizes: the fact-world model's keys (m = 768, d = 192) and GPT-2 XL's (m = 6400, d = 1600).
    python bench/accumulated_solve.py [--device cuda] [--steps 10] [--batch 10]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from lit_edit.editing.accumulated import AccumulatedKeys
from lit_edit.editing.d4s import D4sHyperparams, D4sLayerState


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(method: str, m: int, d: int, batch: int, steps: int, incremental: bool, device, seed: int = 0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(m, 2 * m, generator=g, dtype=torch.float64)
    second_moment = (x @ x.T / (2 * m)).to(device)
    inputs = [(torch.randn(m, batch, generator=g, dtype=torch.float64).to(device),
               torch.randn(d, batch, generator=g, dtype=torch.float64).to(device)) for _ in range(steps + 1)]
    if method == "d4s":
        state = D4sLayerState(second_moment, d, D4sHyperparams(preservation_weight=10.0, incremental=incremental,
                                                               refactor_every=10**9), "bench")
        state.add(inputs[0][1], inputs[0][0])                     # first step builds the inverse (not timed)
        _sync(device)
        started = time.perf_counter()
        for k, r in inputs[1:]:
            result = state.add(r, k)
        _sync(device)
    else:
        acc = AccumulatedKeys(10.0 * second_moment, incremental=incremental, refactor_every=10**9)
        weights = torch.zeros(d, m, dtype=torch.float64, device=device)
        acc.add(inputs[0][0])
        _sync(device)
        started = time.perf_counter()
        for k, r in inputs[1:]:
            weights += (r - weights @ k) @ acc.add(k)
        result = weights
        _sync(device)
    return (time.perf_counter() - started) / steps, result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--sizes", default="768x192,6400x1600", help="m x d pairs")
    args = parser.parse_args()
    device = torch.device(args.device)
    warnings.simplefilter("ignore")
    print(f"device {device}, {args.steps} timed steps of {args.batch} keys, float64")
    print(f"{'method':8} {'m':>6} {'d':>6} {'full solve ms':>14} {'incremental ms':>15} {'ratio':>7} {'max rel diff':>13}")
    for size in args.sizes.split(","):
        m, d = (int(v) for v in size.split("x"))
        for method in ("d4s", "comeba"):
            full_time, full = run(method, m, d, args.batch, args.steps, False, device)
            fast_time, fast = run(method, m, d, args.batch, args.steps, True, device)
            difference = float((fast - full).abs().max() / full.abs().max())
            print(f"{method:8} {m:6d} {d:6d} {1e3 * full_time:14.1f} {1e3 * fast_time:15.1f} "
                  f"{full_time / fast_time:7.1f} {difference:13.2e}")


if __name__ == "__main__":
    main()
