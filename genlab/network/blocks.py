"""Parameter blocks by key, counted: the dict a Network keeps its weights and biases in."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .core import Network


class Blocks(dict):
    """A network's parameter blocks by key: a dict that counts replacements in the network's
    `version`, so a trainer holding the network sees them."""

    __slots__ = ("owner",)

    def __init__(self, owner: "Network", items=()):
        super().__init__(items)
        self.owner = owner

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.owner.version += 1

    def __delitem__(self, key) -> None:
        super().__delitem__(key)
        self.owner.version += 1

    def pop(self, *args):
        self.owner.version += 1
        return super().pop(*args)

    def update(self, *args, **kwargs) -> None:
        super().update(*args, **kwargs)
        self.owner.version += 1

    def setdefault(self, key, default=None):
        self.owner.version += key not in self
        return super().setdefault(key, default)

    def popitem(self):
        self.owner.version += 1
        return super().popitem()

    def clear(self) -> None:
        super().clear()
        self.owner.version += 1

    def __ior__(self, other):
        self.update(other)
        return self

    def __reduce__(self):
        return dict, (dict(self),)
