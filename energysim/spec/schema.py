"""Declarative schema of a hardware profile: every key, its type, range and default.

The table below is the single source of truth for the YAML layout. Validation walks
it once, collects every problem, and only then raises, so a user fixing a profile
sees all mistakes in one go (as ZigZag's ``AcceleratorValidator`` does).
"""

from __future__ import annotations

import math
import numbers
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BANDWIDTH_RANGE",
    "CLOCK_MHZ_RANGE",
    "FIELDS",
    "MAX_ARRAY_SIDE",
    "MAX_BUFFER_WORDS",
    "MAX_ENERGY",
    "MAX_PES",
    "MAX_RF_WORDS",
    "MAX_NM_M",
    "MAX_WORD_BITS",
    "NM_M_CHOICES",
    "SCHEMA_VERSION",
    "Field",
    "SpecError",
    "set_dotted",
    "shown_value",
    "validate_tree",
]

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


# Upper bounds that keep every downstream count inside int64 and the cycle trace's int32
# per-cycle PE counts, far beyond any real accelerator (a TPU v1 has 256 x 256 PEs and
# 24 MiB of buffer). Worked case: 46341 x 46341 PEs is 2**31 + 4633, which overflowed
# the trace; at most 2**24 PEs and 2**40 words per buffer leave ample headroom.
MAX_ARRAY_SIDE = 2**16
MAX_PES = 2**24
MAX_BUFFER_WORDS = 2**40
MAX_RF_WORDS = 2**20
MAX_WORD_BITS = 64
# Energies and leakage: 1e9 (pJ or MAC-relative) per access is absurd yet keeps sums over
# 1e15 accesses far from float overflow. The floors keep leakage (leakage_mw * cycles /
# clock_mhz) finite and stall cycles (ceil(words / bandwidth), int64) from overflowing.
MAX_ENERGY = 1e9
# N:M structured sparsity: M is a power of two (the index of a kept weight is log2 M bits),
# at most 16 (the widest operand-selection multiplexer the model prices as one access).
MAX_NM_M = 16
NM_M_CHOICES = (2, 4, 8, 16)
CLOCK_MHZ_RANGE = (1e-3, 1e6)
BANDWIDTH_RANGE = (1e-3, 1e9)

# A number's repr in a message is cut to this many characters (a profile can hold
# a 4000-digit integer or a long string).
_SHOWN_CHARS = 60


