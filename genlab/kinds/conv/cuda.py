"""The conv kind on the CUDA engine (cuda/conv.cu): its geometry fields, its forward and backward
launches of a level's conv groups (staged in shared memory where every group of the launch fits),
the weight gradients of the edges into them and their bias gradients. Imported by the CUDA engine
(engines/cuda/kind_cuda.py finds CUDA here), never by the kind."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...engines.cuda.constants import CONV_CH, CONV_POS, CONV_SAMPLES, CONV_SHARED, GEO_FIELDS
from ...engines.cuda.kind_cuda import KindCuda, blocks, per_layout
from .reference import Conv

if TYPE_CHECKING:
    from ...engines.cuda.context import KindContext

# conv_forward_staged and conv_backward_staged run a level's conv groups where every one of them
# fits (False: never; the harness)
STAGED = BACKWARD_STAGED = True


class ConvCuda(KindCuda):
    kind = Conv
    zero_edges = True  # conv_weight_grad adds each edge's share of the samples

    def geometry(self, options: dict, row: np.ndarray, field: dict[str, int]) -> None:
        row[field["K"]], row[field["STRIDE"]] = options["kernel"], options["stride"]

    def forward(self, e: "KindContext", listed, slots: np.ndarray, rows: int) -> None:
        staged = STAGED and all(staging(e.layout)[s][0] for s in slots)
        e.launch.named("conv_forward_staged" if staged else "conv_forward",
                       (len(slots), blocks(rows * positions(e.layout, slots), CONV_POS)), e.dev.by_name,
                       dict(slots=listed, batch=np.int32(rows)))

    def backward(self, e: "KindContext", listed, slots: np.ndarray, rows: int) -> None:
        staged = BACKWARD_STAGED and all(staging(e.layout)[s][1] for s in slots)
        e.launch.named("conv_backward_staged" if staged else "conv_backward",
                       (len(slots), blocks(rows * positions(e.layout, slots), CONV_POS)), e.dev.by_name,
                       dict(slots=listed, batch=np.int32(rows)))

    def gradients(self, e: "KindContext", rows: int) -> None:
        weight_grad(e, rows)
        bias_grad(e, rows)


CUDA = ConvCuda()


def weight_grad(e: "KindContext", rows: int) -> None:
    """The weight gradients of the edges into conv groups (added: zeroed first)."""
    edges = e.layout.kinds.edges[Conv.code]
    e.launch.named("conv_weight_grad", (len(edges), (rows + CONV_SAMPLES - 1) // CONV_SAMPLES), e.dev.by_name,
                   dict(tasks=e.dev.kinds.edges[Conv.code], batch=np.int32(rows)))


def bias_grad(e: "KindContext", rows: int) -> None:
    """The conv groups' bias gradients."""
    k = e.layout.kinds
    slots = k.slots[Conv.code]
    channels = k.geo.reshape(-1, len(GEO_FIELDS))[slots, GEO_FIELDS.index("C")]
    e.launch.named("conv_bias_grad", (len(slots), int(channels.max())), e.dev.by_name,
                   dict(slots=e.dev.kinds.slots[Conv.code], batch=np.int32(rows)))


def positions(L, slots: np.ndarray) -> int:
    """The largest grid (H x W) of these conv groups."""
    geo = L.kinds.geo.reshape(-1, len(GEO_FIELDS))[slots]
    return int((geo[:, GEO_FIELDS.index("H")] * geo[:, GEO_FIELDS.index("W")]).max())


def forward_staged(L, s: int) -> bool:
    """Whether conv_forward_staged can run conv group s: a kernel of 1, 3 or 5, its weights (channels
    rounded up to CONV_CH) and one sample's input channels with their halo within CONV_SHARED floats."""
    geo, field = L.kinds.geo.reshape(-1, len(GEO_FIELDS)), GEO_FIELDS.index
    K, C = int(geo[s, field("K")]), int(geo[s, field("C")])
    edges = L.kinds.edges[Conv.code]
    sources = edges[edges[:, 1] == s, 0]
    channels = int(sum(geo[src, field("C")] for src in sources))
    H, W = (int(geo[sources[0], field(f)]) + K // 2 * 2 for f in ("H", "W"))
    return K in (1, 3, 5) and channels * K * K * -(-C // CONV_CH) * CONV_CH + channels * H * W <= CONV_SHARED


def backward_staged(L, s: int, consumers) -> bool:
    """Whether conv_backward_staged can run conv group s: every consumer dense, or conv of stride 1
    with a kernel of 1, 3 or 5 whose weights (s's channels rounded up to CONV_CH) and one sample's
    dz channels with their halo fit CONV_SHARED floats beside s's own values of a sample."""
    geo, field = L.kinds.geo.reshape(-1, len(GEO_FIELDS)), GEO_FIELDS.index
    C, H, W = (int(geo[s, field(f)]) for f in ("C", "H", "W"))
    own, rounded = -(-C * H * W // 4) * 4, -(-C // CONV_CH) * CONV_CH
    for d in consumers:
        if geo[d, field("KIND")] != Conv.code:
            continue
        K, Cd = int(geo[d, field("K")]), int(geo[d, field("C")])
        if geo[d, field("STRIDE")] != 1 or K not in (1, 3, 5):
            return False
        if own + Cd * K * K * rounded + Cd * (H + K - 1) * (W + K - 1) > CONV_SHARED:
            return False
    return own <= CONV_SHARED


def consumers(L) -> dict:
    """Each slot's consumers' slots."""
    out = {}
    for src, dst in L.edges:
        out.setdefault(L.slot[src], []).append(L.slot[dst])
    return out


def staging(L) -> dict:
    """{conv slot: (conv_forward_staged can run it, conv_backward_staged can)}, once a layout."""
    def build(L):
        by_slot = consumers(L)
        return {int(s): (forward_staged(L, s), backward_staged(L, s, by_slot.get(s, ())))
                for s in L.kinds.slots[Conv.code]}

    return per_layout(staging, L, build)
