"""Who holds newer parameters than the network's own arrays.

While a Trainer steps a network, its engine keeps the parameters and the network's arrays lag
behind: a step never copies parameters back itself (on the GPU that would be a device-to-host copy
a step). Reading the network's parameters settles it first: its holder copies what it holds in.
The network keeps its holder by weak reference, so a dropped trainer leaves the network free; a
second trainer that takes the network settles the first one's parameters before it does.

Edits travel the other way through the network's version counter (blocks.py): the holder compares
the version it loaded with the network's before its next step, and nothing here calls it about them.
"""

import weakref
from typing import Protocol


class Holder(Protocol):
    """Whoever keeps a network's parameters between reads (genlab.Trainer)."""

    def sync(self) -> None:
        """Copy the parameters held into the network (nothing when the network has them already)."""


class Holding:
    """A network's link to its holder: at most one, weakly referenced."""

    __slots__ = ("_ref",)

    def __init__(self) -> None:
        self._ref: weakref.ref | None = None

    @property
    def holder(self) -> Holder | None:
        return self._ref() if self._ref is not None else None

    def take(self, holder: Holder) -> None:
        """`holder` holds the network from now on; the previous holder's parameters are copied in
        first (the network is settled)."""
        if self.holder is not holder:
            self.settle()
            self._ref = weakref.ref(holder)

    def settle(self) -> None:
        """Copy the holder's parameters into the network."""
        ref = self._ref  # read on every access to a network's parameters: kept to two lookups
        if ref is not None and (holder := ref()) is not None:
            holder.sync()
