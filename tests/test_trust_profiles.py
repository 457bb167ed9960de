"""Untrusted profile input: non-finite and out-of-range numbers, YAML oddities, name clashes, JSON output.

Every bad file or ``--set`` override must end in a :class:`SpecError` (a ``ValueError``)
with one line per problem naming the file, or in a valid profile; never another
exception, never a NaN or Infinity in JSON.
"""

from __future__ import annotations

import json
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compress.cli import main
from compress.cli._common import write_json
from energysim.spec import FIELDS, SpecError, dump_profile, load_profile, shipped_profile_path
from energysim.spec.schema import set_dotted
from test_profiles import VALID  # the minimal valid profile tree

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


VALID_TEXT = yaml.safe_dump(VALID, sort_keys=False)

NUMERIC = [path for path, field in FIELDS.items() if field.kind in ("int", "float")]
ENERGIES = [p for p in NUMERIC if p.rsplit(".", 1)[-1] in ("read", "write", "mac", "gated_mac")]


def _strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as every JSON parser but Python's does."""

    def refuse(token):
        raise AssertionError(f"JSON output holds {token}")

    return json.loads(text, parse_constant=refuse)


def _assert_clean(err: SpecError, where: str) -> None:
    """One line per problem, each naming the origin."""
    assert err.problems, "a SpecError without problems"
    for line in err.problems:
        assert "\n" not in line and "\r" not in line, line
        assert where in line, (where, line)
        assert len(line) < 2000, line[:200]
    assert str(err) == "\n".join(err.problems)


