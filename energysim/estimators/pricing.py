"""Counted events priced into energy: the one pricing every estimator's energy goes through.

An estimator counts, for one layer, the events a profile's per-access energies price
(:class:`AccessCounts`): reads and writes per memory level and operand, effective and
clock-gated MACs, operand selections of an N:M array, and cycles (the leakage time).
:func:`energy_breakdown` prices them::

    energy = sum over levels and operands of (reads * read + writes * write)
           + effective MACs * compute.mac + gated MACs * compute.gated_mac
           + selections * compute.nm_select
           + leakage_mw * leakage time

The energy is linear in the nine :data:`PARAMETERS` and, on an N:M array, in
``compute.nm_select`` (:data:`NM_SELECT`): :func:`parameter_counts` gives, per energy
level, the count that multiplies each one, and :func:`energy_breakdown` is exactly those
counts times the profile's values. Calibration fits the nine on the same counts, so a
calibrated profile prices the counts as the estimator does (it does not fit N:M arrays).

The leakage time is ``cycles / clock_mhz`` (us), so ``leakage_mw`` times it is nJ,
reported in pJ (x 1000) for pJ profiles. For ``normalized`` profiles ``leakage_mw`` is
read as energy per cycle in the profile's unit (the shipped normalized profile has 0).
``by_operand`` splits the access energy only (MAC and leakage belong to no operand).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import reduce

import numpy as np

from ..report import LEVELS, MEMORY_LEVELS, OPERANDS
from ..spec import Profile

__all__ = ["NM_SELECT", "PARAMETERS", "AccessCounts", "energy_breakdown", "leakage_time", "parameter_counts"]

#: The profile keys (dotted, as in ``Profile.to_flat``) that price counted events.
PARAMETERS: tuple[str, ...] = (
    "compute.mac",
    "compute.gated_mac",
    "memory.rf.read",
    "memory.rf.write",
    "memory.buffer.read",
    "memory.buffer.write",
    "memory.dram.read",
    "memory.dram.write",
    "leakage_mw",
)


#: The profile key that prices N:M operand selections (counted only on an N:M array).
NM_SELECT = "compute.nm_select"


@dataclass(frozen=True)
class AccessCounts:
    """What an estimator counts for one layer: the events per-access energies price.

    Attributes
    ----------
    accesses : dict
        ``accesses[level][operand] = {"reads": int, "writes": int}`` for every level of
        :data:`~energysim.report.MEMORY_LEVELS` and operand of
        :data:`~energysim.report.OPERANDS` (see :func:`energysim.report.empty_accesses`).
    effective_macs : int
        MACs with both operands nonzero.
    gated_macs : int or None
        Clock-gated MAC slots (a zero operand); None when the estimator does not model
        them (``paper``), priced as none.
    cycles : int or None
        Cycles the layer runs, the leakage time; None when the estimator has no time
        model (``paper``), priced as no leakage.
    relaxed_macs : int or None
        MACs of the estimator's relaxed energy bound (``paper``: every output position
        of a nonzero weight); None when it has no such bound.
    selections : int
        Operand selections of an N:M array (one per MAC slot of a layer it runs
        compressed, :mod:`energysim.model.nm`); 0 elsewhere.
    """

    accesses: dict[str, dict[str, dict[str, int]]]
    effective_macs: int
    gated_macs: int | None = None
    cycles: int | None = None
    relaxed_macs: int | None = None
    selections: int = 0

    def relaxed(self) -> AccessCounts:
        """The counts of the relaxed bound: ``relaxed_macs`` as the effective MACs (self without a bound)."""
        if self.relaxed_macs is None:
            return self
        return replace(self, effective_macs=self.relaxed_macs, relaxed_macs=None)


def leakage_time(profile: Profile, cycles: int | None) -> float:
    """What ``leakage_mw`` multiplies for ``cycles`` (see the module docstring); 0 for None.

    ``cycles`` may be a numpy array (per skip group, :mod:`energysim.model.groups`): the
    result is then an array, and so are the energies priced from such counts."""
    if cycles is None:
        return 0.0
    if profile.units == "pJ":
        return cycles / profile.clock_mhz * 1000.0
    return cycles * 1.0


def parameter_counts(profile: Profile, counts: AccessCounts) -> dict[str, dict[str, float]]:
    """Per energy level (:data:`~energysim.report.LEVELS`), the count multiplying each parameter.

    ``energy_by_level[level] = sum(n * value(p) for p, n in result[level].items())``;
    every key is one of :data:`PARAMETERS` (or :data:`NM_SELECT`, present when there are
    selections) and each parameter prices one level. The profile is used only for its clock
    and unit (the leakage time), not its energies.

    Examples
    --------
    >>> from energysim.spec import load_profile
    >>> from energysim.report import empty_accesses
    >>> acc = empty_accesses(); acc["rf"]["weights"]["writes"] = 6
    >>> parameter_counts(load_profile("eyeriss-iclr19"), AccessCounts(acc, 24, 0, 10))["rf"]
    {'memory.rf.read': 0, 'memory.rf.write': 6}
    """
    units: dict[str, dict[str, float]] = {}
    for level in MEMORY_LEVELS:
        reads = writes = 0
        for op in OPERANDS:
            reads += counts.accesses[level][op]["reads"]
            writes += counts.accesses[level][op]["writes"]
        units[level] = {f"memory.{level}.read": reads, f"memory.{level}.write": writes}
    units["mac"] = {"compute.mac": counts.effective_macs, "compute.gated_mac": 0 if counts.gated_macs is None else counts.gated_macs}
    if np.any(counts.selections):  # (an array when priced per skip group)
        units["mac"][NM_SELECT] = counts.selections
    units["leakage"] = {"leakage_mw": leakage_time(profile, counts.cycles)}
    return units


def energy_breakdown(profile: Profile, counts: AccessCounts) -> tuple[float, dict[str, float], dict[str, float]]:
    """Price ``counts`` on ``profile``: total energy, energy per level and per operand.

    Parameters
    ----------
    profile : Profile
    counts : AccessCounts

    Returns
    -------
    energy : float
        In the profile's unit; the sum of ``by_level``.
    by_level : dict of str to float
        One entry per level of :data:`~energysim.report.LEVELS` (dram, buffer, rf, mac, leakage).
    by_operand : dict of str to float
        The access energy of each operand (MACs and leakage belong to none).

    Examples
    --------
    >>> from energysim.spec import load_profile
    >>> from energysim.report import empty_accesses
    >>> p = load_profile("eyeriss-iclr19")
    >>> acc = empty_accesses(); acc["dram"]["weights"]["reads"] = 2
    >>> energy_breakdown(p, AccessCounts(acc, effective_macs=10))[0]
    430.0
    """
    values = {key: reduce(getattr, key.split("."), profile) for key in (*PARAMETERS, NM_SELECT)}
    by_level = {}
    for level, units in parameter_counts(profile, counts).items():
        total = 0.0
        for key, n in units.items():
            total += n * values[key]
        by_level[level] = total
    by_operand = dict.fromkeys(OPERANDS, 0.0)
    for level in MEMORY_LEVELS:
        read, write = values[f"memory.{level}.read"], values[f"memory.{level}.write"]
        for op in OPERANDS:
            by_operand[op] += counts.accesses[level][op]["reads"] * read + counts.accesses[level][op]["writes"] * write
    return sum(by_level[level] for level in LEVELS), by_level, by_operand
