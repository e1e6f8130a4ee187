"""Everything that follows from the topology, built on the GPU (cuda/topology.cu): the edge list,
the CSR of in-edges and out-edges, the level of each group, and each tier's task lists, plus the
per-group scratch of the growth rules and pruning. A few kilobytes, rebuilt when the topology
changes; the parameters and optimizer state are not touched here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .constants import TILE
from .layout import Layout

if TYPE_CHECKING:
    from .engine import CudaEngine

SLOT_ARRAYS = ("width", "col_off", "bias_off", "group_id", "hidden")
EDGE_ARRAYS = ("e_src", "e_dst", "e_woff", "e_inpos", "e_outpos")


def build(e: "CudaEngine", ix: Layout, cap: int, edges: dict | None = None) -> dict:
    """New buffers for everything that follows from layout ix (all but parameters, optimizer
    state and growth scores), for batches of up to cap rows: the edge list (`edges`: the current
    one, extended; None: a new one) receives ix.records, then the GPU builds the CSR, the levels
    and the task lists. Sets ix's level and task counts (ix.tiers and the first tier's lists)."""
    arrays = {name: getattr(ix, name) for name in SLOT_ARRAYS}
    arrays.update(task_width=ix.kinds.task_width, geo=ix.kinds.geo, cache_off=ix.kinds.cache_off, **_kind_lists(ix))
    if ix.records:
        arrays["records"] = np.array(ix.records, np.int32)
    block, new = e.mem.upload_all(arrays)  # one copy up: each of these is a round trip alone
    new["uploads"] = block
    passes = _passes(e, ix)
    counts, spans, rest = _sizes(ix, passes)
    new["topology"], parts = e.mem.arena({**counts, **spans, **rest}, "topology")  # one allocation
    new.update(parts)
    start, nbytes = _run(new, counts)
    e.drv.memset_d32_async(start, 0, nbytes // 4, e.stream)
    _edge_list(e, ix, new, edges, new.pop("records", None))
    _csr_and_levels(e, ix, new)
    _task_lists(e, ix, new, passes, spans)
    new.update(e.executor.topology_buffers(ix))
    new.update(e.batch_buffers(ix, cap))
    reset_ranges(e, new, ix.n_cols)
    return new


def _sizes(ix: Layout, passes: list) -> tuple[dict, dict, dict]:
    """Bytes of every buffer that follows from the layout, in three runs: the counts the task
    lists start from (zeroed together), the spans of the lists (read back together), the rest."""
    n, E, cols = len(ix.groups), ix.n_edges, ix.n_cols
    tiers = [pre for pre, *_ in passes]
    counts = {"in_deg": n, "out_deg": n, "bias_count": n + 1,
              **{pre + name: n + 1 for pre in tiers for name in ("fwd_count", "bwd_count", "fwd_cursor", "bwd_cursor")}}
    spans = {"bias_ptr": n + 2, **{pre + name: size for pre in tiers
                                   for name, size in (("fwd_ptr", n + 2), ("bwd_ptr", n + 2), ("weight_ptr", E + 1))}}
    rest = {**{name: E for name in EDGE_ARRAYS}, "in_ptr": n + 1, "out_ptr": n + 1, "level": n,
            **{name: E for name in ("in_src", "in_dst", "in_woff", "out_dst", "out_woff")},
            **{pre + "weight_count": E for pre in tiers},
            "stats": 6 * n, "wstats": 2 * n, "scalars": 6, "replica_sums": 2 * (3 * n + 2), "population": 4, "eligible": n, "marked": n,
            "keep": n, "rank": n, "constant": n, **{name: cols for name in
                                                    ("range_min", "range_max", "run_lo", "run_hi", "run_const")}}
    bytes_of = lambda d: {name: 4 * words for name, words in d.items()}
    return bytes_of(counts), bytes_of(spans), bytes_of(rest)


def _run(parts: dict, sizes: dict) -> tuple[int, int]:
    """(address, bytes) of the memory from the first of `sizes`' parts to the end of its last
    (parts of an arena made in that order: alignment gaps included)."""
    names = list(sizes)
    start = parts[names[0]]
    return start, parts[names[-1]] + sizes[names[-1]] - start


def reset_ranges(e: "CudaEngine", b: dict, n_cols: int) -> None:
    """The running activation ranges start empty: +inf below, -inf above."""
    e.mem.fill(b["run_lo"], 0x7F800000, n_cols)
    e.mem.fill(b["run_hi"], 0xFF800000, n_cols)


def _edge_list(e: "CudaEngine", ix: Layout, new: dict, edges: dict | None, records) -> None:
    """The edge list (in new): a copy of the current one (so that a failure leaves it intact),
    extended with ix.records (uploaded at `records`) on the GPU."""
    for name in EDGE_ARRAYS:
        if edges is not None and e.layout.n_edges:
            e.drv.memcpy_dtod_async(new[name], edges[name], 4 * e.layout.n_edges, e.stream)
    if ix.records:
        e.launch.flat("topo_write_edges", len(ix.records), records, np.int32(len(ix.records)),
                      *[new[name] for name in EDGE_ARRAYS])


def _passes(e: "CudaEngine", ix: Layout) -> list[tuple[str, int, int, int]]:
    """(list prefix, lowest width, highest + 1, neurons a task) of each tier that has a group (the
    first always); loads wide.cu when a second tier is needed."""
    tiers = e.executor.tiers()
    bounds = [t.lowest for t in tiers[1:]] + [2**31 - 1]
    widths = ix.kinds.task_width
    passes = [(t.prefix, t.lowest, hi, t.size) for t, hi in zip(tiers, bounds)
              if not t.lowest or ((widths >= t.lowest) & (widths < hi)).any()]
    if len(passes) > 1:
        from . import runtime

        runtime.load("wide.cu", precision=e.precision)
    return passes


def _csr_and_levels(e: "CudaEngine", ix: Layout, new: dict) -> None:
    """The CSR both ways and the level of each group, from the edge list (the degrees zeroed)."""
    n, E = len(ix.groups), ix.n_edges
    e.launch.flat("topo_degrees", E, new["e_src"], new["e_dst"], np.int32(E), new["in_deg"], new["out_deg"])
    e.launch("scan_exclusive", (1, 1), new["in_deg"], new["in_ptr"], np.int32(n))
    e.launch("scan_exclusive", (1, 1), new["out_deg"], new["out_ptr"], np.int32(n))
    e.launch.flat("topo_fill", E, *[new[name] for name in EDGE_ARRAYS], np.int32(E), new["in_ptr"], new["out_ptr"],
                  new["in_src"], new["in_dst"], new["in_woff"], new["out_dst"], new["out_woff"])
    e.launch("topo_levels", (1, 1), new["in_ptr"], new["in_src"], np.int32(n), new["level"])


def backward_task_bytes(prefix: str) -> int:
    """Bytes of a backward task in a tier's list: (slot, k0) in the first tier's, (slot, k0, part,
    parts) in a wider tier's (topology.cu's topo_tasks)."""
    return 16 if prefix else 8


def _tasks(e: "CudaEngine", ix: Layout, new: dict, fill: bool, tier: tuple) -> None:
    """One tier's task lists: counted (fill False) or written (fill True) by topo_tasks and
    topo_weight_tasks."""
    pre, lo, hi, chunk = tier
    n, E = len(ix.groups), ix.n_edges
    out = [new[pre + "forward_tasks"], new[pre + "backward_tasks"], new["bias_tasks"]] if fill else \
        [new[pre + "fwd_count"], new[pre + "bwd_count"], new["bias_count"]]  # unused when counting
    e.launch.flat("topo_tasks", n, np.int32(fill), new["task_width"], new["width"], new["level"], new["in_ptr"],
                  new["in_src"], new["out_ptr"], new["out_dst"], np.int32(n),
                  np.int32(ix.input_slot), np.int32(ix.output_slot), np.int32(e.executor.split),
                  np.int32(chunk), np.int32(lo), np.int32(hi), new[pre + "fwd_count"], new[pre + "bwd_count"],
                  new["bias_count"], new[pre + "fwd_ptr"], new[pre + "bwd_ptr"], new["bias_ptr"],
                  new[pre + "fwd_cursor"], new[pre + "bwd_cursor"], *out)
    e.launch.flat("topo_weight_tasks", E, np.int32(fill), new["in_src"], new["in_dst"], new["task_width"],
                  new["width"], np.int32(E),
                  np.int32(lo), np.int32(hi), np.int32(TILE if not lo else chunk), new[pre + "weight_count"],
                  new[pre + "weight_ptr"], new[pre + "weight_tasks"] if fill else new[pre + "weight_count"])


def _kind_lists(ix: Layout) -> dict:
    """The lists of the groups of other kinds (kind_lists.py), to upload: "kinds_<list>" (every
    list, empty ones too, so that none is left from an earlier layout) and, per level and kind,
    "kind_<level>_<kind>"."""
    k = ix.kinds
    new = {"kinds_" + name: np.asarray(getattr(k, name), np.int32)
           for name in ("conv_edges", "token_edges", "conv_slots", "zeroed", "norm_ranges")}
    for level, by_kind in k.levels.items():
        for kind, slots in by_kind.items():
            new[f"kind_{level}_{kind}"] = np.asarray(slots, np.int32)
    return new


def _task_lists(e: "CudaEngine", ix: Layout, new: dict, passes: list, spans: dict) -> None:
    """Count, scan, read the spans back (one copy, one synchronisation), allocate and write every
    tier's lists; record the levels of each (forward from level 1; backward deepest first: the
    output group's (push only), then the hidden levels). `spans`: the bytes of each span, a run."""
    n, E = len(ix.groups), ix.n_edges
    for tier in passes:
        pre = tier[0]
        _tasks(e, ix, new, False, tier)
        for count, ptr, size in (("fwd_count", "fwd_ptr", n + 1), ("bwd_count", "bwd_ptr", n + 1),
                                 ("weight_count", "weight_ptr", E)):
            e.launch("scan_exclusive", (1, 1), new[pre + count], new[pre + ptr], np.int32(size))
    e.launch("scan_exclusive", (1, 1), new["bias_count"], new["bias_ptr"], np.int32(n + 1))
    depth = np.empty(1, np.int32)
    e.drv.memcpy_dtoh_async(depth, int(new["level"]) + 4 * ix.output_slot, e.stream)
    start, nbytes = _run(new, spans)
    run = np.empty(nbytes // 4, np.int32)
    e.drv.memcpy_dtoh_async(run, start, e.stream)
    e.stream.synchronize()
    at = lambda name: run[(int(new[name]) - start) // 4:][:spans[name] // 4]
    depth = int(depth[0])
    ix.n_bias_tasks = int(at("bias_ptr")[n + 1])
    sizes = {"bias_tasks": 8 * ix.n_bias_tasks}
    for pre, *_ in passes:
        sizes.update({pre + "forward_tasks": 16 * int(at(pre + "fwd_ptr")[n + 1]),
                      pre + "backward_tasks": backward_task_bytes(pre) * int(at(pre + "bwd_ptr")[n + 1]),
                      pre + "weight_tasks": 12 * int(at(pre + "weight_ptr")[E])})
    new["tasks"], parts = e.mem.arena(sizes, "tasks")
    new.update(parts)
    ix.tiers = {}  # prefix: (forward levels, backward levels, weight tasks), each level (start, count)
    for number, tier in enumerate(passes):
        pre = tier[0]
        fwd, bwd = at(pre + "fwd_ptr"), at(pre + "bwd_ptr")
        _tasks(e, ix, new, True, tier)
        forward = [(int(fwd[lv]), int(fwd[lv + 1] - fwd[lv])) for lv in range(1, depth + 1)]
        push = [(int(bwd[k]), int(bwd[k + 1] - bwd[k])) for k in range(depth)]
        ix.tiers[pre] = (forward, push[1:], int(at(pre + "weight_ptr")[E]))
        if not number:
            ix.forward_levels, ix.backward_levels, ix.n_weight_tasks = ix.tiers[pre]
            ix.push_levels = push
            ix.n_forward_tasks = int(fwd[n + 1])
            ix.backward_start, ix.n_backward_tasks = int(bwd[1]), int(bwd[depth] - bwd[1])  # as one list