def _write(tmp_path, text, name="dumped.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _load_text(tmp_path, text: str, name: str = "fuzz.yaml"):
    return load_profile(_write(tmp_path, text, name))


def _text_with(path: str, text: str) -> str:
    """The valid profile as YAML with the value of ``path`` spelt ``text``."""
    tree = yaml.safe_load(VALID_TEXT)
    set_dotted(tree, path, "SENTINEL")
    return yaml.safe_dump(tree, sort_keys=False).replace("SENTINEL", text)


# The documented ranges, written out independently of the schema table.
_ENERGY = (0.0, 1e9)
RANGES = {
    "version": (1, 1),
    "word_bits": (1, 64),
    "clock_mhz": (1e-3, 1e6),
    "array.rows": (1, 2**16),
    "array.cols": (1, 2**16),
    "memory.rf.words": (1, 2**20),
    "memory.rf.read": _ENERGY,
    "memory.rf.write": _ENERGY,
    "memory.buffer.ifmap_words": (0, 2**40),
    "memory.buffer.filter_words": (0, 2**40),
    "memory.buffer.ofmap_words": (0, 2**40),
    "memory.buffer.shared_words": (1, 2**40),
    "memory.buffer.read": _ENERGY,
    "memory.buffer.write": _ENERGY,
    "memory.dram.bandwidth_words_per_cycle": (1e-3, 1e9),
    "memory.dram.read": _ENERGY,
    "memory.dram.write": _ENERGY,
    "compute.mac": _ENERGY,
    "compute.gated_mac": _ENERGY,
    "compute.nm_select": _ENERGY,
    "leakage_mw": _ENERGY,
    "sparsity.nm.n": (1, 15),
    "sparsity.nm.m": (2, 16),
}


def test_every_numeric_key_has_a_documented_range():
    assert sorted(RANGES) == sorted(NUMERIC)


def _assert_sane(profile) -> None:
    """A profile that loaded has finite numbers of the right type within the documented ranges."""
    flat = profile.to_flat()
    for path, (low, high) in RANGES.items():
        value = flat[path]
        if value is None:
            assert path.startswith(("memory.buffer.", "sparsity.nm.")), path
            continue
        assert type(value) is (int if isinstance(low, int) else float), (path, value)
        if path == "memory.dram.bandwidth_words_per_cycle" and value == math.inf:
            continue
        assert low <= value <= high, (path, value)
    assert profile.array.rows * profile.array.cols <= 2**24


# -- item 7: non-finite and out-of-range numbers -----------------------------------------------


@pytest.mark.parametrize("key", ENERGIES + ["leakage_mw", "clock_mhz"])
@pytest.mark.parametrize("text", [".inf", "-.inf", ".nan", "1.0e+400"])
def test_non_finite_energy_leakage_and_clock_are_rejected(tmp_path, key, text):
    with pytest.raises(SpecError) as err:
        _load_text(tmp_path, _text_with(key, text), "edge.yaml")
    _assert_clean(err.value, "edge.yaml")
    assert any(f"{key} must be a number" in line for line in err.value.problems), err.value.problems


def test_infinite_clock_no_longer_gives_zero_leakage():
    with pytest.raises(SpecError, match=r"clock_mhz must be a number from 0.001 to 1e\+06, got inf"):
        load_profile("edge-16x16", ["clock_mhz=.inf"])
    with pytest.raises(SpecError, match=r"leakage_mw must be a number from 0 to 1e\+09, got inf"):
        load_profile("edge-16x16", ["leakage_mw=.inf"])
    with pytest.raises(SpecError, match=r"compute.mac must be a number from 0 to 1e\+09, got inf"):
        load_profile("edge-16x16", ["compute.mac=.inf"])


def test_bandwidth_may_be_infinite_but_not_absurdly_small():
    unlimited = load_profile("edge-16x16", ["memory.dram.bandwidth_words_per_cycle=.inf"])
    assert math.isinf(unlimited.memory.dram.bandwidth_words_per_cycle)
    with pytest.raises(SpecError, match=r"bandwidth_words_per_cycle must be a number from 0.001 to 1e\+09, or \.inf"):
        load_profile("edge-16x16", ["memory.dram.bandwidth_words_per_cycle=1.0e-300"])


def test_rows_1e30_is_a_number_out_of_range(tmp_path):
    path = tmp_path / "edge.yaml"
    path.write_text(VALID_TEXT.replace("rows: 16", "rows: 1e30"))
    with pytest.raises(SpecError) as err:
        load_profile(path)
    assert err.value.problems == [f"{path}: array.rows must be an integer from 1 to 65536, got 1e+30"]


@pytest.mark.parametrize(
    "key, value",
    [
        ("array.rows", "1.0e+20"),
        ("array.cols", "100000000000000000000"),
        ("word_bits", "65"),
        ("memory.rf.words", "1e30"),
        ("memory.buffer.ifmap_words", "1.0e+20"),
        ("memory.buffer.filter_words", str(2**63)),
        ("memory.buffer.ofmap_words", str(2**41)),
    ],
)
def test_every_integer_key_has_an_upper_bound(key, value):
    with pytest.raises(SpecError) as err:
        load_profile("edge-16x16", [f"{key}={value}"])
    _assert_clean(err.value, "edge-16x16.yaml (with --set overrides)")
    assert len(err.value.problems) == 1 and f"{key} must be an integer from " in err.value.problems[0]


def test_shared_buffer_has_an_upper_bound():
    expected = r"shared_words must be an integer from 1 to 1099511627776 \(or null\), got 1e\+20"
    with pytest.raises(SpecError, match=expected):
        load_profile("tpu-like-128", ["memory.buffer.shared_words=1e20"])


def test_array_of_too_many_pes_is_one_error_naming_both_keys(capsys):
    # 46341 x 46341 PEs overflowed the int32 per-cycle PE counts of the cycle trace.
    with pytest.raises(SpecError) as err:
        load_profile("edge-16x16", ["array.rows=46341", "array.cols=46341"])
    assert err.value.problems == [
        "edge-16x16.yaml (with --set overrides): array.rows x array.cols must be at most 16777216 PEs, "
        "got 46341 x 46341 = 2147488281"
    ]
    argv = ["simulate", "--model", "lenet5", "--profile", "edge-16x16"]
    argv += ["--set", "array.rows=46341", "--set", "array.cols=46341"]
    assert main(argv) == 2
    err_text = capsys.readouterr().err
    assert err_text.count("\n") == 1 and "edge-16x16.yaml" in err_text and "array.rows x array.cols" in err_text


def test_largest_documented_array_loads():
    profile = load_profile("edge-16x16", ["array.rows=4096", "array.cols=4096"])
    assert (profile.array.rows, profile.array.cols) == (4096, 4096)
    assert load_profile("edge-16x16", ["array.rows=1", "array.cols=65536"]).array.cols == 65536


def test_huge_integer_in_a_file_names_the_file(tmp_path):
    with pytest.raises(SpecError) as err:
        _load_text(tmp_path, VALID_TEXT.replace("rows: 16", "rows: " + "9" * 5000), "edge.yaml")
    _assert_clean(err.value, "edge.yaml")


def test_huge_integer_override_is_out_of_range():
    with pytest.raises(SpecError) as err:
        load_profile("edge-16x16", {"array.rows": 10**5000, "clock_mhz": 10**400})
    _assert_clean(err.value, "edge-16x16.yaml (with --set overrides)")
    assert len(err.value.problems) == 2
    text = str(err.value)
    assert "array.rows must be an integer from 1 to 65536, got an integer of 5001 digits" in text
    assert "clock_mhz must be a number from 0.001 to 1e+06, got an integer of 401 digits" in text


# -- item 7: YAML oddities -------------------------------------------------------------------


def test_duplicate_keys_are_an_error(tmp_path):
    text = VALID_TEXT.replace("  rows: 16\n", "  rows: 16\n  rows: 32\n")
    line = text.splitlines().index("  rows: 32") + 1
    with pytest.raises(SpecError) as err:
        _load_text(tmp_path, text, "edge.yaml")
    _assert_clean(err.value, "edge.yaml")
    assert f"not valid YAML at line {line}, column 3: found duplicate key 'rows'" in str(err.value)


def test_duplicate_top_level_and_flow_keys_are_an_error(tmp_path):
    with pytest.raises(SpecError, match="duplicate key 'name'"):
        _load_text(tmp_path, VALID_TEXT + "name: other\n")
    with pytest.raises(SpecError, match="duplicate key 'rows'"):
        _load_text(tmp_path, VALID_TEXT.replace("array:\n", "array: {rows: 1, rows: 2}\nx:\n"))


def test_merge_keys_are_not_duplicates(tmp_path):
    text = VALID_TEXT.replace("array:\n", "base: &b {rows: 4, cols: 4, dataflow: os}\narray:\n  <<: *b\n")
    # 'base' is an unknown key; the merge itself must not count as a duplicate.
    with pytest.raises(SpecError) as err:
        _load_text(tmp_path, text)
    assert [p.split(": ", 1)[1].split(";")[0] for p in err.value.problems] == ["unknown key 'base'"]


def test_deep_nesting_is_a_clean_error(tmp_path):
    for text in ("array: " + "[" * 5000, "array:\n" + "".join("  " * i + "- \n" for i in range(2000))):
        with pytest.raises(SpecError) as err:
            _load_text(tmp_path, text, "deep.yaml")
        _assert_clean(err.value, "deep.yaml")
        assert "nested deeper than 20 levels" in str(err.value)


def test_bad_timestamp_is_a_clean_error(tmp_path):
    with pytest.raises(SpecError) as err:
        _load_text(tmp_path, VALID_TEXT.replace("name: edge", "name: 2020-13-45"), "edge.yaml")
    _assert_clean(err.value, "edge.yaml")


def test_name_must_be_one_printable_line():
    # The name goes into error lines (`NAME (with overrides): ...`), which must stay one line.
    for name in ("a\nb", "", "  ", "a\x1b[2Jb", "a\u2028b"):
        with pytest.raises(SpecError, match="name must be a non-empty single line of printable characters, got "):
            load_profile("edge-16x16", {"name": name})
    assert load_profile("edge-16x16", {"name": "chip-a (v2), 45 nm"}).name == "chip-a (v2), 45 nm"


def test_number_like_strings_round_trip_through_dump(tmp_path):
    profile = load_profile("edge-16x16", {"name": "1e30", "description": "1e5", "source": "2e-3"})
    again = load_profile(_write(tmp_path, dump_profile(profile)))
    assert again == profile


def test_unreadably_long_path_is_a_spec_error():
    with pytest.raises(SpecError, match="cannot be read: File name too long"):
        load_profile("x" * 5000)


# -- item 7: a local file named like a shipped profile -----------------------------------------


def test_local_file_named_like_a_shipped_profile_is_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "edge-16x16").write_text(VALID_TEXT)
    with pytest.raises(SpecError) as err:
        load_profile("edge-16x16")
    (line,) = err.value.problems
    assert "both the shipped profile" in line and "./edge-16x16" in line
    assert str(shipped_profile_path("edge-16x16")) in line
    # Each spelling the message offers picks one of the two.
    assert load_profile("./edge-16x16").name == "edge"
    assert load_profile(str(shipped_profile_path("edge-16x16"))).name == "edge-16x16"
    # Listing the shipped profiles is not affected by files in the working directory.
    assert main(["profiles"]) == 0
    assert "edge-16x16" in capsys.readouterr().out


