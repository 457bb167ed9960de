"""Declarative schema of a hardware profile: every key, its type, range and default.

The table below is the single source of truth for the YAML layout. Validation walks
it once, collects every problem, and only then raises, so a user fixing a profile
sees all mistakes in one go (as ZigZag's ``AcceleratorValidator`` does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Field", "FIELDS", "SCHEMA_VERSION", "SpecError", "set_dotted", "validate_tree"]

SCHEMA_VERSION = 1

_REQUIRED = object()


class SpecError(ValueError):
    """A hardware profile (or an override of it) is invalid.

    Attributes
    ----------
    problems : list of str
        One message per problem, each naming the file, the key path, what is
        allowed and what was received.
    """

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Field:
    """One leaf key of the profile tree."""

    kind: str  # "int", "float", "str", "bool" or "choice"
    default: Any = _REQUIRED
    minimum: float | None = None  # inclusive lower bound
    positive: bool = False  # strictly > 0
    choices: tuple[str, ...] | None = None
    nullable: bool = False
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def describe(self) -> str:
        """What the key accepts, in words, for error messages."""
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        word = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}[self.kind]
        if self.positive:
            word += " > 0"
        elif self.minimum is not None:
            word += f" >= {self.minimum:g}"
        if self.nullable:
            word += " (or null)"
        return word

    def check(self, value: Any) -> str | None:
        """Return None when ``value`` is acceptable, else what was expected."""
        if value is None:
            return None if self.nullable else self.describe()
        if self.kind == "bool":
            return None if isinstance(value, bool) else self.describe()
        if self.kind in ("str", "choice"):
            if not isinstance(value, str):
                return self.describe()
            if self.kind == "choice" and value not in self.choices:
                return self.describe()
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return self.describe()
        if self.kind == "int" and not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            return self.describe()
        if math.isnan(value):
            return self.describe()
        if self.kind == "int" and math.isinf(value):
            return self.describe()
        if self.positive and not value > 0:
            return self.describe()
        if self.minimum is not None and not value >= self.minimum:
            return self.describe()
        return None


_ENERGY = dict(kind="float", minimum=0.0)

FIELDS: dict[str, Field] = {
    "version": Field("int", choices=None, positive=True, doc="schema version of this file (currently 1)"),
    "name": Field("str", doc="profile name, used to load it by name"),
    "description": Field("str", default="", doc="free text"),
    "source": Field("str", doc="where the numbers come from"),
    "units": Field("choice", choices=("pJ", "normalized"), doc="unit of every energy; normalized = MAC-relative"),
    "word_bits": Field("int", positive=True, doc="bits per data word"),
    "clock_mhz": Field("float", positive=True, doc="clock frequency"),
    "array.rows": Field("int", positive=True, doc="PE rows"),
    "array.cols": Field("int", positive=True, doc="PE columns"),
    "array.dataflow": Field("choice", choices=("ws", "os", "is"), doc="weight-, output- or input-stationary"),
    "memory.rf.words": Field("int", positive=True, doc="register-file words per PE"),
    "memory.rf.read": Field(**_ENERGY, doc="energy per RF read"),
    "memory.rf.write": Field(**_ENERGY, doc="energy per RF write"),
    "memory.buffer.ifmap_words": Field("int", default=None, minimum=0, nullable=True, doc="input buffer words"),
    "memory.buffer.filter_words": Field("int", default=None, minimum=0, nullable=True, doc="weight buffer words"),
    "memory.buffer.ofmap_words": Field(
        "int", default=None, minimum=0, nullable=True, doc="output buffer words (0: outputs stream to DRAM)"
    ),
    "memory.buffer.shared_words": Field(
        "int", default=None, positive=True, nullable=True, doc="one buffer shared by all operands"
    ),
    "memory.buffer.read": Field(**_ENERGY, doc="energy per buffer word read"),
    "memory.buffer.write": Field(**_ENERGY, doc="energy per buffer word written"),
    "memory.dram.bandwidth_words_per_cycle": Field(
        "float", positive=True, doc="DRAM bandwidth (.inf for unlimited)"
    ),
    "memory.dram.read": Field(**_ENERGY, doc="energy per DRAM word read"),
    "memory.dram.write": Field(**_ENERGY, doc="energy per DRAM word written"),
    "compute.mac": Field(**_ENERGY, doc="energy of an effective MAC (both operands nonzero)"),
    "compute.gated_mac": Field("float", default=0.0, minimum=0.0, doc="energy of a clock-gated MAC (a zero operand)"),
    "leakage_mw": Field("float", default=0.0, minimum=0.0, doc="leakage power of the whole accelerator"),
    "sparsity.weight_format": Field(
        "choice", default="dense", choices=("dense", "bitmask", "csr"), doc="how weights are stored and moved"
    ),
    "sparsity.skip_zero_tiles": Field("bool", default=False, doc="skip folds whose stationary tile is all zero"),
}


def set_dotted(tree: dict[str, Any], path: str, value: Any) -> None:
    """Set ``tree["a"]["b"] = value`` for ``path = "a.b"``, creating (or replacing non-dict) parents."""
    node = tree
    *parents, leaf = path.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def _flatten(tree: Any, prefix: str, out: dict[str, Any], problems: list[str], where: str) -> None:
    """Flatten nested dicts to dotted keys, reporting keys that are not in the schema."""
    known_here = sorted({k[len(prefix):].split(".")[0] for k in FIELDS if k.startswith(prefix)})
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if not isinstance(key, str) or key not in known_here:
            problems.append(
                f"{where}: unknown key {path!r}; known keys{' under ' + prefix[:-1] if prefix else ''}: "
                + ", ".join(known_here)
            )
            continue
        is_branch = path not in FIELDS
        if is_branch:
            if not isinstance(value, dict):
                problems.append(f"{where}: {path} must be a mapping, got {value!r}")
                continue
            _flatten(value, path + ".", out, problems, where)
        else:
            out[path] = value


def _cross_checks(flat: dict[str, Any], where: str) -> list[str]:
    """Checks that involve several keys (run only when every single key is valid)."""
    problems = []
    if flat["version"] != SCHEMA_VERSION:
        problems.append(f"{where}: version must be {SCHEMA_VERSION}, got {flat['version']!r}")
    per_operand = ("memory.buffer.ifmap_words", "memory.buffer.filter_words", "memory.buffer.ofmap_words")
    given = [k for k in per_operand if flat[k] is not None]
    if flat["memory.buffer.shared_words"] is not None:
        if given:
            problems.append(
                f"{where}: memory.buffer takes either shared_words or per-operand capacities, "
                f"got both (shared_words and {', '.join(k.rsplit('.', 1)[1] for k in given)})"
            )
    elif len(given) != len(per_operand):
        missing = [k.rsplit(".", 1)[1] for k in per_operand if flat[k] is None]
        problems.append(
            f"{where}: memory.buffer needs shared_words or all of ifmap_words, filter_words, ofmap_words; "
            f"missing {', '.join(missing)}"
        )
    if flat["compute.gated_mac"] > flat["compute.mac"]:
        problems.append(
            f"{where}: compute.gated_mac must be <= compute.mac ({flat['compute.mac']:g}), got {flat['compute.gated_mac']:g}"
        )
    return problems


def validate_tree(tree: Any, where: str) -> dict[str, Any]:
    """Validate a parsed profile tree and return it flattened with defaults filled in.

    Parameters
    ----------
    tree : Any
        The parsed YAML document.
    where : str
        The file name (or other origin) to put in front of every message.

    Returns
    -------
    dict
        Dotted key -> value for every key of :data:`FIELDS`.

    Raises
    ------
    SpecError
        Listing every problem found.
    """
    if not isinstance(tree, dict):
        raise SpecError([f"{where}: a profile must be a YAML mapping of keys, got {type(tree).__name__}"])
    problems: list[str] = []
    flat: dict[str, Any] = {}
    _flatten(tree, "", flat, problems, where)
    resolved: dict[str, Any] = {}
    for path, field in FIELDS.items():
        if path not in flat:
            if field.required:
                problems.append(f"{where}: {path} is required ({field.describe()})")
            else:
                resolved[path] = field.default
            continue
        value = flat[path]
        expected = field.check(value)
        if expected is not None:
            problems.append(f"{where}: {path} must be {expected}, got {value!r}")
            continue
        if field.kind == "int" and value is not None:
            value = int(value)
        elif field.kind == "float" and value is not None:
            value = float(value)
        resolved[path] = value
    if not problems:
        problems = _cross_checks(resolved, where)
    if problems:
        raise SpecError(problems)
    return resolved
