"""The launches of the groups of other kinds (conv.cu, attention.cu) inside the level passes:
after each level's dense launches, one launch per kind for that level's groups of the kind; after
the dense gradients, their weight and bias gradients and norms. In a sequence network, the output
group's token rows are averaged into the logits (and its gradient spread back over them)."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np

from ....kinds.attention import Attention
from ....kinds.conv import Conv
from ..constants import ATT_STAGED, CONV_CH, CONV_POS, CONV_SAMPLES, CONV_SHARED, GEO_FIELDS, THREADS
from ..records import addr

if TYPE_CHECKING:
    from ..engine import CudaEngine


def _blocks(n: int, per_thread: int = 1) -> int:
    return (n + THREADS * per_thread - 1) // (THREADS * per_thread)


# conv_forward_staged and conv_backward_staged run a level's conv groups where every one of them
# fits (False: never; the harness)
CONV_STAGED = CONV_BACKWARD_STAGED = True


def _conv_forward(e: "CudaEngine", listed, slots: np.ndarray, rows: int) -> None:
    d = e.dev
    g, c, r, p = d.groups, d.csr, d.rows, d.parameters
    staged = CONV_STAGED and all(_staged(e.layout)[s][0] for s in slots)
    kernel = "conv_forward_staged" if staged else "conv_forward"
    e.launch(kernel, (len(slots), _blocks(rows * _positions(e.layout, slots), CONV_POS)), listed, g.geo,
             g.width, r.act_off, g.bias_off, c.in_ptr, c.in_src, c.in_woff, p.params, r.act,
             np.int32(rows))


def _conv_staged(L, s: int) -> bool:
    """Whether conv_forward_staged can run conv group s: a kernel of 1, 3 or 5, its weights (channels
    rounded up to CONV_CH) and one sample's input channels with their halo within CONV_SHARED floats."""
    geo, field = L.kinds.geo.reshape(-1, len(GEO_FIELDS)), GEO_FIELDS.index
    K, C = int(geo[s, field("K")]), int(geo[s, field("C")])
    sources = L.kinds.conv_edges[L.kinds.conv_edges[:, 1] == s, 0]
    channels = int(sum(geo[src, field("C")] for src in sources))
    H, W = (int(geo[sources[0], field(f)]) + K // 2 * 2 for f in ("H", "W"))
    return K in (1, 3, 5) and channels * K * K * -(-C // CONV_CH) * CONV_CH + channels * H * W <= CONV_SHARED


def _per_layout(cache: "weakref.WeakKeyDictionary", L, build) -> dict:
    """build(L), worked out once a layout (a layout does not change; growth makes a new one)
    rather than at every launch, and kept as long as the layout lives."""
    found = cache.get(L)
    if found is None:
        found = cache[L] = build(L)
    return found


# layout: {conv slot: (conv_forward_staged can run it, conv_backward_staged can)}
_STAGED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _staged(L) -> dict:
    def build(L):
        consumers = _consumers(L)
        return {int(s): (_conv_staged(L, s), _conv_backward_staged(L, s, consumers.get(s, ())))
                for s in L.kinds.conv_slots}

    return _per_layout(_STAGED, L, build)


def _conv_backward(e: "CudaEngine", listed, slots: np.ndarray, rows: int) -> None:
    L, d = e.layout, e.dev
    g, c, r, p, sums = d.groups, d.csr, d.rows, d.parameters, d.sums
    staged = CONV_BACKWARD_STAGED and all(_staged(L)[s][1] for s in slots)
    e.launch("conv_backward_staged" if staged else "conv_backward",
             (len(slots), _blocks(rows * _positions(L, slots), CONV_POS)), listed, g.geo, g.width,
             r.act_off, c.out_ptr, c.out_dst, c.out_woff, p.params, r.act, r.dz, np.int32(rows),
             sums.stats)


def _consumers(L) -> dict:
    """Each slot's consumers' slots."""
    out = {}
    for src, dst in L.edges:
        out.setdefault(L.slot[src], []).append(L.slot[dst])
    return out


def _conv_backward_staged(L, s: int, consumers) -> bool:
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


# An attention block takes up to ATTENTION_SAMPLES samples of its group, fewer where that would
# leave fewer than ATTENTION_BLOCKS blocks in a launch (the samples share the block's staged
# weights and gradient sums; the blocks keep the GPU busy)
ATTENTION_SAMPLES, ATTENTION_BLOCKS = 8, 2048


def _attention_forward(e: "CudaEngine", listed, slots: np.ndarray, rows: int) -> None:
    d = e.dev
    g, c, r, p = d.groups, d.csr, d.rows, d.parameters
    grid, per_block, shared = _attention_blocks(e, slots, rows, backward=False)
    e.launch("attention_forward", grid, listed, g.geo, g.width, r.act_off, g.bias_off, c.in_ptr,
             c.in_src, c.in_woff, p.params, r.act, *_cache(e), np.int32(rows // e.layout.kinds.tokens),
             np.int32(per_block), np.int32(shared), shared=4 * shared)


def _attention_backward(e: "CudaEngine", listed, slots: np.ndarray, rows: int) -> None:
    d = e.dev
    g, c, r, p, sums = d.groups, d.csr, d.rows, d.parameters, d.sums
    grid, per_block, shared = _attention_blocks(e, slots, rows, backward=True)
    e.launch("attention_backward", grid, listed, g.geo, g.width, r.act_off, g.bias_off, c.out_ptr,
             c.out_dst, c.out_woff, p.params, r.act, r.dz, p.grads, sums.stats, *_cache(e),
             np.int32(rows // e.layout.kinds.tokens), np.int32(per_block), np.int32(shared), shared=4 * shared)


def _attention_blocks(e: "CudaEngine", slots: np.ndarray, rows: int, backward: bool) -> tuple:
    """(grid, samples a block, floats of dynamic shared memory) of an attention launch over these
    slots: room for the largest work area, and for the staged weights (forward) or the gradient
    sums (backward) of every group whose own fit ATT_STAGED (cuda/attention.cu)."""
    floats = _attention_floats(e.layout)
    shared = max(floats[s][backward] for s in slots)
    samples = rows // e.layout.kinds.tokens
    per_block = max(1, min(ATTENTION_SAMPLES, samples * len(slots) // ATTENTION_BLOCKS))
    return (len(slots), -(-samples // per_block)), per_block, shared


# layout: {attention slot: (floats of shared memory its forward takes, its backward)}
_ATTENTION_FLOATS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _attention_floats(L) -> dict:
    return _per_layout(_ATTENTION_FLOATS, L, _attention_shared)


def _attention_shared(L) -> dict:
    k = L.kinds
    T, heads = k.tokens, k.geo.reshape(-1, len(GEO_FIELDS))[:, GEO_FIELDS.index("HEADS")]
    odd = lambda n: n | 1
    sources = {}
    for src, dst, _ in k.token_edges:
        sources.setdefault(int(dst), []).append(int(src))
    found = {}
    for s in (int(s) for by in k.levels.values() for s in by.get(Attention.code, ())):
        d = int(L.width[s])
        n, pp = T * d, int(heads[s]) * T * T
        work, extra = 5 * n + pp, 4 * d * odd(d) + sum(d * odd(int(L.width[src])) for src in sources.get(s, ()))
        back, back_extra = 10 * n + 2 * pp, d + 4 * d * d
        found[s] = (work + extra if work + extra <= ATT_STAGED else work,
                    back + back_extra if back + back_extra <= ATT_STAGED else back)
    return found


# each kind's (forward, backward) launch of one level's groups, by the kind's code
LAUNCHES = {Conv.code: (_conv_forward, _conv_backward), Attention.code: (_attention_forward, _attention_backward)}


def forward(e: "CudaEngine", level: int, rows: int) -> None:
    """h of this level's groups of other kinds."""
    for code, slots in e.layout.kinds.levels.get(level, {}).items():
        LAUNCHES[code][0](e, e.dev.kinds.by_level[level, code], slots, rows)


def backward(e: "CudaEngine", level: int, rows: int) -> None:
    """dz of this level's groups of other kinds (their consumers' dz are complete)."""
    for code, slots in e.layout.kinds.levels.get(level, {}).items():
        LAUNCHES[code][1](e, e.dev.kinds.by_level[level, code], slots, rows)


def _cache(e: "CudaEngine") -> tuple:
    """The attention kernels' last arguments: the cache of their forward, each slot's place in it,
    the samples it holds."""
    return e.dev.rows.att_cache, e.dev.groups.cache_off, np.int32(e.batch_cap // e.layout.kinds.tokens)


def zero_added(e: "CudaEngine") -> None:
    """The gradients kernels add into start at zero (attention groups' own, conv edges')."""
    k = e.layout.kinds
    if len(k.zeroed):
        e.launch("zero_ranges", (len(k.zeroed), 1), e.dev.kinds.zeroed, e.dev.parameters.grads)


def gradients(e: "CudaEngine", rows: int, gradsq: int) -> None:
    """The weight gradients of the edges into conv and attention groups, the conv biases, and the
    norms of all their gradients (into wstats and the step's gradsq)."""
    L, d, k = e.layout, e.dev, e.layout.kinds
    g, r, p, sums, kl = d.groups, d.rows, d.parameters, d.sums, d.kinds
    if len(k.conv_edges):
        conv_weight_grad(e, rows)
        conv_bias_grad(e, rows)
    if len(k.token_edges):
        most = max(int(np.prod(L.shapes[key])) for key in _keys(L, k.token_edges))
        e.launch("token_weight_grad", (len(k.token_edges), -(-most // 32)), kl.token_edges, g.width,
                 r.act_off, r.act, r.dz, p.grads, np.int32(rows))
    if len(k.norm_ranges):
        e.launch("param_norms", (len(k.norm_ranges), 1), kl.norm_ranges, p.grads, sums.wstats, gradsq)


def conv_weight_grad(e: "CudaEngine", rows: int) -> None:
    """The weight gradients of the edges into conv groups (added: zero_added first)."""
    d, k = e.dev, e.layout.kinds
    g, r, p, kl = d.groups, d.rows, d.parameters, d.kinds
    e.launch("conv_weight_grad", (len(k.conv_edges), (rows + CONV_SAMPLES - 1) // CONV_SAMPLES),
             kl.conv_edges, g.geo, g.width, r.act_off, r.act, r.dz, p.grads, np.int32(rows))


def conv_bias_grad(e: "CudaEngine", rows: int) -> None:
    """The conv groups' bias gradients."""
    d, k = e.dev, e.layout.kinds
    g, r, p, kl = d.groups, d.rows, d.parameters, d.kinds
    channels = k.geo.reshape(-1, len(GEO_FIELDS))[k.conv_slots, GEO_FIELDS.index("C")]
    e.launch("conv_bias_grad", (len(k.conv_slots), int(channels.max())), kl.conv_slots, g.geo, g.width,
             r.act_off, g.bias_off, r.dz, p.grads, np.int32(rows))


def _positions(L, slots: np.ndarray) -> int:
    """The largest grid (H x W) of these conv groups."""
    geo = L.kinds.geo.reshape(-1, len(GEO_FIELDS))[slots]
    return int((geo[:, GEO_FIELDS.index("H")] * geo[:, GEO_FIELDS.index("W")]).max())


def _keys(L, tasks: np.ndarray) -> list:
    return [("W", L.groups[s], L.groups[d]) for s, d, _ in tasks]


def pool(e: "CudaEngine", rows: int) -> None:
    """A sequence network's logits: the mean of the output group's token rows."""
    L = e.layout
    T, n = L.kinds.tokens, int(L.width[L.output_slot])
    e.launch.flat("pool_tokens", rows // T * n, addr(e.dev.rows.act, e.block(L.output_slot)), e.dev.rows.pooled,
                  np.int32(rows // T), np.int32(T), np.int32(n))


def spread(e: "CudaEngine", rows: int) -> None:
    """The output group's dz on every token row: the logits' gradient / tokens."""
    L = e.layout
    T, n = L.kinds.tokens, int(L.width[L.output_slot])
    e.launch.flat("spread_tokens", rows * n, e.dev.rows.dpooled, addr(e.dev.rows.dz, e.block(L.output_slot)),
                  np.int32(rows // T), np.int32(T), np.int32(n))
