"""The run folder (issue 12 item 3): one module spells its file names; energysim takes files only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from compress.checkpoint import atomic_torch_save
from compress.cli import main
from compress.rundir import RunFolder, model_file
from energysim.sparsity import Sparsity, load_checkpoint_file, load_checkpoint_state
from energysim.workload import extract_workload
from energysim.zoo import build_model

pytestmark = pytest.mark.filterwarnings("ignore::energysim.workload.UnmodelledLayerWarning")

_ROOT = Path(__file__).resolve().parents[1]
_NAMES = ("checkpoint.pt", "config.json", "model.pt", "report.json", "simulated.json", "log.csv", "log.jsonl",
          "error.json")


def test_run_folder_names_every_file_inside_its_root(tmp_path):
    folder = RunFolder(str(tmp_path / "run"))
    paths = [folder.checkpoint, folder.config, folder.model, folder.report, folder.simulated, folder.log_csv,
             folder.log_jsonl, folder.error]
    assert folder.root == tmp_path / "run"
    assert [p.name for p in paths] == list(_NAMES)
    assert all(p.parent == tmp_path / "run" for p in paths)
    assert RunFolder(tmp_path) == RunFolder(str(tmp_path))
    with pytest.raises(AttributeError):
        folder.root = tmp_path  # frozen


def test_model_file_maps_a_run_folder_and_keeps_a_file(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.pt").write_bytes(b"x")
    assert model_file(tmp_path / "run") == tmp_path / "run" / "model.pt"
    assert model_file(str(tmp_path / "w.pt")) == tmp_path / "w.pt"  # a file path stays itself, existing or not
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: not an `ecc train` run directory \(no model.pt inside\)"):
        model_file(tmp_path / "empty")


def test_energysim_loaders_take_a_file_only(tmp_path):
    atomic_torch_save(tmp_path / "model.pt", {"state_dict": {"w": torch.ones(2)}})
    for load in (load_checkpoint_file, load_checkpoint_state):
        with pytest.raises(IsADirectoryError) as info:
            load(tmp_path)
        message = str(info.value)
        assert message.startswith(f"{tmp_path}: is a folder") and "RUN/model.pt" in message and "\n" not in message
    assert load_checkpoint_file(tmp_path / "model.pt")[0] == tmp_path / "model.pt"
    model, shape = build_model("lenet5")
    with pytest.raises(IsADirectoryError):
        Sparsity.from_checkpoint(tmp_path, extract_workload(model, shape))


def test_simulate_still_takes_a_run_folder(tmp_path, capsys):
    model, _ = build_model("lenet5")
    atomic_torch_save(RunFolder(tmp_path).model, {"state_dict": model.state_dict()})
    argv = ["simulate", "--model", "lenet5", "--profile", "eyeriss-iclr19", "--estimator", "paper", "--json", "-"]
    assert main([*argv, "--checkpoint", str(tmp_path)]) == 0
    by_folder = capsys.readouterr().out
    assert main([*argv, "--checkpoint", str(tmp_path / "model.pt")]) == 0
    assert capsys.readouterr().out == by_folder


def _spelled(path: Path) -> list[str]:
    """The run-folder file names that ``path`` spells as a string of its code (docstrings are docs)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if any(node.value == name or node.value.endswith("/" + name) for name in _NAMES):
                found.append(f"{path.relative_to(_ROOT)}:{node.lineno}: {node.value!r}")
    return found


def test_the_file_names_are_spelled_in_compress_rundir_only():
    spelled = [hit for package in ("compress", "energysim") for path in sorted((_ROOT / package).rglob("*.py"))
               if path != _ROOT / "compress" / "rundir.py" for hit in _spelled(path)]
    assert spelled == []
    assert len(_spelled(_ROOT / "compress" / "rundir.py")) == len(_NAMES)
