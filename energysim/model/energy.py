"""Energy of counted events: accesses x per-access energy, MACs, leakage.

``energy = sum over levels and operands of (reads * read + writes * write)
+ effective MACs * compute.mac + gated MACs * compute.gated_mac + leakage``.

Leakage is ``leakage_mw * cycles / clock_mhz``, i.e. mW x us = nJ, reported in pJ
(x 1000) when the profile's units are pJ. For ``normalized`` profiles leakage_mw is
read as energy per cycle in the profile's unit (the shipped normalized profile has 0).
``by_operand`` splits the access energy only (MAC and leakage belong to no operand).
"""

from __future__ import annotations

from ..report import MEMORY_LEVELS, OPERANDS
from ..spec import Profile

__all__ = ["energy_breakdown", "leakage_energy"]


def leakage_energy(profile: Profile, cycles: int) -> float:
    """Leakage over ``cycles`` in the profile's unit (see the module docstring)."""
    if profile.units == "pJ":
        return profile.leakage_mw * cycles / profile.clock_mhz * 1000.0
    return profile.leakage_mw * cycles


def energy_breakdown(
    profile: Profile, accesses: dict, effective_macs: int, gated_macs: int, cycles: int
) -> tuple[float, dict[str, float], dict[str, float]]:
    """Total energy, energy per level (dram, buffer, rf, mac, leakage) and per operand.

    Examples
    --------
    >>> from energysim.spec import load_profile
    >>> from energysim.report import empty_accesses
    >>> p = load_profile("eyeriss-iclr19")
    >>> acc = empty_accesses(); acc["dram"]["weights"]["reads"] = 2
    >>> energy_breakdown(p, acc, 10, 0, 0)[0]
    430.0
    """
    memory = profile.memory
    per_access = {
        "dram": (memory.dram.read, memory.dram.write),
        "buffer": (memory.buffer.read, memory.buffer.write),
        "rf": (memory.rf.read, memory.rf.write),
    }
    by_level = {}
    by_operand = dict.fromkeys(OPERANDS, 0.0)
    for level in MEMORY_LEVELS:
        read, write = per_access[level]
        total = 0.0
        for operand in OPERANDS:
            counts = accesses[level][operand]
            value = counts["reads"] * read + counts["writes"] * write
            by_operand[operand] += value
            total += value
        by_level[level] = total
    by_level["mac"] = effective_macs * profile.compute.mac + gated_macs * profile.compute.gated_mac
    by_level["leakage"] = leakage_energy(profile, cycles)
    return sum(by_level.values()), by_level, by_operand