def test_directory_named_like_a_shipped_profile_is_no_clash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "edge-16x16").mkdir()
    assert load_profile("edge-16x16").name == "edge-16x16"


# -- item 10 (profiles) and JSON output --------------------------------------------------------


def test_profiles_json_without_a_value_writes_to_stdout(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["profiles", "--json"]) == 0
    listed = _strict_json(capsys.readouterr().out)
    assert [p["name"] for p in listed] == ["edge-16x16", "eyeriss-65nm", "eyeriss-iclr19", "nm-32x32", "tpu-like-128"]
    assert main(["profiles", "--show", "edge-16x16", "--json"]) == 0
    assert _strict_json(capsys.readouterr().out)["name"] == "edge-16x16"
    assert list(tmp_path.iterdir()) == []


def test_unlimited_bandwidth_is_null_in_json(capsys):
    argv = ["profiles", "--show", "edge-16x16", "--set", "memory.dram.bandwidth_words_per_cycle=.inf", "--json", "-"]
    assert main(argv) == 0
    shown = _strict_json(capsys.readouterr().out)
    assert shown["memory"]["dram"]["bandwidth_words_per_cycle"] is None


def test_write_json_never_writes_nan_or_infinity(tmp_path, capsys):
    write_json({"r2": math.nan, "rows": [1.5, math.inf, -math.inf], "ok": 2}, "-")
    assert _strict_json(capsys.readouterr().out) == {"r2": None, "rows": [1.5, None, None], "ok": 2}
    out = tmp_path / "sub" / "x.json"
    write_json([{"a": (math.nan,)}], str(out))
    assert _strict_json(out.read_text()) == [{"a": [None]}]


