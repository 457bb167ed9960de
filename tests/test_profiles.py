"""Hardware profiles: shipped files, round trip, overrides and every kind of bad input."""

import json
import subprocess
import sys

import pytest
import yaml

from energysim import SpecError, dump_profile, load_profile, shipped_profile_names
from compress.cli import main

SHIPPED = ["edge-16x16", "eyeriss-65nm", "eyeriss-iclr19", "nm-32x32", "tpu-like-128"]

VALID = {
    "version": 1,
    "name": "edge",
    "source": "test",
    "units": "pJ",
    "word_bits": 8,
    "clock_mhz": 500,
    "array": {"rows": 16, "cols": 16, "dataflow": "ws"},
    "memory": {
        "rf": {"words": 16, "read": 0.03, "write": 0.03},
        "buffer": {"ifmap_words": 65536, "filter_words": 65536, "ofmap_words": 32768, "read": 1.2, "write": 1.4},
        "dram": {"bandwidth_words_per_cycle": 16, "read": 64.0, "write": 64.0},
    },
    "compute": {"mac": 0.23, "gated_mac": 0.02},
}


def write(tmp_path, tree, name="edge.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree) if not isinstance(tree, str) else tree)
    return path


def test_shipped_profiles_are_the_five_documented():
    assert shipped_profile_names() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_loads_and_round_trips(name, tmp_path):
    profile = load_profile(name)
    assert profile.name == name
    assert profile.source.strip()
    again = load_profile(write(tmp_path, dump_profile(profile), f"{name}.yaml"))
    assert again == profile
    assert again.digest == profile.digest


def test_paper_profile_holds_the_paper_constants():
    p = load_profile("eyeriss-iclr19")
    assert (p.array.rows, p.array.cols) == (12, 14)
    assert p.units == "normalized" and p.word_bits == 16
    assert (p.compute.mac, p.memory.rf.read, p.memory.buffer.read, p.memory.dram.read) == (3, 1, 6, 200)
    assert (p.memory.buffer.ifmap_words, p.memory.buffer.filter_words) == (51200, 4096)


def test_defaults_are_filled(tmp_path):
    p = load_profile(write(tmp_path, VALID))
    assert p.leakage_mw == 0.0 and p.description == ""
    assert p.sparsity.weight_format == "dense" and p.sparsity.skip_zero_tiles is False


def test_overrides_are_validated_like_the_file():
    p = load_profile("eyeriss-iclr19", ["array.rows=32", "array.dataflow=os"])
    assert (p.array.rows, p.array.dataflow) == (32, "os")
    with pytest.raises(SpecError, match=r"array.dataflow must be one of 'ws', 'os', 'is', got 'xy'"):
        load_profile("eyeriss-iclr19", ["array.dataflow=xy"])
    with pytest.raises(SpecError, match=r"--set array.rowz: unknown key; known keys: .*array.rows"):
        load_profile("eyeriss-iclr19", ["array.rowz=3"])
    with pytest.raises(SpecError, match="expected KEY=VALUE"):
        load_profile("eyeriss-iclr19", ["array.rows"])


def test_unlimited_bandwidth_is_allowed():
    assert load_profile("edge-16x16", ["memory.dram.bandwidth_words_per_cycle=.inf"]).memory.dram.bandwidth_words_per_cycle == float("inf")


def test_every_problem_is_reported_at_once(tmp_path):
    tree = yaml.safe_load(yaml.safe_dump(VALID))
    tree["memory"]["dram"]["bandwidth_words_per_cycle"] = -4
    tree["array"]["rows"] = "many"
    tree["units"] = "joules"
    del tree["source"]
    with pytest.raises(SpecError) as err:
        load_profile(write(tmp_path, tree))
    problems = [p.rsplit("/", 1)[-1] for p in err.value.problems]
    assert "edge.yaml: memory.dram.bandwidth_words_per_cycle must be a number > 0, got -4" in problems
    assert "edge.yaml: array.rows must be an integer > 0, got 'many'" in problems
    assert "edge.yaml: units must be one of 'pJ', 'normalized', got 'joules'" in problems
    assert any(p.startswith("edge.yaml: source is required") for p in problems)
    assert len(problems) == 4


def test_unknown_keys_list_the_known_ones(tmp_path):
    tree = yaml.safe_load(yaml.safe_dump(VALID))
    tree["array"]["dataflwo"] = "ws"
    tree["colour"] = "red"
    with pytest.raises(SpecError) as err:
        load_profile(write(tmp_path, tree))
    text = str(err.value)
    assert "unknown key 'array.dataflwo'; known keys under array: cols, dataflow, preload_overlap, rows" in text
    assert "unknown key 'colour'; known keys: array," in text


def test_buffer_needs_shared_or_all_per_operand(tmp_path):
    tree = yaml.safe_load(yaml.safe_dump(VALID))
    del tree["memory"]["buffer"]["ofmap_words"]
    with pytest.raises(SpecError, match="missing ofmap_words"):
        load_profile(write(tmp_path, tree))
    tree["memory"]["buffer"]["shared_words"] = 1024
    with pytest.raises(SpecError, match="either shared_words or per-operand"):
        load_profile(write(tmp_path, tree))


def test_gated_mac_cannot_exceed_mac(tmp_path):
    tree = yaml.safe_load(yaml.safe_dump(VALID))
    tree["compute"]["gated_mac"] = 1.0
    with pytest.raises(SpecError, match=r"compute.gated_mac must be <= compute.mac \(0.23\), got 1"):
        load_profile(write(tmp_path, tree))


def test_wrong_version(tmp_path):
    with pytest.raises(SpecError, match="version must be 1, got 2"):
        load_profile(write(tmp_path, VALID | {"version": 2}))


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "file is empty"),
        ("array: [1, 2\n", "not valid YAML at line"),
        ("- 1\n- 2\n", "must be a YAML mapping"),
    ],
)
def test_bad_files_give_one_clear_line_and_exit_2(tmp_path, capsys, content, message):
    path = write(tmp_path, content)
    assert main(["profiles", "--show", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path.name) in err
    assert "Traceback" not in err


def test_missing_file_gives_exit_2(capsys):
    assert main(["profiles", "--show", "/nonexistent/edge.yaml"]) == 2
    err = capsys.readouterr().err
    assert "/nonexistent/edge.yaml: no such profile file" in err


def test_profiles_json_lists_all_five(capsys):
    assert main(["profiles", "--json", "-"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in listed] == SHIPPED
    assert all(len(p["digest"]) == 16 for p in listed)


def test_profiles_table_and_show(capsys):
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert name in out
    assert "12x14" in out and "shared 25165824" in out
    assert main(["profiles", "--show", "edge-16x16", "--set", "array.rows=8", "--json", "-"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["array"]["rows"] == 8 and shown["sparsity"]["weight_format"] == "bitmask"


def test_console_script_runs_without_traceback():
    done = subprocess.run([sys.executable, "-m", "compress", "profiles", "--show", "nope"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "no shipped profile of that name" in done.stderr and "Traceback" not in done.stderr
