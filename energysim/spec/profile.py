"""Frozen, typed hardware profile built from a validated key table."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .schema import FIELDS, set_dotted

__all__ = [
    "ArraySpec",
    "BufferSpec",
    "ComputeSpec",
    "DramSpec",
    "MappingSpec",
    "MemorySpec",
    "NMSupport",
    "Profile",
    "RegisterFileSpec",
    "SparsitySupport",
]


@dataclass(frozen=True)
class ArraySpec:
    """The PE array: ``rows`` x ``cols`` processing elements, their dataflow, and whether
    the stationary operand's PE registers are double-buffered (``preload_overlap``)."""

    rows: int
    cols: int
    dataflow: str
    preload_overlap: bool = False


@dataclass(frozen=True)
class MappingSpec:
    """How each layer's mapping is chosen: ``search`` is scalesim, energy, latency or edp."""

    search: str = "scalesim"


@dataclass(frozen=True)
class RegisterFileSpec:
    """Per-PE register file."""

    words: int
    read: float
    write: float


@dataclass(frozen=True)
class BufferSpec:
    """Global buffer: per-operand capacities, or one shared capacity."""

    ifmap_words: int | None
    filter_words: int | None
    ofmap_words: int | None
    shared_words: int | None
    read: float
    write: float

    @property
    def is_shared(self) -> bool:
        return self.shared_words is not None


@dataclass(frozen=True)
class DramSpec:
    """Off-chip memory."""

    bandwidth_words_per_cycle: float
    read: float
    write: float


@dataclass(frozen=True)
class MemorySpec:
    rf: RegisterFileSpec
    buffer: BufferSpec
    dram: DramSpec


@dataclass(frozen=True)
class ComputeSpec:
    """Energy of an effective MAC, of a clock-gated one (a zero operand) and of one N:M operand selection."""

    mac: float
    gated_mac: float
    nm_select: float = 0.0


@dataclass(frozen=True)
class NMSupport:
    """N:M structured sparsity along K (``n``, ``m`` both None: the array has none)."""

    n: int | None = None
    m: int | None = None

    @property
    def enabled(self) -> bool:
        return self.m is not None

    @property
    def index_bits(self) -> int:
        """Bits of index stored per kept weight: ceil(log2 M)."""
        return 0 if self.m is None else (self.m - 1).bit_length()


@dataclass(frozen=True)
class SparsitySupport:
    weight_format: str
    skip_zero_tiles: bool
    nm: NMSupport = NMSupport()


@dataclass(frozen=True)
class Profile:
    """A validated hardware profile. Build it with :func:`energysim.load_profile`."""

    version: int
    name: str
    description: str
    source: str
    units: str
    word_bits: int
    clock_mhz: float
    array: ArraySpec
    memory: MemorySpec
    compute: ComputeSpec
    leakage_mw: float
    sparsity: SparsitySupport
    mapping: MappingSpec = MappingSpec()

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> "Profile":
        """Build from the dotted-key table returned by :func:`validate_tree`."""

        def group(prefix: str) -> dict[str, Any]:
            return {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix) and "." not in k[len(prefix):]}

        return cls(
            version=flat["version"],
            name=flat["name"],
            description=flat["description"],
            source=flat["source"],
            units=flat["units"],
            word_bits=flat["word_bits"],
            clock_mhz=flat["clock_mhz"],
            array=ArraySpec(**group("array.")),
            memory=MemorySpec(
                rf=RegisterFileSpec(**group("memory.rf.")),
                buffer=BufferSpec(**group("memory.buffer.")),
                dram=DramSpec(**group("memory.dram.")),
            ),
            compute=ComputeSpec(**group("compute.")),
            leakage_mw=flat["leakage_mw"],
            sparsity=SparsitySupport(**group("sparsity."), nm=NMSupport(**group("sparsity.nm."))),
            mapping=MappingSpec(**group("mapping.")),
        )

    def to_flat(self) -> dict[str, Any]:
        """Dotted key -> value, the inverse of :meth:`from_flat`."""
        flat = {}
        for path in FIELDS:
            node: Any = self
            for part in path.split("."):
                node = getattr(node, part)
            flat[path] = node
        return flat

    def to_dict(self) -> dict[str, Any]:
        """Nested dict in the YAML key layout (``None`` capacities omitted)."""
        tree: dict[str, Any] = {}
        for path, value in self.to_flat().items():
            if value is not None:
                set_dotted(tree, path, value)
        return tree

    @property
    def digest(self) -> str:
        """Short hash of every value, to detect tables derived from another profile."""
        canonical = json.dumps(self.to_flat(), sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]