# -- fuzzing: random bytes, random YAML trees, random overrides --------------------------------

_HUGE_INTS = st.sampled_from([2**31, 2**63, -(2**63), 10**30, 10**400, 46341])
_FLOATS = st.one_of(st.floats(), st.sampled_from([math.inf, -math.inf, math.nan, 1e30, 1e-300, -0.0]))
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), _HUGE_INTS, _FLOATS, st.text(max_size=20)
)
_KEYS = st.one_of(
    st.sampled_from(sorted({part for path in FIELDS for part in path.split(".")})),
    st.text(max_size=8),
    st.integers(-3, 3),
)


def _render(node) -> str:
    """Flow-style YAML of ``node``; a mapping is a list of (key, value) pairs, so keys may repeat."""
    if isinstance(node, tuple) and node and node[0] == "map":
        return "{" + ", ".join(f"{_render(k)}: {_render(v)}" for k, v in node[1]) + "}"
    if isinstance(node, list):
        return "[" + ", ".join(_render(v) for v in node) + "]"
    if isinstance(node, int) and not isinstance(node, bool) and abs(node) > 10**300:
        return str(node)  # the dumper cannot write it, but a file can hold it
    return yaml.safe_dump(node, default_flow_style=True, width=math.inf).removesuffix("\n...\n").strip()


