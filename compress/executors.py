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

Local workers die with the process that started them: on Linux each asks the kernel for
SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``), so an ``ecc sweep`` killed
with SIGKILL, which runs no clean-up of its own, leaves no worker training on. (Elsewhere
a worker may outlive a killed sweep.)
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager

__all__ = ["EXECUTORS", "open_executor"]

#: Executor names of ``ecc sweep --executor``.
EXECUTORS = ("local", "dask")

# From <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1

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
        with ProcessPoolExecutor(
            max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
            initializer=_die_with_parent, initargs=(os.getpid(),),
        ) as pool:
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


def _die_with_parent(parent_pid: int) -> None:
    """Worker initializer: have the kernel kill this worker when process ``parent_pid`` dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    # The death signal follows the thread that started the worker: the one that submitted
    # to the pool, which stays inside ``open_executor`` until the pool is shut down.
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    # A parent that died before prctl took effect sends no signal; the worker has been
    # handed to another process already, so it kills itself as the signal would have.
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)
