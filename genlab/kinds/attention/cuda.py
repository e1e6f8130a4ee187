"""The attention kind on the CUDA engine (cuda/attention.cu): its geometry fields, the limit of its
kernels' shared memory, what its forward keeps for its backward (the engine's cache), its
forward and backward launches of a level's attention groups (several samples a block) and the
weight gradients of the edges into them. Imported by the CUDA engine (engines/cuda/kind_cuda.py
finds CUDA here), never by the kind."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ... import shapes
from ...engines.cuda.constants import ATT_SHARED, ATT_STAGED, GEO_FIELDS
from ...engines.cuda.kind_cuda import KindCuda, per_layout
from ...errors import BackendError
from .reference import Attention

if TYPE_CHECKING:
    from ...engines.cuda.context import KindContext
    from ...network import Network

# An attention block takes up to SAMPLES samples of its group, fewer where that would leave fewer
# than BLOCKS blocks in a launch (the samples share the block's staged weights and gradient sums;
# the blocks keep the GPU busy)
SAMPLES, BLOCKS = 8, 2048


class AttentionCuda(KindCuda):
    kind = Attention
    zero_own = True  # attention_backward adds each sample's share of the projections' gradients

    def geometry(self, options: dict, row: np.ndarray, field: dict[str, int]) -> None:
        row[field["HEADS"]], row[field["POSITIONS"]] = options["heads"], bool(options.get("positions"))

    def check(self, net: "Network", g: int) -> None:
        tokens, d, heads = shapes.tokens(net), net.widths[g], net.options[g]["heads"]
        need = 10 * tokens * d + 2 * heads * tokens * tokens
        if need > ATT_SHARED:
            raise BackendError(f"attention group {g} ({tokens} tokens x width {d}, {heads} heads) needs {need} "
                               f"floats of shared memory; the CUDA kernels hold {ATT_SHARED}: use the serial "
                               "engine or a smaller group")

    def cache_floats(self, net: "Network", g: int) -> int:
        T, d = shapes.tokens(net), net.widths[g]
        return 5 * T * d + net.options[g]["heads"] * T * T

    def forward(self, e: "KindContext", listed, slots: np.ndarray, rows: int) -> None:
        self._launch(e, listed, slots, rows, backward=False)

    def backward(self, e: "KindContext", listed, slots: np.ndarray, rows: int) -> None:
        self._launch(e, listed, slots, rows, backward=True)

    def _launch(self, e: "KindContext", listed, slots: np.ndarray, rows: int, backward: bool) -> None:
        """attention_forward or attention_backward over these slots: blocks of several samples
        (launch_blocks), the cache of the forward (capacity: the samples it has room for)."""
        kernel = "attention_backward" if backward else "attention_forward"
        grid, per_block, shared = launch_blocks(e, slots, rows, backward)
        tokens = e.layout.kinds.tokens
        e.launch.named(kernel, grid, e.dev.by_name,
                       dict(slots=listed, capacity=np.int32(e.batch_cap // tokens), samples=np.int32(rows // tokens),
                            per_block=np.int32(per_block), shared=np.int32(shared)), shared=4 * shared)

    def gradients(self, e: "KindContext", rows: int) -> None:
        """The weight gradients of the edges into attention groups (their own: in the backward)."""
        L, d = e.layout, e.dev
        edges = L.kinds.edges[Attention.code]
        most = max(int(np.prod(L.shapes[("W", L.groups[s], L.groups[t])])) for s, t, _ in edges)
        e.launch.named("token_weight_grad", (len(edges), -(-most // 32)), d.by_name,
                       dict(tasks=d.kinds.edges[Attention.code], rows=np.int32(rows)))


CUDA = AttentionCuda()


def launch_blocks(e: "KindContext", slots: np.ndarray, rows: int, backward: bool) -> tuple:
    """(grid, samples a block, floats of dynamic shared memory) of an attention launch over these
    slots: room for the largest work area, and for the staged weights (forward) or the gradient
    sums (backward) of every group whose own fit ATT_STAGED (cuda/attention.cu)."""
    floats = per_layout(launch_blocks, e.layout, shared_floats)
    shared = max(floats[s][backward] for s in slots)
    samples = rows // e.layout.kinds.tokens
    per_block = max(1, min(SAMPLES, samples * len(slots) // BLOCKS))
    return (len(slots), -(-samples // per_block)), per_block, shared


def shared_floats(L) -> dict:
    """{attention slot: (floats of shared memory its forward takes, its backward)}."""
    k = L.kinds
    T, heads = k.tokens, k.geo.reshape(-1, len(GEO_FIELDS))[:, GEO_FIELDS.index("HEADS")]
    odd = lambda n: n | 1
    sources = {}
    for src, dst, _ in k.edges[Attention.code]:
        sources.setdefault(int(dst), []).append(int(src))
    found = {}
    for s in (int(s) for s in k.slots[Attention.code]):
        d = int(L.width[s])
        n, pp = T * d, int(heads[s]) * T * T
        work, extra = 5 * n + pp, 4 * d * odd(d) + sum(d * odd(int(L.width[src])) for src in sources.get(s, ()))
        back, back_extra = 10 * n + 2 * pp, d + 4 * d * d
        found[s] = (work + extra if work + extra <= ATT_STAGED else work,
                    back + back_extra if back + back_extra <= ATT_STAGED else back)
    return found

