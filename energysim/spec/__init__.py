"""Hardware profiles: YAML -> schema -> cross-checks -> frozen dataclasses."""

from .loader import (
    dump_profile,
    load_profile,
    parse_overrides,
    shipped_profile_names,
    shipped_profile_path,
    with_overrides,
)
from .profile import ArraySpec, BufferSpec, ComputeSpec, DramSpec, MemorySpec, NMSupport, Profile, RegisterFileSpec, SparsitySupport
from .schema import FIELDS, SpecError

__all__ = [
    "ArraySpec",
    "BufferSpec",
    "ComputeSpec",
    "DramSpec",
    "FIELDS",
    "MemorySpec",
    "NMSupport",
    "Profile",
    "RegisterFileSpec",
    "SparsitySupport",
    "SpecError",
    "dump_profile",
    "load_profile",
    "parse_overrides",
    "shipped_profile_names",
    "shipped_profile_path",
    "with_overrides",
]
