"""The training config as one declarative table (issue 12 item 3): every field validated, every
problem reported at once, in the profile schema's constraint vocabulary."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compress.config import FIELDS, TrainConfig as ConfigTrainConfig
from compress.train import TrainConfig
from energysim.spec.schema import Field

_GOOD = dict(model="lenet5", dataset="digits", profile="eyeriss-iclr19", out="run", budget=0.5)

# A wrong value for every field (each must give its own line).
_WRONG = dict(
    model="", dataset="nope", profile=3, out=None, budget=1.5, budget_abs=-1.0,
    latency_budget=1.5, latency_budget_abs=-1.0, latency_budget_ms=0, overrides=("a=1", 2),
    estimator="spice", method="random", structure="channel", input_mask=1, epochs=2.0, pretrain_epochs=-1, mask_epochs="3",
    max_rounds=0, mask_keep=0, mask_keep_step=1, finetune_epochs=-1, lr=float("nan"), momentum=1.0,
    weight_decay=-1, mask_lr=0, batch_size=True, proj_interval=0, seed=None, checkpoint=3, distill="yes",
    regrow=None, data_root=1, input_shape=(0,), strict=0, device="gpu0", amp="no", workers=-1, quiet="q",
)


def test_the_table_has_every_field_of_the_config_in_order():
    assert ConfigTrainConfig is TrainConfig  # compress.train re-exports it
    assert list(FIELDS) == [f.name for f in dataclasses.fields(TrainConfig)]
    assert set(_WRONG) == set(FIELDS)
    assert all(isinstance(spec, Field) for spec in FIELDS.values())


def test_every_problem_is_reported_at_once():
    with pytest.raises(ValueError) as info:
        TrainConfig(**_WRONG)
    header, *lines = str(info.value).splitlines()
    assert header == "invalid training configuration:"
    assert [line.split(" must be ")[0] for line in lines[:-2]] == list(FIELDS)  # one line per field, table order
    assert lines[-2].startswith("exactly one of budget and budget_abs must be given (or neither, with a latency "
                                "budget), got budget=1.5")
    assert lines[-1].startswith("at most one of latency_budget, latency_budget_abs and latency_budget_ms")
    for line in lines[:-2]:
        name = line.split(" ")[0]
        assert line.endswith(f", got {_WRONG[name]!r}"), line
    for fragment in ("epochs must be an int >= 1, got 2.0", "momentum must be a number in [0, 1), got 1.0",
                     "mask_keep must be a number in (0, 1], got 0", "input_shape must be None or a tuple of positive ints, got (0,)",
                     "overrides must be a tuple of 'KEY=VALUE' strings, got ('a=1', 2)",
                     "checkpoint must be None or a string, got 3", "budget must be a relative energy in (0, 1]",
                     "device must be one of cpu, cuda, auto or a torch device such as 'cuda:0', got 'gpu0'",
                     "estimator must be one of paper, systolic"):
        assert any(line.startswith(fragment) for line in lines), fragment


def test_a_string_is_not_a_sequence_of_overrides():
    with pytest.raises(ValueError, match="overrides must be a tuple of 'KEY=VALUE' strings, got 'a=1'"):
        TrainConfig(**_GOOD, overrides="a=1")  # was read as the overrides 'a', '=', '1'
    with pytest.raises(ValueError, match="input_shape must be None or a tuple of positive ints, got False"):
        TrainConfig(**_GOOD, input_shape=False)  # was a TypeError naming no field
    assert TrainConfig(**_GOOD, overrides=["a=1"], input_shape=[1, 8, 8]).overrides == ("a=1",)


def test_numpy_numbers_are_numbers_and_non_finite_ones_are_not():
    config = TrainConfig(**_GOOD, epochs=np.int64(2), lr=np.float32(0.1), input_shape=[np.int64(64)])
    assert config.input_shape == (64,)
    for value in (np.float32("inf"), np.float32("nan"), float("inf")):
        with pytest.raises(ValueError, match="lr must be a number > 0"):
            TrainConfig(**_GOOD, lr=value)


def test_field_extensions_keep_the_profile_meaning():
    momentum = Field("float", minimum=0, below=1)
    assert [momentum.check(v) is None for v in (0, 0.5, 1, 1.0, math.inf, math.nan)] == [
        True, True, False, False, False, False]
    assert momentum.check(1.0) == "a number >= 0 and < 1"
    assert Field("int", minimum=0).check(2.0) is None  # a profile's YAML 2.0 is an int ...
    assert Field("int", minimum=0, strict=True).check(2.0) == "an integer >= 0"  # ... a strict field's is not
    assert Field("int", positive=True).check(np.int64(3)) is None
    strings = Field("tuple", items=Field("str"))
    assert strings.check(("a", "b")) is None and strings.check(("a", 1)) is not None and strings.check(["a"])
    even = Field("int", test=lambda v: v % 2 == 0, expected="an even integer")
    assert even.check(4) is None and even.check(3) == "an even integer" and even.check("4") == "an even integer"


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "x", "digits", "ecc", "paper", "cpu", "auto", "cuda:0", "cuda:x", "lenet5"]),
    st.tuples(st.integers(-1, 4)), st.tuples(st.text(max_size=3)), st.lists(st.integers(1, 3), max_size=2),
)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_random_configs_are_valid_or_one_line_per_problem(data):
    names = data.draw(st.lists(st.sampled_from(list(FIELDS)), max_size=6, unique=True))
    kwargs = _GOOD | {name: data.draw(_VALUES, label=name) for name in names}
    try:
        config = TrainConfig(**kwargs)
    except ValueError as exc:
        header, *lines = str(exc).splitlines()
        assert header == "invalid training configuration:" and lines
        for line in lines:
            assert (line.split(" ")[0] in FIELDS or line.startswith("exactly one of budget")
                    or line.startswith("at most one of latency_budget")), line
    else:
        assert all(FIELDS[f.name].check(getattr(config, f.name)) is None for f in dataclasses.fields(config))
