"""Read hardware profiles from YAML (by shipped name or by path), apply overrides, write them back."""

from __future__ import annotations

import copy
import importlib.resources
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .profile import Profile
from .schema import FIELDS, SpecError, set_dotted, shown_value, validate_tree

__all__ = [
    "dump_profile",
    "load_profile",
    "parse_overrides",
    "shipped_profile_names",
    "shipped_profile_path",
    "with_overrides",
]

_PACKAGE = "hw_profiles"

# YAML 1.1 reads ``1e30`` (no dot) and ``1.0e30`` (no exponent sign) as strings; a
# profile means a number, so both resolve as floats, on load and on dump (where a
# string that looks like one is then quoted, so dumped profiles read back equal).
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_DEPTH = 20


class _ProfileLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads exponent floats and refuses duplicate keys."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._checked: set[int] = set()
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        # A profile is 3 levels deep. Without a limit, 3000 nested brackets take PyYAML's
        # scanner seconds (quadratic) and then overflow the composer's recursion.
        self._depth += 1
        try:
            if self._depth > _MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {_MAX_DEPTH} levels", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        # Checked on the first call, before merge keys (`<<: *base`, which explicit keys
        # may override) are expanded into node.value in place.
        if id(node) not in self._checked:
            self._checked.add(id(node))
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # unhashable: construct_mapping reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key {shown_value(key)}", key_node.start_mark,
                    )
                seen.add(key)
        super().flatten_mapping(node)


class _ProfileDumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that quotes the strings :class:`_ProfileLoader` would read as numbers."""


for _cls in (_ProfileLoader, _ProfileDumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789."))


def shipped_profile_names() -> list[str]:
    """Names of the profiles shipped in the ``hw_profiles`` package, sorted."""
    root = importlib.resources.files(_PACKAGE)
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def shipped_profile_path(name: str) -> Path:
    """Path of the shipped profile ``name`` (which must exist)."""
    return Path(str(importlib.resources.files(_PACKAGE) / f"{name}.yaml"))


def _resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    path = Path(text)
    try:
        is_file, exists = path.is_file(), path.exists()
    except OSError as exc:  # e.g. a name too long for the file system
        raise SpecError([f"{shown_value(text)}: cannot be read: {exc.strerror}"]) from None
    if text in shipped_profile_names():
        if is_file:
            # A bare name could mean either; guessing would silently simulate the wrong hardware.
            raise SpecError(
                [
                    f"{text}: names both the shipped profile and the file ./{text} in the working directory; "
                    f"pass ./{text} for the file or {shipped_profile_path(text)} for the shipped profile"
                ]
            )
        return shipped_profile_path(text)
    if is_file:
        return path
    if exists:
        raise SpecError([f"{text}: is not a file"])
    raise SpecError(
        [f"{text}: no such profile file, and no shipped profile of that name (shipped: {', '.join(shipped_profile_names())})"]
    )


def _parse_yaml(text: str) -> Any:
    """One YAML document read with :class:`_ProfileLoader`."""
    return yaml.load(text, Loader=_ProfileLoader)  # noqa: S506 - a SafeLoader subclass


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"{path}: cannot be read: {exc}"]) from None
    if not text.strip():
        raise SpecError([f"{path}: file is empty; expected a YAML mapping of profile keys"])
    try:
        tree = _parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError([f"{path}: not valid YAML{where}: {problem}"]) from None
    except (ValueError, OverflowError) as exc:  # a value PyYAML cannot build: 2020-13-45, a 5000-digit integer
        raise SpecError([f"{path}: holds a value that cannot be read: {str(exc).splitlines()[0]}"]) from None
    if tree is None:
        raise SpecError([f"{path}: file holds no YAML document; expected a mapping of profile keys"])
    return tree


def parse_overrides(items: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """Turn ``["array.rows=32", ...]`` (or a mapping) into ``{dotted key: value}``.

    Values are parsed as YAML scalars, as in a profile file, so ``32`` is an int, ``true``
    a bool, ``1e30`` a float and ``.inf`` infinity; a value that is not valid YAML stays
    the string given. A key given twice takes its last value. Unknown keys raise
    :class:`SpecError` listing the known ones.
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
                problems.append(f"--set {shown_value(item)}: expected KEY=VALUE with a dotted key, e.g. array.rows=32")
                continue
            try:
                value = _parse_yaml(raw) if raw.strip() else None
            except (yaml.YAMLError, ValueError, OverflowError):
                value = raw  # not a YAML scalar: validated (and reported) as the string given
            pairs.append((key.strip(), value))
    for key, _ in pairs:
        if key not in FIELDS:
            shown = key if isinstance(key, str) and key.isprintable() and len(key) <= 100 else shown_value(key)
            problems.append(f"--set {shown}: unknown key; known keys: {', '.join(FIELDS)}")
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
        A shipped profile name (see ``ecc profiles``) or a path to a YAML file. A name
        that is also a file in the working directory is an error: pass ``./NAME`` or
        the shipped file's path.
    overrides : list of "KEY=VALUE" str, or mapping, optional
        Dotted-key overrides applied before validation, e.g. ``["array.rows=32"]``.

    Returns
    -------
    Profile

    Raises
    ------
    SpecError
        Naming the file, every invalid key, what it accepts and what it holds; also
        for a file that is not YAML, repeats a key or nests deeper than a profile can.

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
    return yaml.dump(profile.to_dict(), Dumper=_ProfileDumper, sort_keys=False, allow_unicode=True, width=100)


def with_overrides(profile: Profile, overrides: Iterable[str] | Mapping[str, Any]) -> Profile:
    """``profile`` with dotted-key ``overrides`` applied, validated like a file."""
    parsed = parse_overrides(overrides)
    return Profile.from_flat(validate_tree(_apply(profile.to_dict(), parsed), f"{profile.name} (with overrides)"))
