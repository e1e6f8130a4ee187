"""Group kinds: the registry from a kind's name (Network.add_group(kind=...)) to its definition.

Adding a kind: its own module with a GroupKind subclass, and one line here."""

from __future__ import annotations

from ..errors import GraphError
from .attention import Attention
from .base import GroupKind, InexactFold, Spec
from .conv import Conv
from .dense import Dense

KINDS: dict[str, GroupKind] = {kind.name: kind for kind in (Dense(), Conv(), Attention())}
DEFAULT = "dense"


def get_kind(name: str) -> GroupKind:
    """The kind called `name`; GraphError naming the known kinds if there is none."""
    try:
        return KINDS[name]
    except (KeyError, TypeError):
        raise GraphError(f"unknown group kind {name!r}; choose one of {', '.join(KINDS)}") from None


__all__ = ["KINDS", "DEFAULT", "GroupKind", "InexactFold", "Spec", "get_kind"]
