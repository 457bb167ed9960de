"""Where the cells of a sweep run: local worker processes, or an existing Dask cluster.

Both are a :class:`concurrent.futures.Executor`, so :mod:`compress.sweep` submits cells
the same way to either. ``local`` is a process pool (spawned, so each cell starts from
fresh interpreter state). ``dask`` connects to the scheduler of a running
``dask.distributed`` cluster (``dask scheduler`` and ``dask worker ADDRESS`` on the
machines, or any deployment such as dask-jobqueue) and submits every cell as a task;
the workers must have this package installed and see the sweep directory (a shared
file system). Dask is an optional extra (``pip install
'energy-constrained-compression[dask]'``), imported only when asked for.

A cell's result does not depend on where it runs: :mod:`compress.sweep` fixes the
number of torch threads of every cell and trains at most one cell at a time per
process, whatever the executor's threads.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager

__all__ = ["EXECUTORS", "open_executor"]

#: Executor names of ``ecc sweep --executor``.
EXECUTORS = ("local", "dask")

_DASK_HINT = (
    "--executor dask needs dask's distributed scheduler: install it with "
    "`pip install 'energy-constrained-compression[dask]'` (or `pip install 'dask[distributed]'`)"
)


@contextmanager
def open_executor(kind: str, *, jobs: int = 1, scheduler: str | None = None) -> Iterator[Executor]:
    """An executor for sweep cells, shut down (after its tasks finish) on exit.

    Parameters
    ----------
    kind : {"local", "dask"}
    jobs : int
        Worker processes of the local pool (ignored by ``dask``: the cluster's workers decide).
    scheduler : str, optional
        Address of the Dask scheduler, e.g. ``tcp://10.0.0.5:8786``; required for ``dask``.

    Yields
    ------
    concurrent.futures.Executor

    Raises
    ------
    ValueError
        Unknown ``kind``, or ``dask`` without a scheduler address.
    ImportError
        ``dask`` without the ``distributed`` package installed.
    OSError
        If the Dask scheduler cannot be reached.
    """
    if kind not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    if kind == "local":
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            yield pool
        return
    if not scheduler:
        raise ValueError("executor 'dask' needs the address of a running scheduler (--scheduler tcp://HOST:8786)")
    try:
        from distributed import Client
    except ImportError as exc:
        raise ImportError(_DASK_HINT, name="distributed") from exc
    with Client(scheduler) as client:
        # pure=False: a cell submitted again (a resumed sweep) runs again rather than being
        # served from the scheduler's memory of an earlier result.
        pool = client.get_executor(pure=False)
        try:
            yield pool
        finally:
            pool.shutdown(wait=True)
