"""Read hardware profiles from YAML (by shipped name or by path), apply overrides, write them back."""

from __future__ import annotations

import copy
import importlib.resources
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .profile import Profile
from .schema import FIELDS, SpecError, set_dotted, validate_tree

__all__ = [
    "dump_profile",
    "load_profile",
    "parse_overrides",
    "shipped_profile_names",
    "shipped_profile_path",
    "with_overrides",
]

_PACKAGE = "hw_profiles"


def shipped_profile_names() -> list[str]:
    """Names of the profiles shipped in the ``hw_profiles`` package, sorted."""
    root = importlib.resources.files(_PACKAGE)
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def shipped_profile_path(name: str) -> Path:
    """Path of the shipped profile ``name`` (which must exist)."""
    return Path(str(importlib.resources.files(_PACKAGE) / f"{name}.yaml"))


def _resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if text in shipped_profile_names():
        return shipped_profile_path(text)
    path = Path(text)
    if path.is_file():
        return path
    if path.exists():
        raise SpecError([f"{text}: is not a file"])
    raise SpecError(
        [f"{text}: no such profile file, and no shipped profile of that name (shipped: {', '.join(shipped_profile_names())})"]
    )


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"{path}: cannot be read: {exc}"]) from None
    if not text.strip():
        raise SpecError([f"{path}: file is empty; expected a YAML mapping of profile keys"])
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError([f"{path}: not valid YAML{where}: {problem}"]) from None
    if tree is None:
        raise SpecError([f"{path}: file holds no YAML document; expected a mapping of profile keys"])
    return tree


def parse_overrides(items: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """Turn ``["array.rows=32", ...]`` (or a mapping) into ``{dotted key: value}``.

    Values are parsed as YAML scalars, so ``32`` is an int, ``true`` a bool and ``.inf``
    infinity. Unknown keys raise :class:`SpecError` listing the known ones.
    """
    if items is None:
        return {}
    pairs: list[tuple[str, Any]] = []
    problems = []
    if isinstance(items, Mapping):
        pairs = list(items.items())
    else:
        for item in items:
            key, sep, raw = str(item).partition("=")
            if not sep or not key.strip():
                problems.append(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. array.rows=32")
                continue
            try:
                value = yaml.safe_load(raw) if raw.strip() else None
            except yaml.YAMLError:
                value = raw
            pairs.append((key.strip(), value))
    for key, _ in pairs:
        if key not in FIELDS:
            problems.append(f"--set {key}: unknown key; known keys: {', '.join(FIELDS)}")
    if problems:
        raise SpecError(problems)
    return dict(pairs)


def _apply(tree: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    tree = copy.deepcopy(tree)
    for path, value in overrides.items():
        set_dotted(tree, path, value)
    if "memory.buffer.shared_words" in overrides and overrides["memory.buffer.shared_words"] is not None:
        # Switching to a shared buffer drops the per-operand capacities it replaces.
        for key in ("ifmap_words", "filter_words", "ofmap_words"):
            if f"memory.buffer.{key}" not in overrides:
                tree.get("memory", {}).get("buffer", {}).pop(key, None)
    return tree


def load_profile(name_or_path: str | Path, overrides: Iterable[str] | Mapping[str, Any] | None = None) -> Profile:
    """Load, validate and freeze a hardware profile.

    Parameters
    ----------
    name_or_path : str or Path
        A shipped profile name (see ``ecc profiles``) or a path to a YAML file.
    overrides : list of "KEY=VALUE" str, or mapping, optional
        Dotted-key overrides applied before validation, e.g. ``["array.rows=32"]``.

    Returns
    -------
    Profile

    Raises
    ------
    SpecError
        Naming the file, every invalid key, what it accepts and what it holds.

    Examples
    --------
    >>> from energysim import load_profile
    >>> load_profile("eyeriss-iclr19", ["array.rows=16"]).array.rows
    16
    """
    path = _resolve(name_or_path)
    tree = _read_yaml(path)
    parsed = parse_overrides(overrides)
    where = path.name if path.parent == shipped_profile_path("x").parent else str(path)
    if parsed:
        if not isinstance(tree, dict):
            raise SpecError([f"{where}: a profile must be a YAML mapping of keys, got {type(tree).__name__}"])
        tree = _apply(tree, parsed)
        where += " (with --set overrides)"
    return Profile.from_flat(validate_tree(tree, where))


def dump_profile(profile: Profile) -> str:
    """YAML text of ``profile``; loading it gives an equal profile."""
    return yaml.safe_dump(profile.to_dict(), sort_keys=False, allow_unicode=True, width=100)


def with_overrides(profile: Profile, overrides: Iterable[str] | Mapping[str, Any]) -> Profile:
    """``profile`` with dotted-key ``overrides`` applied, validated like a file."""
    parsed = parse_overrides(overrides)
    return Profile.from_flat(validate_tree(_apply(profile.to_dict(), parsed), f"{profile.name} (with overrides)"))
