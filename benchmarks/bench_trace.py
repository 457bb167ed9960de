"""Benchmark (issue 16): tracing plus cycle-level simulation of a ViT-B/16-sized model.

ViT-B/16 (12 layers, width 768, 12 heads, MLP 3072, 197 tokens of a 3x224x224 image, built
by ``energysim.zoo.VisionTransformer``), a random 30 %-dense pattern on every weight (the
attention products stay dense: their operands are activations), on ``tpu-like-128``
(128x128 WS) at cycle level. Reported, each the best of ``--repeat`` runs in this process:

- one forward pass of one image in eval mode without autograd (the reference, what an
  inference costs), and the same with autograd (what the tracer runs);
- ``extract_workload`` (the tracing), as a ratio to the reference forward pass;
- the full cycle-level simulation of every layer, after compiling (or loading from numba's
  cache) every kernel on tiny layers first, reported separately.

Run: ``.venv/bin/python benchmarks/bench_trace.py [--repeat 3] [--profile tpu-like-128]``
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from energysim import Sparsity, load_profile
from energysim.estimators.systolic import estimate_layer
from energysim.workload import LayerSpec, Workload, extract_workload
from energysim.zoo import VisionTransformer


def _best(fn, repeat: int) -> float:
    """Best wall time of ``repeat`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", default="tpu-like-128")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = VisionTransformer(224, 16, 12, 12, 768, 3072, num_classes=1000, in_channels=3).eval()
    shape = (3, 224, 224)
    x = torch.randn(1, *shape)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def forward_grad() -> None:
        model(x.requires_grad_(True))

    def trace() -> Workload:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return extract_workload(model, shape, name="vit_b16")

    forward()  # warm-up (allocator, thread pool)
    reference = _best(forward, args.repeat)
    with_grad = _best(forward_grad, args.repeat)
    tracing = _best(trace, args.repeat)
    workload = trace()
    print(f"threads {torch.get_num_threads()}; {len(workload.layers)} GEMMs, {workload.macs:,} MACs")
    print(f"forward (eval, no grad) {reference:.3f} s; with autograd {with_grad:.3f} s")
    print(f"tracing {tracing:.3f} s = {tracing / reference:.3f} x the forward pass "
          f"({(tracing / reference - 1) * 100:+.1f} %; {(tracing / with_grad - 1) * 100:+.1f} % over the autograd one)")

    profile = load_profile(args.profile)
    sparsity = Sparsity.synthetic(workload, weight_density=0.3, seed=0)
    warm = (
        LayerSpec("c", "conv", (2, 5, 5), (3, 3, 3), 2, 3, (3, 3), (1, 1), (0, 0), (1, 1), 1, True),
        LayerSpec("l", "linear", (4, 6), (4, 3), 6, 3, (1, 1), (1, 1), (0, 0), (1, 1), 1, True),
        LayerSpec("m", "matmul", (2, 4, 6), (2, 4, 3), 6, 3, (1, 1), (1, 1), (0, 0), (1, 1), 2, False),
    )
    tiny = Sparsity.synthetic(Workload("warm", (2, 5, 5), warm), 0.5, 0.5)
    start = time.perf_counter()
    for layer in warm:
        for masks in (Sparsity()[layer.name], tiny[layer.name]):
            estimate_layer(layer, profile, masks)
    print(f"compile / numba cache load: {time.perf_counter() - start:.2f} s")

    def simulate_all() -> list:
        return [estimate_layer(layer, profile, sparsity[layer.name]) for layer in workload.layers]

    seconds = _best(simulate_all, args.repeat)
    reports = simulate_all()
    energy = sum(r.energy for r in reports)
    attention = sum(r.energy for r in reports if r.kind == "matmul")
    print(f"cycle-level simulation of all {len(reports)} layers on {profile.name}: {seconds:.3f} s; "
          f"energy {energy / 1e6:.1f} uJ ({attention / energy:.1%} in Q K^T and attention x V)")
    print(f"tracing + simulation: {tracing + seconds:.3f} s")


if __name__ == "__main__":
    main()
