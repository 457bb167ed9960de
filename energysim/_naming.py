"""Looking up a named item (layer, report, coefficients) with an error that lists the names."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

__all__ = ["find_named"]

T = TypeVar("T")


def find_named(items: Iterable[T], name: str, where: str) -> T:
    """The first item whose ``.name`` is ``name``; ValueError listing the names otherwise."""
    items = list(items)
    for item in items:
        if item.name == name:
            return item
    raise ValueError(f"{where} has no layer {name!r}; layers: {', '.join(i.name for i in items)}")
