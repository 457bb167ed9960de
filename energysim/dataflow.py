"""One :class:`Dataflow` value per systolic dataflow: which GEMM dimension goes where.

A layer is a GEMM per group, ``O[M, N] = X[M, K] @ W[K, N]`` (M output pixels, K window
size, N filters). A dataflow maps the three dimensions onto the array's rows, its
columns and time (the streamed dimension), as SCALE-Sim does:

====  =====  =====  ========  ==========  =======
name  rows   cols   streamed  stationary  preload
====  =====  =====  ========  ==========  =======
ws    K      N      M         weights     yes
os    M      N      K         outputs     no
is    K      M      N         inputs      yes
====  =====  =====  ========  ==========  =======

Each operand (X over (M, K), W over (K, N)) spans two of the three places. The operand
spanning (rows, cols) is held *stationary* in the PEs (WS: W, IS: X); an operand
spanning (rows, time) enters along the left edge, one array row per GEMM row ("row
stream"), and one spanning (cols, time) enters along the top edge ("column stream").
Everything the simulator does is written once in terms of these places, so a new
dataflow is a new value of this class, not a new simulator.

Timing (SCALE-Sim's skew): in a fold, PE ``(r, c)`` performs the MAC of stream step
``t`` in fold cycle ``preload * R + r + c + t``, where ``preload`` is 1 when the
stationary operand must first be shifted into the array (R cycles) and 0 otherwise.
A fold therefore lasts ``fill + T + drain`` cycles with ``fill = preload*R + R - 1``
(stationary load, then the skew down the rows) and ``drain = C - 1`` (the skew across
the columns), whatever part of the array the fold uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DATAFLOW_NAMES", "DIMS", "Dataflow", "get_dataflow"]

DIMS = ("M", "K", "N")
_OPERAND_DIMS = {"inputs": ("M", "K"), "weights": ("K", "N"), "outputs": ("M", "N")}


@dataclass(frozen=True)
class Dataflow:
    """Operand-to-array mapping of one dataflow.

    Attributes
    ----------
    name : str
        ``"ws"``, ``"os"`` or ``"is"``.
    rows, cols, streamed : {"M", "K", "N"}
        GEMM dimension mapped to the array rows, the array columns and time.
    preload : bool
        Whether the stationary operand is shifted into the array before each fold
        (R extra cycles).
    skip_operand : {"weights", "inputs"}
        Operand whose all-zero fold slice lets a fold be skipped with
        ``skip_zero_tiles``: the stationary one (WS weights, IS inputs); OS holds
        outputs, so it skips a fold whose weight slice is all zero.
    """

    name: str
    rows: str
    cols: str
    streamed: str
    preload: bool
    skip_operand: str

    def __post_init__(self) -> None:
        if sorted((self.rows, self.cols, self.streamed)) != sorted(DIMS):
            raise ValueError(
                f"dataflow {self.name!r}: rows, cols and streamed must be a permutation of {DIMS}, "
                f"got {(self.rows, self.cols, self.streamed)}"
            )
        if self.skip_operand not in ("weights", "inputs"):
            raise ValueError(f"dataflow {self.name!r}: skip_operand must be 'weights' or 'inputs', got {self.skip_operand!r}")

    # -- places ---------------------------------------------------------------

    def place_of(self, dim: str) -> str:
        """``"rows"``, ``"cols"`` or ``"time"``: where GEMM dimension ``dim`` goes."""
        return {self.rows: "rows", self.cols: "cols", self.streamed: "time"}[dim]

    def role(self, operand: str) -> str:
        """``"stationary"``, ``"row_stream"`` or ``"col_stream"`` for ``inputs``/``weights``/``outputs``.

        Outputs are stationary in OS; in WS and IS they are the partial sums that move
        down the columns (a column stream).
        """
        places = {self.place_of(d) for d in _OPERAND_DIMS[operand]}
        if places == {"rows", "cols"}:
            return "stationary"
        return "row_stream" if "rows" in places else "col_stream"

    @property
    def stationary(self) -> str:
        """The operand held in the PEs during a fold."""
        return next(op for op in _OPERAND_DIMS if self.role(op) == "stationary")

    def dim_sizes(self, gemm: tuple[int, int, int]) -> tuple[int, int, int]:
        """(rows extent, cols extent, stream length) of a GEMM ``(M, K, N)``."""
        size = dict(zip(DIMS, gemm))
        return size[self.rows], size[self.cols], size[self.streamed]

    # -- timing ---------------------------------------------------------------

    def fill_cycles(self, array_rows: int) -> int:
        """Cycles before the first stream step reaches row 0's last PE: preload plus the row skew."""
        return int(self.preload) * array_rows + array_rows - 1

    @staticmethod
    def drain_cycles(array_cols: int) -> int:
        """Cycles after the last stream step enters, for it to cross the columns."""
        return array_cols - 1

    def fold_cycles(self, array_rows: int, array_cols: int, stream: int) -> int:
        """Length of one fold: fill + stream + drain (SCALE-Sim's demand-matrix rows)."""
        return self.fill_cycles(array_rows) + stream + self.drain_cycles(array_cols)

    # -- operands in array coordinates -----------------------------------------

    def arrange(self, x: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
        """The two input operands laid out in array coordinates, by role.

        Parameters
        ----------
        x : numpy.ndarray, shape (G, M, K)
            Inputs (im2col view) per group.
        w : numpy.ndarray, shape (G, K, N)
            Weights per group.

        Returns
        -------
        dict
            Two of ``"stationary"`` (G, rows, cols), ``"row_stream"`` (G, rows, T) and
            ``"col_stream"`` (G, cols, T). Streams are C-contiguous (the cycle loop runs
            along T); the stationary operand may be a view. A PE ``(r, c)`` at
            stream step ``t`` multiplies the present ones of
            ``stationary[r, c]``, ``row_stream[r, t]`` and ``col_stream[c, t]``.
        """
        out = {}
        for operand, array in (("inputs", x), ("weights", w)):
            role = self.role(operand)
            wanted = {"stationary": ("rows", "cols"), "row_stream": ("rows", "time"), "col_stream": ("cols", "time")}[role]
            places = [self.place_of(d) for d in _OPERAND_DIMS[operand]]
            order = [0] + [1 + places.index(p) for p in wanted]
            arranged = array.transpose(order)
            out[role] = arranged if role == "stationary" else np.ascontiguousarray(arranged)
        return out


_DATAFLOWS = {
    "ws": Dataflow("ws", rows="K", cols="N", streamed="M", preload=True, skip_operand="weights"),
    "os": Dataflow("os", rows="M", cols="N", streamed="K", preload=False, skip_operand="weights"),
    "is": Dataflow("is", rows="K", cols="M", streamed="N", preload=True, skip_operand="inputs"),
}
DATAFLOW_NAMES = tuple(_DATAFLOWS)


def get_dataflow(name: str) -> Dataflow:
    """The :class:`Dataflow` called ``name`` (``"ws"``, ``"os"`` or ``"is"``).

    Raises
    ------
    ValueError
        For any other name.

    Examples
    --------
    >>> get_dataflow("ws").dim_sizes((100, 27, 16))
    (27, 16, 100)
    """
    try:
        return _DATAFLOWS[name]
    except KeyError:
        raise ValueError(f"dataflow must be one of {', '.join(DATAFLOW_NAMES)}, got {name!r}") from None
