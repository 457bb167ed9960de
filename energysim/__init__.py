"""energysim: energy and cycles of sparse DNNs on systolic-array accelerators.

Public API
----------
load_profile, dump_profile, Profile, SpecError : hardware profiles (``energysim.spec``)
"""

from .spec import Profile, SpecError, dump_profile, load_profile, parse_overrides, shipped_profile_names

__all__ = [
    "Profile",
    "SpecError",
    "dump_profile",
    "load_profile",
    "parse_overrides",
    "shipped_profile_names",
]
