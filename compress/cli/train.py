"""``ecc train``: train a model under an energy budget into a run folder."""

from __future__ import annotations

import argparse
import dataclasses

from energysim.estimators import ESTIMATORS

from ._common import add_model_args, add_profile_args

__all__ = ["add_training_options", "config_from_args", "register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train a model under an energy budget (projected SGD, optional input masks)",
        description=(
            "Energy-constrained training (Yang, Zhu and Liu, ICLR 2019): dense pretraining (or --checkpoint), "
            "then projected SGD whose energy budget (and latency budget, with --latency-budget*) anneals to the "
            "target, optionally alternating with input-mask phases; the final pattern is verified with the full "
            "estimator and re-projected until it fits (both budgets). "
            "RUN_DIR receives config.json, checkpoint.pt (every epoch), log.csv, log.jsonl, model.pt, simulated.json and "
            "report.json. Options left out take the defaults of compress.train.TrainConfig. Started by "
            "`torchrun --nproc_per_node N -m compress train ...` it trains data-parallel, one process per device "
            "(--batch-size is then per process); rank 0 writes RUN_DIR and prints."
        ),
    )
    add_training_options(parser)
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--budget", type=float, default=None, metavar="R",
        help="energy budget relative to dense, in (0, 1], e.g. 0.2 (this or --budget-abs is required unless a "
             "latency budget is given)",
    )
    budget.add_argument(
        "--budget-abs", type=float, default=None, metavar="E", help="absolute energy budget (profile units)"
    )
    add_latency_options(parser)
    parser.add_argument(
        "--method", default=None, help="projection method: ecc (default), magnitude, uniform, energy-aware"
    )
    from compress.pruner import STRUCTURES

    parser.add_argument(
        "--structure", default=None, choices=list(STRUCTURES),
        help="weight structure: none (single weights, default), tile (whole array tiles: the folds an array "
             "with skip_zero_tiles skips), hybrid (tiles, then single weights inside the kept ones) or nm (on an "
             "N:M array, a profile with sparsity.nm: each layer N:M-compressed or dense-pruned; magnitude is then "
             "NVIDIA ASP's keep-N-of-every-M)",
    )
    parser.add_argument(
        "--input-mask", action="store_true", default=None, help="alternate weight and input-mask phases"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of initialisation and data order (default 0)")
    parser.add_argument("--checkpoint", default=None, metavar="PATH", help="start from this state_dict file or run folder (its model.pt)")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (must be empty unless --resume)")
    parser.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint")
    parser.add_argument("--quiet", action="store_true", default=None, help="no progress bars")
    parser.set_defaults(run=run)


def add_latency_options(parser: argparse.ArgumentParser) -> None:
    """``--latency-budget``, ``--latency-budget-abs``, ``--latency-budget-ms`` (at most one)."""
    latency = parser.add_mutually_exclusive_group()
    latency.add_argument(
        "--latency-budget", type=float, default=None, metavar="R",
        help="latency budget relative to the dense model's simulated cycles, in (0, 1]; alone or with --budget: "
             "the projection meets both and the final pattern is verified on the simulator for both",
    )
    latency.add_argument("--latency-budget-abs", type=float, default=None, metavar="CYCLES",
                         help="latency budget in cycles")
    latency.add_argument("--latency-budget-ms", type=float, default=None, metavar="MS",
                         help="latency budget in milliseconds at the profile's clock_mhz")


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``ecc train`` and ``ecc sweep``: model, data, profile, schedule."""
    add_model_args(parser)
    parser.add_argument(
        "--dataset", required=True, metavar="NAME", help="digits, fashion-mnist, mnist, cifar10 or imagefolder"
    )
    parser.add_argument("--data-root", default=None, metavar="PATH", help="folder holding the dataset files")
    add_profile_args(parser)
    parser.add_argument(
        "--estimator", choices=list(ESTIMATORS), default=None,
        help="energy model behind the projection and the final check (default: systolic)",
    )
    option = _int_option(parser)
    option("--epochs", "epochs per weight phase (default 10)")
    option("--pretrain-epochs", "dense epochs first (default 10; 0 with --checkpoint)")
    option("--mask-epochs", "epochs per mask phase (default: --epochs)")
    option("--max-rounds", "most input-mask rounds (default 3)")
    option("--finetune-epochs", "fine-tuning epochs after a re-projection by the final check (default 1)")
    option("--batch-size", "samples per step and process (default 32)")
    option("--proj-interval", "batches between projections (default 10)")
    parser.add_argument("--lr", type=float, default=None, help="SGD learning rate (default 0.01)")
    parser.add_argument(
        "--mask-lr", type=float, default=None, help="Adam learning rate of the input masks (default 0.01)"
    )
    parser.add_argument("--momentum", type=float, default=None, help="SGD momentum (default 0.9)")
    parser.add_argument("--weight-decay", type=float, default=None, help="SGD weight decay (default 5e-4)")
    parser.add_argument(
        "--no-distill", dest="distill", action="store_false", default=None,
        help="plain cross-entropy instead of distilling from the dense model",
    )
    parser.add_argument(
        "--no-regrow", dest="regrow", action="store_false", default=None,
        help="keep pruned weights at zero between projections",
    )
    parser.add_argument(
        "--device", default=None, metavar="cpu|cuda|auto",
        help="cpu (default; deterministic), cuda (under torchrun: cuda:LOCAL_RANK), auto (cuda when available) "
             "or an explicit device such as cuda:1",
    )
    parser.add_argument(
        "--amp", action="store_true", default=None,
        help="mixed precision (float16 autocast, gradient scaling); CUDA only, an error on the CPU",
    )
    option("--workers", "data-loading processes per training process (default 0: none; 8+ for image folders)")


def _int_option(parser: argparse.ArgumentParser):
    """``option(flag, help)`` adds an optional int ``N`` whose default is TrainConfig's."""

    def option(flag: str, text: str) -> None:
        parser.add_argument(flag, type=int, default=None, metavar="N", help=text)

    return option


def config_from_args(args: argparse.Namespace):
    """The :class:`~compress.train.TrainConfig` of the options (omitted ones: its defaults)."""
    from compress.train import TrainConfig

    given = {
        "model": args.model,
        "dataset": args.dataset,
        "profile": args.profile,
        "out": args.out,
        "overrides": tuple(args.overrides),
        "input_shape": args.input_shape,
        "strict": args.strict,
    }
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if f.name not in given and value is not None:
            given[f.name] = value
    return TrainConfig(**given)


def run(args: argparse.Namespace) -> int:
    import sys
    import warnings

    from compress.distributed import is_main_process
    from compress.rundir import RunFolder
    from compress.schedule import check_relative_budgets
    from compress.train import train
    from energysim.workload import UnmodelledLayerWarning

    if args.budget is not None:  # the rule of `ecc sweep --budgets` too
        check_relative_budgets((args.budget,), name="--budget")
    latency = (args.latency_budget, args.latency_budget_abs, args.latency_budget_ms)
    if args.budget is None and args.budget_abs is None and all(v is None for v in latency):
        raise ValueError("one of --budget, --budget-abs or a latency budget (--latency-budget, --latency-budget-abs, "
                         "--latency-budget-ms) is required")
    if args.latency_budget is not None:
        check_relative_budgets((args.latency_budget,), name="--latency-budget")
    config = config_from_args(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnmodelledLayerWarning)
        result = train(config, resume=args.resume)
    if not is_main_process():  # under torchrun, rank 0 speaks for the run
        return 0
    for w in caught:
        kind = "note" if issubclass(w.category, UnmodelledLayerWarning) else "warning"
        print(f"{kind}: {w.message}", file=sys.stderr)
    r = result.report
    print(
        f"{r['model']} on {r['dataset']}: accuracy {r['accuracy']:.4f} (dense {r['dense_accuracy']:.4f}); energy "
        f"{r['energy_simulated_relative']:.4f} of dense simulated ({r['estimator']}), "
        f"{r['energy_proxy_relative']:.4f} proxy, budget {r['budget']:.4f}"
    )
    if r.get("latency_budget") is not None:
        print(
            f"latency: {r['cycles_simulated']} cycles = {r['cycles_simulated_relative']:.4f} of dense simulated "
            f"({r['latency_ms']:.4g} ms), budget {r['latency_budget']:.4f}"
        )
    if r.get("collapsed"):
        print(
            f"warning: training collapsed: accuracy {r['accuracy']:.4f} is near chance ({r['chance_accuracy']:.4f}) "
            f"while the dense model had {r['dense_accuracy']:.4f}; report.json says \"collapsed\": true",
            file=sys.stderr,
        )
    print(f"report: {RunFolder(result.run_dir).report}")
    return 0
