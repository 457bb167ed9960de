"""Data-parallel training (torchrun, gloo on CPU), devices and mixed precision.

The two-process runs use gloo on this machine's CPU; the CUDA checks at the end need a GPU
and are skipped, with the reason shown, where there is none.
"""

from __future__ import annotations

import ast
import gc
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from compress.checkpoint import load_checkpoint
from compress.distributed import (
    RankMismatchError,
    _portable,
    launch_env,
    resolve_device,
    session,
    state_digest,
)
from compress.masks import add_weight_masks, input_masks, weight_masks
from compress.projection import InfeasibleBudgetError
from compress.train import TrainConfig, _Run, train

pytestmark = pytest.mark.filterwarnings("ignore::energysim.workload.UnmodelledLayerWarning")

REPO = Path(__file__).resolve().parents[1]
FAST = dict(model="lenet5", dataset="digits", profile="eyeriss-iclr19", estimator="paper", quiet=True)
NO_GPU = "no CUDA device on this machine (torch.cuda.is_available() is False)"


def _without_time(report: dict) -> dict:
    return {k: v for k, v in report.items() if not k.startswith("wall_time")}


# -- launcher environment and devices -----------------------------------------------


def test_launch_env_reads_torchrun_variables():
    assert launch_env({}) is None
    assert launch_env({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (1, 4, 1)
    assert launch_env({"RANK": "5", "WORLD_SIZE": "8"}) == (5, 8, 5)  # LOCAL_RANK defaults to RANK
    with pytest.raises(ValueError, match="RANK must be an integer, got 'x'"):
        launch_env({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="0 <= RANK < WORLD_SIZE"):
        launch_env({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})


def test_device_resolution(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu", local_rank=3, world_size=4) == torch.device("cpu")
    with pytest.raises(ValueError, match="needs CUDA, but torch.cuda.is_available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="must be one of cpu, cuda, auto"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    # Under torchrun every process takes the GPU of its local rank ...
    assert resolve_device("cuda", local_rank=3, world_size=4) == torch.device("cuda", 3)
    assert resolve_device("auto", local_rank=1, world_size=2) == torch.device("cuda", 1)
    # ... and one explicit GPU for several processes is refused.
    with pytest.raises(ValueError, match="pass --device cuda"):
        resolve_device("cuda:0", local_rank=1, world_size=2)


def test_config_accepts_auto_and_refuses_amp_on_the_cpu(tmp_path):
    assert TrainConfig(out=str(tmp_path), budget=0.5, device="auto", amp=True, **FAST).device == "auto"
    with pytest.raises(ValueError) as info:
        TrainConfig(out=str(tmp_path), budget=0.5, device="cpu", amp=True, workers=-1, **FAST)
    text = str(info.value)
    assert "amp must be False on device 'cpu': mixed precision runs on CUDA only" in text
    assert "workers must be an int >= 0, got -1" in text
    with pytest.raises(ValueError, match="device must be one of cpu, cuda, auto or a torch device"):
        TrainConfig(out=str(tmp_path), budget=0.5, device="gpu0", **FAST)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where there is no GPU")
def test_amp_with_auto_on_a_cpu_machine_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="amp needs a CUDA device, but device 'auto' resolved to cpu"):
        train(TrainConfig(out=str(tmp_path / "run"), budget=0.5, device="auto", amp=True, **FAST))
    assert not (tmp_path / "run").exists()


def test_single_process_context_is_a_pass_through():
    with session("cpu") as ctx:
        assert (ctx.rank, ctx.world_size, ctx.distributed, ctx.is_main) == (0, 1, False, True)
        model = nn.Linear(2, 2)
        assert ctx.wrap(model) is model and ctx.on_main(lambda: 7) == 7 and ctx.sum([1, 2.5]) == [1.0, 2.5]
        data = list(range(5))
        assert ctx.eval_share(data) is data and ctx.train_sampler(data, 0) is None
        ctx.check_identical({"w": torch.ones(2)})


def test_an_unpicklable_exception_travels_as_its_builtin_base():
    error = InfeasibleBudgetError(1.0, 2.0, 3.0)  # its __init__ takes three numbers: no pickle round trip
    sent = _portable(error)
    assert type(sent) is ValueError and str(sent) == str(error)
    plain = FileExistsError("out is not empty")
    assert _portable(plain) is plain


def test_state_digest_sees_one_bit_names_and_shapes():
    w = torch.tensor([1.0, 2.0])
    bumped = w.clone()
    bumped[0] = torch.nextafter(w[0], torch.tensor(2.0))
    digests = {
        state_digest({"w": w}), state_digest({"w": bumped}), state_digest({"v": w}),
        state_digest({"w": w.reshape(2, 1)}), state_digest({"w": w.double()}),
    }
    assert len(digests) == 5 and state_digest({"w": w.clone()}) in digests


# -- two gloo processes ---------------------------------------------------------------


def _join(rank: int, world: int, init_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)


def _raise_infeasible():
    raise InfeasibleBudgetError(1.0, 2.0, 3.0)


def _collectives_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    _join(rank, world, init_file)
    seen: dict = {}
    with session("cpu") as ctx:  # uses the group started above and leaves it open
        seen["ctx"] = [ctx.rank, ctx.world_size, ctx.distributed, ctx.is_main]
        seen["on_main"] = ctx.on_main(lambda: f"computed on rank {dist.get_rank()}")
        try:
            ctx.on_main(_raise_infeasible)
        except ValueError as exc:
            seen["error"] = [type(exc).__name__, str(exc)]
        seen["sum"] = ctx.sum([rank + 1, 0.25])
        share = ctx.eval_share(list(range(7)))
        seen["share"] = [share[i] for i in range(len(share))]
        ctx.check_identical({"w": torch.tensor([1.0, 2.0])})
        w = torch.tensor([1.0, 2.0])
        if rank == 1:
            w[0] = torch.nextafter(w[0], torch.tensor(2.0))
        try:
            ctx.check_identical({"w": w}, "weights")
        except RankMismatchError as exc:
            seen["mismatch"] = str(exc)
        # Buffers come from rank 0, except the weight masks every rank computes itself.
        model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
        add_weight_masks(model, ["0"])
        with torch.no_grad():
            model[1].running_mean.fill_(10.0 + rank)
            model[0].weight_mask[0, 0] = rank
        ctx.sync_buffers(model)
        seen["buffers"] = [model[1].running_mean.tolist(), model[0].weight_mask[0, 0].item()]
        # A new wrapper replaces the previous one (no second reducer left averaging gradients).
        linear = nn.Linear(3, 2)
        net = ctx.wrap(linear)
        net = ctx.wrap(linear)
        gc.collect()
        seen["wrappers"] = sum(isinstance(o, nn.parallel.DistributedDataParallel) for o in gc.get_objects())
        net(torch.full((4, 3), float(rank))).sum().backward()  # rank 0's own gradient is zero
        seen["grad"] = linear.weight.grad.tolist()
    seen["group_left_open"] = dist.is_initialized()
    dist.barrier()  # leave together: tearing gloo down while the peer still talks aborts
    dist.destroy_process_group()
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(seen))


def _spawn(worker, tmp_path: Path) -> list[dict]:
    mp.spawn(worker, args=(2, str(tmp_path / "group"), str(tmp_path)), nprocs=2, join=True)
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


def test_collectives_on_two_gloo_processes(tmp_path):
    ranks = _spawn(_collectives_worker, tmp_path)
    assert [r["ctx"] for r in ranks] == [[0, 2, True, True], [1, 2, True, False]]
    assert [r["on_main"] for r in ranks] == ["computed on rank 0"] * 2
    # Rank 0's exception on both ranks; rank 1 gets its built-in base (it does not pickle).
    message = str(InfeasibleBudgetError(1.0, 2.0, 3.0))
    assert [r["error"] for r in ranks] == [["InfeasibleBudgetError", message], ["ValueError", message]]
    assert [r["sum"] for r in ranks] == [[3.0, 0.5]] * 2
    assert [r["share"] for r in ranks] == [[0, 2, 4, 6], [1, 3, 5]]  # every item once, none padded
    for r in ranks:
        assert "weights of rank(s) 1 differs from rank 0's" in r["mismatch"]
    assert [r["buffers"] for r in ranks] == [[[10.0, 10.0], 0.0], [[10.0, 10.0], 1.0]]
    assert [r["wrappers"] for r in ranks] == [1, 1]
    # DDP averaged the gradients of inputs 0 (rank 0) and 1 (rank 1): both hold the mean, 4 * 1 / 2.
    assert ranks[0]["grad"] == ranks[1]["grad"] == [[2.0] * 3] * 2
    assert all(r["group_left_open"] for r in ranks)


class _Stop(Exception):
    pass


def _resume_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    _join(rank, world, init_file)
    out = Path(out_dir)

    def config(name: str) -> TrainConfig:
        return TrainConfig(out=str(out / name), budget=0.4, pretrain_epochs=1, epochs=1, input_mask=True,
                           max_rounds=1, batch_size=16, **FAST)

    whole = train(config("whole"))
    original, calls = _Run._epoch, []

    def stop_after_two(self):
        if len(calls) == 2:
            raise _Stop
        calls.append(1)
        original(self)

    _Run._epoch = stop_after_two
    try:
        train(config("parts"))
    except _Stop:
        pass
    finally:
        _Run._epoch = original
    resumed = train(config("parts"), resume=True)
    seen = {
        "whole": state_digest(whole.model.state_dict()),
        "resumed": state_digest(resumed.model.state_dict()),
        "masks": state_digest({**weight_masks(resumed.model), **input_masks(resumed.model)}),
        "report": _without_time(resumed.report),
        "whole_report": _without_time(whole.report),
    }
    dist.barrier()  # leave together: tearing gloo down while the peer still talks aborts
    dist.destroy_process_group()
    (out / f"rank{rank}.json").write_text(json.dumps(seen))


def test_two_processes_agree_and_resume_bitwise(tmp_path):
    ranks = _spawn(_resume_worker, tmp_path)
    # Every rank ends with the same weights and masks, and the same report.
    for key in ("whole", "resumed", "masks", "report"):
        assert ranks[0][key] == ranks[1][key], key
    # A distributed run stopped after two epochs and resumed ends bitwise where an uninterrupted one does.
    assert ranks[0]["resumed"] == ranks[0]["whole"]
    assert ranks[0]["report"] == ranks[0]["whole_report"]
    report = ranks[0]["report"]
    assert report["world_size"] == 2 and report["epochs_by_phase"] == {"pretrain": 1, "weights": 2, "mask": 1}
    assert report["energy_simulated"] <= report["budget_abs"]
    # Only rank 0 wrote the run folder, and its model is the one every rank holds.
    saved = torch.load(tmp_path / "parts" / "model.pt", weights_only=True)["state_dict"]
    assert state_digest(saved) == ranks[0]["resumed"]


def _run_torchrun(args: list[str], out: Path, kill_after_rows: int | None = None) -> subprocess.CompletedProcess | None:
    """``torchrun --standalone --nproc_per_node 2 -m compress train ...`` (killed after some log rows)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "compress", "train", *args, "--out", str(out)]
    if kill_after_rows is None:
        return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        log = out / "log.jsonl"
        while not (log.is_file() and log.read_text().count("\n") >= kill_after_rows):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run wrote no log row in time"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers, as a preempted job
    finally:
        proc.wait()
        proc.stderr.close()
    return None


def test_torchrun_run_killed_and_resumed_matches_a_single_process(tmp_path):
    options = ["--model", "lenet5", "--dataset", "digits", "--profile", "eyeriss-iclr19", "--estimator", "paper",
               "--budget", "0.3", "--pretrain-epochs", "2", "--epochs", "2", "--quiet"]
    out = tmp_path / "ddp"
    # Two processes of 16 samples per step make the single process's 32 per step.
    _run_torchrun([*options, "--batch-size", "16"], out, kill_after_rows=2)
    assert load_checkpoint(out / "checkpoint.pt")["state"]["phase"] != "done"
    done = _run_torchrun([*options, "--batch-size", "16", "--resume"], out)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("lenet5 on digits: accuracy") == 1  # rank 0 alone prints
    ddp = json.loads((out / "report.json").read_text())
    single = train(TrainConfig(out=str(tmp_path / "single"), budget=0.3, pretrain_epochs=2, epochs=2,
                               batch_size=32, **FAST)).report
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    assert ddp["epochs_by_phase"] == single["epochs_by_phase"] == {"pretrain": 2, "weights": 2}
    assert ddp["budget_abs"] == single["budget_abs"] and ddp["energy_dense"] == single["energy_dense"]
    assert ddp["energy_simulated"] <= ddp["budget_abs"] and ddp["energy_proxy"] <= ddp["budget_abs"]
    # Another data order, the same schedule: the accuracies agree within a few points.
    assert abs(ddp["accuracy"] - single["accuracy"]) < 0.06, (ddp["accuracy"], single["accuracy"])
    assert abs(ddp["dense_accuracy"] - single["dense_accuracy"]) < 0.08
    assert ddp["energy_simulated_relative"] == pytest.approx(single["energy_simulated_relative"], abs=0.01)


# -- code that would break on a GPU ---------------------------------------------------


def _calls(tree: ast.AST, attribute: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == attribute]


def test_no_code_assumes_cpu_tensors():
    """``.numpy()`` only on a ``.cpu()`` result, and the trainer's modules make tensors on a named device.

    A CUDA tensor has no ``.numpy()``, and a tensor made on the CPU then combined with CUDA
    weights fails: on this CPU-only machine both would pass unnoticed at run time.
    """
    factories = {"zeros", "ones", "full", "empty", "rand", "randn", "randint", "arange", "tensor", "as_tensor"}
    problems = []
    for path in sorted((REPO / "compress").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for call in _calls(tree, "numpy"):
            receiver = call.func.value
            if not (isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Attribute)
                    and receiver.func.attr == "cpu"):
                problems.append(f"{path.name}:{call.lineno}: .numpy() without .cpu()")
        if path.name not in ("train.py", "masks.py", "distributed.py"):
            continue
        for name in factories:
            for call in _calls(tree, name):
                is_torch = isinstance(call.func.value, ast.Name) and call.func.value.id == "torch"
                if is_torch and not any(k.arg == "device" for k in call.keywords):
                    problems.append(f"{path.name}:{call.lineno}: torch.{name}(...) without device=")
    assert problems == []


# -- CUDA (needs a GPU) ---------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)
def test_cuda_amp_run_meets_the_budget(tmp_path):
    result = train(TrainConfig(out=str(tmp_path / "run"), budget=0.3, pretrain_epochs=2, epochs=1, device="auto",
                               amp=True, input_mask=True, max_rounds=1, **FAST))
    r = result.report
    assert r["device"].startswith("cuda") and r["amp"] is True
    assert r["energy_simulated"] <= r["budget_abs"] and r["accuracy"] > 0.3
    assert all(t.device.type == "cuda" for t in result.model.state_dict().values())
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert checkpoint["scaler"] is not None and math.isfinite(checkpoint["scaler"]["scale"])


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices for a two-process NCCL run")
def test_torchrun_on_two_gpus_with_nccl(tmp_path):
    options = ["--model", "lenet5", "--dataset", "digits", "--profile", "eyeriss-iclr19", "--estimator", "paper",
               "--budget", "0.3", "--pretrain-epochs", "1", "--epochs", "1", "--quiet", "--device", "cuda", "--amp"]
    done = _run_torchrun(options, tmp_path / "nccl")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "nccl" / "report.json").read_text())
    assert report["world_size"] == 2 and report["device"] == "cuda:0"
    assert report["energy_simulated"] <= report["budget_abs"]

