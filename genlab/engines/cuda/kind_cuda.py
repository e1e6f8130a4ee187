"""The CUDA side of a group kind with kernels of its own (GroupKind.own_kernels): what the engine
asks of it, as an interface (KindCuda), and where it is found: the `cuda` module of the kind's
folder (genlab/kinds/<name>/cuda.py, its CUDA object), so that the kind's line in KINDS registers
both sides. Dense groups run on the engine's own task lists and need none.

Around a kind's hooks, the engine does the shared part (kind_lists.py, executors/kinds.py): every
group's geometry row, the slots of each kind level by level, the edges into each kind's groups,
the gradients its kernels add into (zeroed first) and the norms of its parameters' gradients."""

from __future__ import annotations

import importlib
import sys
import weakref
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ...errors import BackendError
from ...kinds import KINDS, GroupKind
from .constants import THREADS

if TYPE_CHECKING:
    from ...network import Network
    from .context import KindContext


class KindCuda(ABC):
    """One kind's CUDA side. `listed`: the device list of the slots a launch runs (a level's groups
    of the kind); `slots`: the same on the host; `rows`: the rows of the batch."""

    kind: ClassVar[type[GroupKind]]
    zero_edges: ClassVar[bool] = False  # its kernels add the gradients of the edges into its groups
    zero_own: ClassVar[bool] = False  # ... of its groups' own vectors (both start at zero)

    def geometry(self, options: dict, row: np.ndarray, field: dict[str, int]) -> None:
        """Write the kind's own fields of a group's geometry row (cuda/constants.cuh's GEO_*)."""

    def check(self, net: "Network", g: int) -> None:
        """BackendError where its kernels cannot run group g (the kind's limits on the GPU)."""

    def cache_floats(self, net: "Network", g: int) -> int:
        """Floats a sample that its forward keeps for its backward (the engine's cache, Rows)."""
        return 0

    @abstractmethod
    def forward(self, e: "KindContext", listed, slots: np.ndarray, rows: int) -> None:
        """h of these groups (their inputs' h are complete)."""

    @abstractmethod
    def backward(self, e: "KindContext", listed, slots: np.ndarray, rows: int) -> None:
        """dz of these groups (their consumers' dz are complete), their sums of dL/dh."""

    @abstractmethod
    def gradients(self, e: "KindContext", rows: int) -> None:
        """The gradients of the edges into every group of the kind and of their own vectors."""


_FOUND: dict[int, KindCuda] = {}


def of(kind: GroupKind) -> KindCuda:
    """The CUDA side of a kind with kernels of its own: CUDA in the cuda module of its folder."""
    found = _FOUND.get(kind.code)
    if found is None:
        folder = sys.modules[type(kind).__module__].__package__  # the kind's folder (a package)
        try:
            module = importlib.import_module(f"{folder}.cuda")
        except ModuleNotFoundError as missing:
            if missing.name != f"{folder}.cuda":
                raise
            raise BackendError(f"{kind.name} groups have kernels of their own, but {folder}.cuda, their CUDA "
                               f"side, does not exist: a kind with kernels of its own is a folder with a cuda "
                               f"module (genlab/kinds/conv/ shows one)") from None
        found = getattr(module, "CUDA", None)
        if not isinstance(found, KindCuda) or found.kind is not type(kind):
            raise BackendError(f"{folder}.cuda.CUDA is not the KindCuda of {type(kind).__name__}: the CUDA "
                               f"engine cannot run {kind.name} groups")
        _FOUND[kind.code] = found
    return found


def by_code(code: int) -> KindCuda:
    """The CUDA side of the kind numbered `code` (its KIND_<NAME> in the kernels)."""
    found = _FOUND.get(code)  # (every launch of the kind asks: no walk of the registry once found)
    return found if found is not None else of(next(kind for kind in KINDS.values() if kind.code == code))


def blocks(n: int, per_thread: int = 1) -> int:
    """Blocks of THREADS threads for n items, per_thread items a thread."""
    return (n + THREADS * per_thread - 1) // (THREADS * per_thread)


_PER_LAYOUT: dict = {}  # owner: {layout: what build made of it}


def per_layout(owner, L, build):
    """build(L), worked out once a layout (a layout does not change; growth makes a new one)
    rather than at every launch, and kept as long as the layout lives; `owner` keeps one user's
    apart from another's."""
    cache = _PER_LAYOUT.setdefault(owner, weakref.WeakKeyDictionary())
    found = cache.get(L)
    if found is None:
        found = cache[L] = build(L)
    return found
