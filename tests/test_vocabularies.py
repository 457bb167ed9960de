"""Every vocabulary agrees between the profile schema, the registries and the CLI's choices.

A name is defined once (a registry), and the schema and every ``ecc`` option that takes
it must accept exactly that set: a dataflow, weight format, pattern, estimator, method
or structure added in one place and forgotten in another fails here. The CLI side is
read from the parser objects (``compress.cli.build_parser()``), never from source text.
"""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest

import compress.pruner as pruner
import compress.sweep as sweep
from compress.cli import build_parser
from energysim.dataflow import DATAFLOW_NAMES, get_dataflow
from energysim.estimators import ESTIMATORS, get_estimator
from energysim.model import WEIGHT_FORMATS, weight_words
from energysim.sparsity import PATTERNS, Sparsity
from energysim.spec import load_profile
from energysim.spec.schema import FIELDS
from energysim.workload import LayerSpec, Workload

CONV = LayerSpec("conv", "conv", (2, 5, 5), (3, 3, 3), 2, 3, (3, 3), (1, 1), (0, 0), (1, 1), 1, False)


def options() -> dict[str, dict[str, argparse.Action]]:
    """subcommand -> option string -> action, for every subcommand of ``ecc``."""
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {
        command: {option: action for action in subparser._actions for option in action.option_strings}
        for command, subparser in sub.choices.items()
    }


OPTIONS = options()


def occurrences(*names: str) -> list[tuple[str, argparse.Action]]:
    """(subcommand, action) of every option called one of ``names``."""
    return [(command, opts[name]) for command, opts in OPTIONS.items() for name in names if name in opts]


def named_in(text: str | None, name: str) -> bool:
    """Whether ``name`` appears in ``text`` as a whole name (``ecc`` is not named by ``ecc-mask``)."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text or "") is not None


def test_dataflows_schema_registry_and_cli():
    assert set(FIELDS["array.dataflow"].choices) == set(DATAFLOW_NAMES)
    for name in FIELDS["array.dataflow"].choices:
        assert get_dataflow(name).name == name
        assert load_profile("edge-16x16", [f"array.dataflow={name}"]).array.dataflow == name
    for command, action in occurrences("--dataflow"):
        assert set(action.choices) == set(DATAFLOW_NAMES), command


def test_weight_formats_schema_and_model():
    """Every format the schema accepts is one the model stores; the model refuses any other."""
    assert set(FIELDS["sparsity.weight_format"].choices) == set(WEIGHT_FORMATS)
    nnz, k, n = np.array([3]), np.array([4]), np.array([4])
    for fmt in FIELDS["sparsity.weight_format"].choices:
        assert weight_words(nnz, k, n, fmt, 8)[0] >= 3, fmt  # at least the nonzeros are stored
        profile = load_profile("edge-16x16", [f"sparsity.weight_format={fmt}"])
        assert get_estimator("systolic").estimate_layer(CONV, profile).energy > 0
    with pytest.raises(ValueError, match="weight_format must be one of"):
        weight_words(nnz, k, n, "coo", 8)
    for command, action in occurrences("--weight-format"):
        assert set(action.choices) == set(WEIGHT_FORMATS), command


def test_patterns_cli_and_sparsity():
    (only,) = occurrences("--pattern")
    command, action = only
    assert command == "simulate" and set(action.choices) == set(PATTERNS) and action.default in PATTERNS
    workload = Workload("w", CONV.input_shape, (CONV,))
    for pattern in action.choices:
        nm = (2, 4) if pattern == "nm" else None  # the N:M pattern needs its N:M
        mask = Sparsity.synthetic(workload, 0.5, 1.0, pattern, 0, nm=nm)["conv"].weight_mask
        assert mask.shape == CONV.weight_shape and 0 < mask.sum() < mask.size, pattern


def test_estimators_registry_and_every_subcommand():
    found = occurrences("--estimator")
    assert {"simulate", "coeffs", "calibrate", "train", "sweep"} <= {command for command, _ in found}
    for command, action in found:
        assert set(action.choices) == set(ESTIMATORS), command
        assert action.default is None or action.default in ESTIMATORS, command
    for name, estimator in ESTIMATORS.items():
        assert get_estimator(name) is estimator and estimator.name == name
    # The simulate help describes every estimator, from the registry.
    help_text = OPTIONS["simulate"]["--estimator"].help
    assert all(named_in(help_text, name) and estimator.summary in help_text for name, estimator in ESTIMATORS.items())


def test_methods_pruner_and_cli():
    # ecc sweep --methods: the variants (every pruner method, plus those with input masks).
    assert set(pruner.METHODS) <= set(sweep.METHODS)
    train, methods = OPTIONS["train"]["--method"], OPTIONS["sweep"]["--methods"]
    for action, vocabulary in ((train, pruner.METHODS), (methods, sweep.METHODS)):
        if action.choices is not None:
            assert set(action.choices) == set(vocabulary)
        else:
            assert all(named_in(action.help, name) for name in vocabulary), action.help
    assert train.default is None or train.default in pruner.METHODS
    assert all(name in sweep.METHODS for name in methods.default)
    # ecc plot --method picks a sweep variant.
    assert OPTIONS["plot"]["--method"].default in sweep.METHODS


def test_structures_pruner_and_cli():
    found = occurrences("--structure", "--structures")
    assert found
    for command, action in found:
        if action.choices is not None:
            assert set(action.choices) == set(pruner.STRUCTURES), command
        else:
            assert all(named_in(action.help, name) for name in pruner.STRUCTURES), (command, action.help)
        defaults = action.default if isinstance(action.default, (tuple, list)) else (action.default,)
        assert all(d is None or d in pruner.STRUCTURES for d in defaults), command