def shown_value(value: Any) -> str:
    """``repr(value)`` shortened for an error line: long strings and containers are cut,
    huge integers are written as ``1e+30`` or ``an integer of N digits``.

    Parameters
    ----------
    value : Any
        A value read from a profile or an override.

    Returns
    -------
    str

    Examples
    --------
    >>> shown_value(10**30), shown_value("many")
    ('1e+30', "'many'")
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        if value.bit_length() > 1000:
            # Counted without str(), which refuses integers of more than 4300 digits.
            digits = int(value.bit_length() * math.log10(2)) + 1
            digits -= abs(value) < 10 ** (digits - 1)
            return f"an integer of {digits} digits"
        return f"{float(value):g}"
    shortener = reprlib.Repr()
    shortener.maxstring = shortener.maxother = _SHOWN_CHARS
    shortener.maxlevel = 3
    return shortener.repr(value)


@dataclass(frozen=True)
class Field:
    """One leaf key of the profile tree (or one field of another table of settings, such as
    ``compress.config``'s).

    ``minimum``/``positive`` are the sign constraint; ``smallest`` (a floor above zero,
    inclusive) and ``maximum`` (inclusive) or ``below`` (exclusive) the range the model
    can compute with. Numbers are any real numbers but bools (numpy's included).
    ``test`` is a further rule that a value of the right kind must pass; ``expected``
    words what a value must be, for every failed check, where the generic words of
    :meth:`describe` do not fit (a table for Python callers, a rule of ``test``).
    """

    kind: str  # "int", "float", "str", "bool", "choice" or "tuple"
    default: Any = _REQUIRED
    minimum: float | None = None  # inclusive lower bound
    positive: bool = False  # strictly > 0
    maximum: float | None = None  # inclusive upper bound
    below: float | None = None  # exclusive upper bound
    smallest: float | None = None  # inclusive floor of a positive number
    infinite: bool = False  # .inf is accepted (unlimited)
    single_line: bool = False  # a non-empty string of printable characters (no line breaks)
    choices: tuple[str, ...] | None = None
    nullable: bool = False
    strict: bool = False  # "int": int values only (otherwise a float such as YAML's 2.0 is one too)
    items: Field | None = None  # "tuple": what each item must be
    test: Callable[[Any], bool] | None = None
    expected: str = ""
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def describe(self) -> str:
        """What the key accepts, in words, for type and sign errors."""
        if self.expected:
            return self.expected
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "str" and self.single_line:
            return "a non-empty single line of printable characters"
        if self.kind == "tuple":
            return "a tuple" + ("" if self.items is None else f" of items each {self.items.describe()}")
        word = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}[self.kind]
        if self.positive:
            word += " > 0"
        elif self.minimum is not None:
            word += f" >= {self.minimum:g}"
        if self.nullable:
            word += " (or null)"
        return word

    def describe_range(self) -> str:
        """The whole accepted range in words, for a number outside it."""
        if self.expected:
            return self.expected
        word, spell = ("an integer", "{:d}") if self.kind == "int" else ("a number", "{:g}")
        low = self.smallest
        if low is None:
            low = 1 if self.positive and self.kind == "int" else self.minimum
        if self.maximum is None:  # the exclusive bound, below
            high = f"< {self.below:g}"
            if low is None:
                word += f" > 0 and {high}" if self.positive else f" {high}"
            else:
                word += f" >= {spell.format(low)} and {high}"
        else:
            high = spell.format(self.maximum)
            if low is None:
                word += f" > 0 and <= {high}" if self.positive else f" <= {high}"
            else:
                word += f" from {spell.format(low)} to {high}"
        if self.infinite:
            word += ", or .inf for unlimited"
        if self.nullable:
            word += " (or null)"
        return word

    def check(self, value: Any) -> str | None:
        """Return None when ``value`` is acceptable, else what was expected."""
        if value is None:
            return None if self.nullable else self.describe()
        expected = self._check_kind(value)
        if expected is None and self.test is not None and not self.test(value):
            return self.describe()
        return expected

    def _check_kind(self, value: Any) -> str | None:
        """``check`` of a value that is not None, before ``test``."""
        if self.kind == "bool":
            return None if isinstance(value, bool) else self.describe()
        if self.kind == "tuple":
            if not isinstance(value, tuple) or (self.items is not None and any(self.items.check(v) for v in value)):
                return self.describe()
            return None
        if self.kind in ("str", "choice"):
            if not isinstance(value, str):
                return self.describe()
            if self.kind == "choice" and value not in self.choices:
                return self.describe()
            if self.single_line and not (value.strip() and value.isprintable()):
                return self.describe()
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return self.describe()
        fractional = not isinstance(value, numbers.Integral)
        if fractional and self.kind == "int" and self.strict:
            return self.describe()
        # NaN and the sign first: math functions on a huge int would overflow, comparisons do not.
        if fractional and math.isnan(value):
            return self.describe()
        if self.positive and not value > 0:
            return self.describe()
        if self.minimum is not None and not value >= self.minimum:
            return self.describe()
        bounded = self.maximum is not None or self.below is not None
        if fractional and math.isinf(value):
            return None if self.infinite else self.describe_range() if bounded else self.describe()
        if (self.maximum is not None and value > self.maximum) or (self.below is not None and not value < self.below):
            return self.describe_range()
        if self.smallest is not None and value < self.smallest:
            return self.describe_range()
        if self.kind == "int" and fractional and not float(value).is_integer():
            return self.describe()
        return None


_ENERGY = dict(kind="float", minimum=0.0, maximum=MAX_ENERGY)
_BUFFER = dict(kind="int", default=None, minimum=0, maximum=MAX_BUFFER_WORDS, nullable=True)

FIELDS: dict[str, Field] = {
    "version": Field("int", choices=None, positive=True, doc="schema version of this file (currently 1)"),
    "name": Field("str", single_line=True, doc="profile name, used to load it by name"),
    "description": Field("str", default="", doc="free text"),
    "source": Field("str", doc="where the numbers come from"),
    "units": Field("choice", choices=("pJ", "normalized"), doc="unit of every energy; normalized = MAC-relative"),
    "word_bits": Field("int", positive=True, maximum=MAX_WORD_BITS, doc="bits per data word"),
    "clock_mhz": Field(
        "float", positive=True, smallest=CLOCK_MHZ_RANGE[0], maximum=CLOCK_MHZ_RANGE[1], doc="clock frequency"
    ),
    "array.rows": Field("int", positive=True, maximum=MAX_ARRAY_SIDE, doc="PE rows (rows x cols <= 2**24)"),
    "array.cols": Field("int", positive=True, maximum=MAX_ARRAY_SIDE, doc="PE columns (rows x cols <= 2**24)"),
    "array.dataflow": Field("choice", choices=("ws", "os", "is"), doc="weight-, output- or input-stationary"),
    "array.preload_overlap": Field(
        "bool", default=False,
        doc="double-buffered PE registers: the next stationary tile loads during the current fold "
        "(false: SCALE-Sim's timing, every fold pays its preload)",
    ),
    "mapping.search": Field(
        "choice", default="scalesim", choices=("scalesim", "energy", "latency", "edp"),
        doc="per layer, SCALE-Sim's fixed loop order, or the loop order and stream tiling that minimise "
        "the dense layer's energy, cycles or energy x cycles",
    ),
    "memory.rf.words": Field("int", positive=True, maximum=MAX_RF_WORDS, doc="register-file words per PE"),
    "memory.rf.read": Field(**_ENERGY, doc="energy per RF read"),
    "memory.rf.write": Field(**_ENERGY, doc="energy per RF write"),
    "memory.buffer.ifmap_words": Field(**_BUFFER, doc="input buffer words"),
    "memory.buffer.filter_words": Field(**_BUFFER, doc="weight buffer words"),
    "memory.buffer.ofmap_words": Field(**_BUFFER, doc="output buffer words (0: outputs stream to DRAM)"),
    "memory.buffer.shared_words": Field(
        "int", default=None, positive=True, maximum=MAX_BUFFER_WORDS, nullable=True,
        doc="one buffer shared by all operands",
    ),
    "memory.buffer.read": Field(**_ENERGY, doc="energy per buffer word read"),
    "memory.buffer.write": Field(**_ENERGY, doc="energy per buffer word written"),
    "memory.dram.bandwidth_words_per_cycle": Field(
        "float", positive=True, smallest=BANDWIDTH_RANGE[0], maximum=BANDWIDTH_RANGE[1], infinite=True,
        doc="DRAM bandwidth (.inf for unlimited)",
    ),
    "memory.dram.read": Field(**_ENERGY, doc="energy per DRAM word read"),
    "memory.dram.write": Field(**_ENERGY, doc="energy per DRAM word written"),
    "compute.mac": Field(**_ENERGY, doc="energy of an effective MAC (both operands nonzero)"),
    "compute.gated_mac": Field(**_ENERGY | dict(default=0.0), doc="energy of a clock-gated MAC (a zero operand)"),
    "compute.nm_select": Field(
        **_ENERGY | dict(default=0.0),
        doc="energy of one operand selection of an N:M array (a PE picking its input among M, per MAC slot)",
    ),
    "leakage_mw": Field(**_ENERGY | dict(default=0.0), doc="leakage power of the whole accelerator"),
    "sparsity.weight_format": Field(
        "choice", default="dense", choices=("dense", "bitmask", "csr"), doc="how weights are stored and moved"
    ),
    "sparsity.skip_zero_tiles": Field("bool", default=False, doc="skip folds whose stationary tile is all zero"),
    "sparsity.nm.n": Field(
        "int", default=None, positive=True, maximum=MAX_NM_M - 1, nullable=True, strict=True,
        doc="N of N:M structured sparsity (at most N nonzeros in every M consecutive weights along K); absent: no N:M support",
    ),
    "sparsity.nm.m": Field(
        "int", default=None, nullable=True, strict=True, test=lambda m: m in NM_M_CHOICES,
        expected="one of " + ", ".join(str(m) for m in NM_M_CHOICES) + " (a power of two, at most 16)",
        doc="M of N:M structured sparsity (group length along K, a power of two <= 16)",
    ),
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
        if not isinstance(key, str) or key not in known_here:
            shown = shown_value(f"{prefix}{key}" if isinstance(key, str) else key)
            problems.append(
                f"{where}: unknown key {shown}; known keys{' under ' + prefix[:-1] if prefix else ''}: "
                + ", ".join(known_here)
            )
            continue
        path = f"{prefix}{key}"
        is_branch = path not in FIELDS
        if is_branch:
            if not isinstance(value, dict):
                problems.append(f"{where}: {path} must be a mapping, got {shown_value(value)}")
                continue
            _flatten(value, path + ".", out, problems, where)
        else:
            out[path] = value


def _cross_checks(flat: dict[str, Any], where: str) -> list[str]:
    """Checks that involve several keys (run only when every single key is valid)."""
    problems = []
    if flat["version"] != SCHEMA_VERSION:
        problems.append(f"{where}: version must be {SCHEMA_VERSION}, got {shown_value(flat['version'])}")
    pes = flat["array.rows"] * flat["array.cols"]
    if pes > MAX_PES:
        problems.append(
            f"{where}: array.rows x array.cols must be at most {MAX_PES} PEs, "
            f"got {flat['array.rows']} x {flat['array.cols']} = {pes}"
        )
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
    n, m = flat["sparsity.nm.n"], flat["sparsity.nm.m"]
    if (n is None) != (m is None):
        problems.append(f"{where}: sparsity.nm needs both n and m, got {'n' if m is None else 'm'} only")
    elif n is not None:
        if not n < m:
            problems.append(f"{where}: sparsity.nm.n must be < sparsity.nm.m ({m}), got {n}")
        if flat["array.dataflow"] != "ws":
            problems.append(
                f"{where}: sparsity.nm needs array.dataflow 'ws' (the PE holds the weight and its index "
                f"and selects its input), got {flat['array.dataflow']!r}"
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
            problems.append(f"{where}: {path} must be {expected}, got {shown_value(value)}")
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
