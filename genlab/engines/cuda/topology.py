"""Everything that follows from the topology, built on the GPU (cuda/topology.cu): the edge list,
the CSR of in-edges and out-edges, the level of each group, and each tier's task lists, plus the
per-group scratch of the growth rules and pruning. A few kilobytes, rebuilt when the topology
changes; the parameters and optimizer state are not touched here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .constants import SPLIT, TILE
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
    _edge_list(e, ix, new, edges, new.pop("records", None))
    passes = _passes(e, ix)
    _csr_and_levels(e, ix, new, passes)
    _task_lists(e, ix, new, passes)
    new.update(e.executor.topology_buffers(ix))
    n = len(ix.groups)
    for name, nbytes in (("stats", 24 * n), ("wstats", 8 * n), ("scalars", 24), ("population", 16),
                         ("eligible", 4 * n), ("marked", 4 * n), ("keep", 4 * n), ("rank", 4 * n),
                         ("constant", 4 * n), ("range_min", 4 * ix.n_cols), ("range_max", 4 * ix.n_cols),
                         ("run_lo", 4 * ix.n_cols), ("run_hi", 4 * ix.n_cols), ("run_const", 4 * ix.n_cols)):
        new[name] = e.mem.new(nbytes, name)
    new.update(e.batch_buffers(ix, cap))
    reset_ranges(e, new, ix.n_cols)
    return new


def reset_ranges(e: "CudaEngine", b: dict, n_cols: int) -> None:
    """The running activation ranges start empty: +inf below, -inf above."""
    e.mem.fill(b["run_lo"], 0x7F800000, n_cols)
    e.mem.fill(b["run_hi"], 0xFF800000, n_cols)


def _edge_list(e: "CudaEngine", ix: Layout, new: dict, edges: dict | None, records) -> None:
    """The edge list: a copy of the current one (so that a failure leaves it intact), extended
    with ix.records (uploaded at `records`) on the GPU."""
    for name in EDGE_ARRAYS:
        new[name] = e.mem.new(4 * ix.n_edges, "edges")
        if edges is not None:
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

        runtime.load("wide.cu")
    return passes


def _csr_and_levels(e: "CudaEngine", ix: Layout, new: dict, passes: list) -> None:
    """Counts and spans of every list, then the CSR both ways and the level of each group."""
    n, E = len(ix.groups), ix.n_edges
    sizes = [("in_deg", n), ("out_deg", n), ("in_ptr", n + 1), ("out_ptr", n + 1), ("level", n),
             ("in_src", E), ("in_dst", E), ("in_woff", E), ("out_dst", E), ("out_woff", E),
             ("bias_count", n + 1), ("bias_ptr", n + 2)]
    for pre, *_ in passes:
        sizes += [(pre + "fwd_count", n + 1), (pre + "bwd_count", n + 1), (pre + "fwd_ptr", n + 2),
                  (pre + "bwd_ptr", n + 2), (pre + "fwd_cursor", n + 1), (pre + "bwd_cursor", n + 1),
                  (pre + "weight_count", E), (pre + "weight_ptr", E + 1)]
    for name, count in sizes:
        new[name] = e.mem.new(4 * count, "topology")
    zeroed = ["in_deg", "out_deg", "bias_count"] + [pre + name for pre, *_ in passes for name in
                                                    ("fwd_count", "bwd_count", "fwd_cursor", "bwd_cursor")]
    for name in zeroed:
        e.mem.fill(new[name], 0, n + (name not in ("in_deg", "out_deg")))
    e.launch.flat("topo_degrees", E, new["e_src"], new["e_dst"], np.int32(E), new["in_deg"], new["out_deg"])
    e.launch("scan_exclusive", (1, 1), new["in_deg"], new["in_ptr"], np.int32(n))
    e.launch("scan_exclusive", (1, 1), new["out_deg"], new["out_ptr"], np.int32(n))
    e.launch.flat("topo_fill", E, *[new[name] for name in EDGE_ARRAYS], np.int32(E), new["in_ptr"], new["out_ptr"],
                  new["in_src"], new["in_dst"], new["in_woff"], new["out_dst"], new["out_woff"])
    e.launch("topo_levels", (1, 1), new["in_ptr"], new["in_src"], np.int32(n), new["level"])


def _tasks(e: "CudaEngine", ix: Layout, new: dict, fill: bool, tier: tuple) -> None:
    """One tier's task lists: counted (fill False) or written (fill True) by topo_tasks and
    topo_weight_tasks."""
    pre, lo, hi, chunk = tier
    n, E = len(ix.groups), ix.n_edges
    out = [new[pre + "forward_tasks"], new[pre + "backward_tasks"], new["bias_tasks"]] if fill else \
        [new[pre + "fwd_count"], new[pre + "bwd_count"], new["bias_count"]]  # unused when counting
    e.launch.flat("topo_tasks", n, np.int32(fill), new["task_width"], new["level"], new["in_ptr"], np.int32(n),
                  np.int32(ix.input_slot), np.int32(ix.output_slot), np.int32(SPLIT if not lo else E + 1),
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


def _task_lists(e: "CudaEngine", ix: Layout, new: dict, passes: list) -> None:
    """Count, scan, read the spans back (one synchronisation), allocate and write every tier's
    lists; record the levels of each (forward from level 1; backward deepest first: the output
    group's (push only), then the hidden levels)."""
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
    spans = {}
    for name, size in [("bias_ptr", n + 2)] + [(pre + name, size) for pre, *_ in passes for name, size in
                                               (("fwd_ptr", n + 2), ("bwd_ptr", n + 2), ("weight_ptr", E + 1))]:
        spans[name] = np.empty(size, np.int32)
        e.drv.memcpy_dtoh_async(spans[name], new[name], e.stream)
    e.stream.synchronize()
    depth = int(depth[0])
    new["bias_tasks"] = e.mem.new(8 * int(spans["bias_ptr"][n + 1]), "tasks")
    ix.n_bias_tasks = int(spans["bias_ptr"][n + 1])
    ix.tiers = {}  # prefix: (forward levels, backward levels, weight tasks), each level (start, count)
    for number, tier in enumerate(passes):
        pre = tier[0]
        fwd, bwd = spans[pre + "fwd_ptr"], spans[pre + "bwd_ptr"]
        new[pre + "forward_tasks"] = e.mem.new(16 * int(fwd[n + 1]), "tasks")
        new[pre + "backward_tasks"] = e.mem.new(8 * int(bwd[n + 1]), "tasks")
        new[pre + "weight_tasks"] = e.mem.new(12 * int(spans[pre + "weight_ptr"][E]), "tasks")
        _tasks(e, ix, new, True, tier)
        forward = [(int(fwd[lv]), int(fwd[lv + 1] - fwd[lv])) for lv in range(1, depth + 1)]
        push = [(int(bwd[k]), int(bwd[k + 1] - bwd[k])) for k in range(depth)]
        ix.tiers[pre] = (forward, push[1:], int(spans[pre + "weight_ptr"][E]))
        if not number:
            ix.forward_levels, ix.backward_levels, ix.n_weight_tasks = ix.tiers[pre]
            ix.push_levels = push
            ix.n_forward_tasks = int(fwd[n + 1])
            ix.backward_start, ix.n_backward_tasks = int(bwd[1]), int(bwd[depth] - bwd[1])  # as one list
