"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: lenet5 steps are tiny, and on a busy machine two threads are several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def lenet5():
    """The lenet5 workload (built once per test session; its unmodelled ReLU/pool warning silenced)."""
    import warnings

    from energysim import build_model, extract_workload

    model, shape = build_model("lenet5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return extract_workload(model, shape, name="lenet5")
