"""AlexNet's workload and the ReLU input masks of one random image (seed 0) through the dense model.

What the sparse-AlexNet benchmarks (``bench_alexnet_sparse.py``, ``bench_nm.py``) simulate:
the first layer's input is dense, every later one has the ReLU zeros of a real activation.
"""

from __future__ import annotations

import warnings

import torch

from energysim.sparsity import Sparsity
from energysim.workload import Workload, extract_workload
from energysim.zoo import build_model


def alexnet_with_activations() -> tuple[Workload, Sparsity]:
    """AlexNet's workload and the input masks of one random image."""
    torch.manual_seed(0)
    model, shape = build_model("alexnet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        workload = extract_workload(model, shape)
    return workload, Sparsity.from_activations(model, workload, torch.randn(1, *shape))
