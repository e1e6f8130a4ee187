"""The launches of the groups of kinds with kernels of their own inside the level passes: after
each level's dense launches, one launch per kind for that level's groups of the kind (the kind's
hooks: kind_cuda.py, found in the kind's folder); after the dense gradients, each kind's weight
and own gradients and the norms of all of them. In a sequence network, the output group's token
rows are averaged into the logits (and its gradient spread back over them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..kind_cuda import by_code
from ..records import addr

if TYPE_CHECKING:
    from ..context import PassContext


def forward(e: "PassContext", level: int, rows: int) -> None:
    """h of this level's groups of other kinds."""
    for code, slots in e.layout.kinds.levels.get(level, {}).items():
        by_code(code).forward(e, e.dev.kinds.by_level[level, code], slots, rows)


def backward(e: "PassContext", level: int, rows: int) -> None:
    """dz of this level's groups of other kinds (their consumers' dz are complete)."""
    for code, slots in e.layout.kinds.levels.get(level, {}).items():
        by_code(code).backward(e, e.dev.kinds.by_level[level, code], slots, rows)


def zero_added(e: "PassContext") -> None:
    """The gradients kernels add into start at zero (kind_cuda.KindCuda.zero_edges, zero_own)."""
    k = e.layout.kinds
    if len(k.zeroed):
        e.launch.keyed("zero_ranges", (len(k.zeroed), 1), dict(ranges=e.dev.kinds.zeroed, grads=e.dev.parameters.grads))


def gradients(e: "PassContext", rows: int, gradsq: int) -> None:
    """Each kind's gradients of the edges into its groups and of their own vectors, then the norms
    of all their gradients (into wstats and the step's gradsq)."""
    k = e.layout.kinds
    for code in sorted(k.slots):
        by_code(code).gradients(e, rows)
    if len(k.norm_ranges):
        e.launch.keyed("param_norms", (len(k.norm_ranges), 1), dict(
            ranges=e.dev.kinds.norm_ranges, grads=e.dev.parameters.grads, wstats=e.dev.sums.wstats, gradsq=gradsq))


def pool(e: "PassContext", rows: int) -> None:
    """A sequence network's logits: the mean of the output group's token rows."""
    L = e.layout
    T, n = L.kinds.tokens, int(L.width[L.output_slot])
    e.launch.flat("pool_tokens", rows // T * n, dict(
        rows=addr(e.dev.rows.act, e.block(L.output_slot)), pooled=e.dev.rows.pooled, samples=np.int32(rows // T),
        tokens=np.int32(T), classes=np.int32(n)))


def spread(e: "PassContext", rows: int) -> None:
    """The output group's dz on every token row: the logits' gradient / tokens."""
    L = e.layout
    T, n = L.kinds.tokens, int(L.width[L.output_slot])
    e.launch.flat("spread_tokens", rows * n, dict(
        dpooled=e.dev.rows.dpooled, drows=addr(e.dev.rows.dz, e.block(L.output_slot)), samples=np.int32(rows // T),
        tokens=np.int32(T), classes=np.int32(n)))