_TREES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(st.tuples(_KEYS, children), max_size=6).map(lambda pairs: ("map", pairs)),
    ),
    max_leaves=25,
)


def _check_load(path, where: str) -> None:
    try:
        profile = load_profile(path)
    except SpecError as err:
        _assert_clean(err, where)
    else:
        _assert_sane(profile)
        assert load_profile(_write(path.parent, dump_profile(profile), "again.yaml")) == profile


@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzz_random_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("bytes") / "fuzz.yaml"
    path.write_bytes(data)
    _check_load(path, str(path))


@FUZZ
@given(tree=_TREES)
def test_fuzz_random_yaml_structures(tmp_path_factory, tree):
    path = tmp_path_factory.mktemp("tree") / "fuzz.yaml"
    path.write_text(_render(tree), encoding="utf-8")
    _check_load(path, str(path))


@FUZZ
@given(
    edits=st.lists(st.tuples(st.sampled_from(list(FIELDS)), st.one_of(_SCALARS, _TREES)), max_size=5),
    repeat=st.none() | st.integers(0, 11),
)
def test_fuzz_near_valid_profiles(tmp_path_factory, edits, repeat):
    """The valid profile with a few keys replaced and maybe one top-level key repeated."""
    tree = yaml.safe_load(VALID_TEXT)
    for path, value in edits:
        set_dotted(tree, path, value)

    def as_node(value):
        if isinstance(value, dict):
            return ("map", [(k, as_node(v)) for k, v in value.items()])
        return value

    root = as_node(tree)
    if repeat is not None:
        root[1].append(root[1][repeat % len(root[1])])
    path = tmp_path_factory.mktemp("near") / "fuzz.yaml"
    path.write_text(_render(root), encoding="utf-8")
    _check_load(path, str(path))


_OVERRIDE_VALUES = st.one_of(
    st.text(max_size=30),
    _SCALARS.map(_render),
    _TREES.map(_render),
    st.sampled_from(["1e30", "46341", "[", "*a", "!!python/object:os.system", "9" * 5000, "[" * 3000, ".inf", ".nan"]),
)


@FUZZ
@given(
    items=st.lists(
        st.tuples(st.one_of(st.sampled_from(list(FIELDS)), st.text(max_size=12)), _OVERRIDE_VALUES).map(
            lambda kv: f"{kv[0]}={kv[1]}"
        )
        | st.text(max_size=20),
        max_size=4,
    )
)
def test_fuzz_set_overrides(items):
    try:
        profile = load_profile("edge-16x16", items)
    except SpecError as err:
        for line in err.problems:
            assert "\n" not in line and "\r" not in line and len(line) < 2000, line[:200]
            assert line.startswith("--set ") or line.startswith("edge-16x16.yaml (with --set overrides): "), line[:200]
    else:
        _assert_sane(profile)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(items=st.lists(st.tuples(st.sampled_from(list(FIELDS)), _OVERRIDE_VALUES), max_size=3))
def test_fuzz_set_overrides_on_the_command_line(capsys, items):
    capsys.readouterr()  # the fixture is shared by every example
    argv = ["profiles", "--show", "edge-16x16", "--json", "-"]
    for key, value in items:
        argv += ["--set", f"{key}={value}"]
    status = main(argv)
    out, err = capsys.readouterr()
    assert status in (0, 2)
    assert "Traceback" not in err
    if status == 0:
        _strict_json(out)
    else:
        assert out == "" and err.startswith("ecc profiles: error: ")
