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
from .records import (Csr, Edges, GrowthScratch, Groups, KindLists, Ranges, StepSums, Tasks, TierTasks, Topology,
                      addr)

if TYPE_CHECKING:
    from .engine import CudaEngine


def build(e: "CudaEngine", ix: Layout, cap: int, edges: Edges | None = None) -> Topology:
    """New buffers for everything that follows from layout ix (all but parameters, optimizer
    state and growth scores), for batches of up to cap rows: the edge list (`edges`: the current
    one, extended; None: a new one) receives ix.records, then the GPU builds the CSR, the levels
    and the task lists. Sets ix's level and task counts (ix.tiers and the first tier's lists)."""
    arrays = {name: getattr(ix, name) for name in Groups.SLOT}
    arrays.update(task_width=ix.kinds.task_width, geo=ix.kinds.geo, cache_off=ix.kinds.cache_off)
    arrays.update(_kind_lists(ix))
    if ix.records:
        arrays["records"] = np.array(ix.records, np.int32)
    block, up = e.mem.upload_all(arrays)  # one copy up: each of these is a round trip alone
    groups = Groups.take(up, held=(block,))
    kinds = _kind_record(up, block)
    passes = _passes(e, ix)
    counts, spans, rest = _sizes(ix, passes)
    arena, parts = e.mem.arena({**counts, **spans, **rest}, "topology")  # one allocation
    start, nbytes = _run(parts, counts)
    e.drv.memset_d32_async(start, 0, nbytes // 4, e.stream)
    new_edges = Edges.take(parts, held=(arena,))
    _edge_list(e, ix, new_edges, edges, up.get("records"))
    csr = Csr.take(parts, held=(arena,))
    _csr_and_levels(e, ix, parts, new_edges, csr)
    tasks = _task_lists(e, ix, parts, groups, csr, passes, spans)
    rows = e.batch_buffers(ix, cap)
    ranges = Ranges.take(parts, held=(arena,))
    reset_ranges(e, ranges, ix.n_cols)
    return Topology(groups=groups, kinds=kinds, edges=new_edges, csr=csr, tasks=tasks,
                    sums=StepSums.take(parts, held=(arena,)), growth=GrowthScratch.take(parts, held=(arena,)),
                    ranges=ranges, rows=rows, own=e.executor.topology_buffers(ix))


def _sizes(ix: Layout, passes: list) -> tuple[dict, dict, dict]:
    """Bytes of every buffer that follows from the layout, in three runs: the counts the task
    lists start from (zeroed together), the spans of the lists (read back together), the rest."""
    n, E, cols = len(ix.groups), ix.n_edges, ix.n_cols
    tiers = [pre for pre, *_ in passes]
    counts = {"in_deg": n, "out_deg": n, "bias_count": n + 1,
              **{pre + name: n + 1 for pre in tiers for name in ("fwd_count", "bwd_count", "fwd_cursor", "bwd_cursor")}}
    spans = {"bias_ptr": n + 2, **{pre + name: size for pre in tiers
                                   for name, size in (("fwd_ptr", n + 2), ("bwd_ptr", n + 2), ("weight_ptr", E + 1))}}
    rest = {**{name: E for name in Edges.names()}, "in_ptr": n + 1, "out_ptr": n + 1, "level": n,
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


def reset_ranges(e: "CudaEngine", ranges: Ranges, n_cols: int) -> None:
    """The running activation ranges start empty: +inf below, -inf above."""
    e.mem.fill(ranges.run_lo, 0x7F800000, n_cols)
    e.mem.fill(ranges.run_hi, 0xFF800000, n_cols)


def _edge_list(e: "CudaEngine", ix: Layout, new: Edges, edges: Edges | None, records) -> None:
    """The edge list (new): a copy of the current one (so that a failure leaves it intact),
    extended with ix.records (uploaded at `records`) on the GPU."""
    if edges is not None and e.layout.n_edges:
        for (_, dst), (_, src) in zip(new.items(), edges.items()):
            e.drv.memcpy_dtod_async(dst, src, 4 * e.layout.n_edges, e.stream)
    if ix.records:
        e.launch.flat("topo_write_edges", len(ix.records), dict(rec=records, n=np.int32(len(ix.records)),
                                                                **dict(new.items())))


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


def _csr_and_levels(e: "CudaEngine", ix: Layout, parts: dict, edges: Edges, c: Csr) -> None:
    """The CSR both ways and the level of each group, from the edge list (the degrees, in parts,
    zeroed)."""
    n, E = len(ix.groups), ix.n_edges
    e.launch.flat("topo_degrees", E, dict(e_src=edges.e_src, e_dst=edges.e_dst, n_edges=np.int32(E),
                                          in_deg=parts["in_deg"], out_deg=parts["out_deg"]))
    _scan(e, parts["in_deg"], c.in_ptr, n)
    _scan(e, parts["out_deg"], c.out_ptr, n)
    e.launch.flat("topo_fill", E, dict(**dict(edges.items()), n_edges=np.int32(E), in_ptr=c.in_ptr, out_ptr=c.out_ptr,
                                       in_src=c.in_src, in_dst=c.in_dst, in_woff=c.in_woff, out_dst=c.out_dst,
                                       out_woff=c.out_woff))
    e.launch.keyed("topo_levels", (1, 1), dict(in_ptr=c.in_ptr, in_src=c.in_src, n_slots=np.int32(n), level=c.level))


def _scan(e: "CudaEngine", counts, ptr, n: int) -> None:
    """ptr = the exclusive prefix sum of n counts (one block)."""
    e.launch.keyed("scan_exclusive", (1, 1), {"in": counts, "out": ptr, "n": np.int32(n)})


def backward_task_bytes(prefix: str) -> int:
    """Bytes of a backward task in a tier's list: (slot, k0) in the first tier's, (slot, k0, part,
    parts) in a wider tier's (topology.cu's topo_tasks)."""
    return 16 if prefix else 8


def _tasks(e: "CudaEngine", ix: Layout, parts: dict, g: Groups, c: Csr, fill: bool, tier: tuple,
           out: tuple = ()) -> None:
    """One tier's task lists: counted (fill False: into the counts in parts) or written (fill
    True: into out, its forward, backward and bias lists) by topo_tasks and topo_weight_tasks."""
    pre, lo, hi, chunk = tier
    n, E = len(ix.groups), ix.n_edges
    at = lambda name: parts[pre + name]
    lists = list(out[:3]) if fill else [at("fwd_count"), at("bwd_count"), parts["bias_count"]]  # unused when counting
    fwd_tasks, bwd_tasks, bias_tasks = lists
    e.launch.flat("topo_tasks", n, dict(
        mode=np.int32(fill), width=g.task_width, cols=g.width, level=c.level, in_ptr=c.in_ptr, in_src=c.in_src,
        out_ptr=c.out_ptr, out_dst=c.out_dst, n_slots=np.int32(n), input_slot=np.int32(ix.input_slot),
        output_slot=np.int32(ix.output_slot), split=np.int32(e.executor.split), chunk=np.int32(chunk),
        lo=np.int32(lo), hi=np.int32(hi), fwd_count=at("fwd_count"), bwd_count=at("bwd_count"),
        bias_count=parts["bias_count"], fwd_ptr=at("fwd_ptr"), bwd_ptr=at("bwd_ptr"), bias_ptr=parts["bias_ptr"],
        fwd_cursor=at("fwd_cursor"), bwd_cursor=at("bwd_cursor"), fwd_tasks=fwd_tasks, bwd_tasks=bwd_tasks,
        bias_tasks=bias_tasks))
    e.launch.flat("topo_weight_tasks", E, dict(
        mode=np.int32(fill), in_src=c.in_src, in_dst=c.in_dst, width=g.task_width, src_width=g.width,
        n_edges=np.int32(E), lo=np.int32(lo), hi=np.int32(hi), tile=np.int32(TILE if not lo else chunk),
        count=at("weight_count"), ptr=at("weight_ptr"), tasks=out[3] if fill else at("weight_count")))


def _kind_lists(ix: Layout) -> dict:
    """The lists of the groups of other kinds (kind_lists.py), to upload, keyed ("kinds", field
    of KindLists, ...): every list of KindLists.LISTS (empty ones too, so that none is left from an
    earlier layout), each kind's edges and slots (by code) and the slots of each (level, code)."""
    k = ix.kinds
    out = {("kinds", name): np.asarray(getattr(k, name), np.int32) for name in KindLists.LISTS}
    out.update({("kinds", "edges", code): a for code, a in k.edges.items()})
    out.update({("kinds", "slots", code): a for code, a in k.slots.items()})
    out.update({("kinds", "by_level", level, code): np.asarray(slots, np.int32)
                for level, by_code in k.levels.items() for code, slots in by_code.items()})
    return out


def _kind_record(up: dict, block) -> KindLists:
    """The record of _kind_lists' arrays once uploaded (`up`: their addresses in `block`)."""
    def of(name: str) -> dict:
        return {key[2:]: at for key, at in up.items() if isinstance(key, tuple) and key[:2] == ("kinds", name)}

    return KindLists(**{name: up[("kinds", name)] for name in KindLists.LISTS}, held=(block,),
                     edges={code: at for (code,), at in of("edges").items()},
                     slots={code: at for (code,), at in of("slots").items()}, by_level=of("by_level"))


def _task_lists(e: "CudaEngine", ix: Layout, parts: dict, g: Groups, c: Csr, passes: list, spans: dict) -> Tasks:
    """Count, scan, read the spans back (one copy, one synchronisation), allocate and write every
    tier's lists; record the levels of each (forward from level 1; backward deepest first: the
    output group's (push only), then the hidden levels). `spans`: the bytes of each span, a run."""
    n, E = len(ix.groups), ix.n_edges
    for tier in passes:
        pre = tier[0]
        _tasks(e, ix, parts, g, c, False, tier)
        for count, ptr, size in (("fwd_count", "fwd_ptr", n + 1), ("bwd_count", "bwd_ptr", n + 1),
                                 ("weight_count", "weight_ptr", E)):
            _scan(e, parts[pre + count], parts[pre + ptr], size)
    _scan(e, parts["bias_count"], parts["bias_ptr"], n + 1)
    depth = np.empty(1, np.int32)
    e.drv.memcpy_dtoh_async(depth, addr(c.level, 4 * ix.output_slot), e.stream)
    start, nbytes = _run(parts, spans)
    run = np.empty(nbytes // 4, np.int32)
    e.drv.memcpy_dtoh_async(run, start, e.stream)
    e.stream.synchronize()
    at = lambda name: run[(int(parts[name]) - start) // 4:][:spans[name] // 4]
    depth = int(depth[0])
    ix.n_bias_tasks = int(at("bias_ptr")[n + 1])
    sizes = {"bias_tasks": 8 * ix.n_bias_tasks}
    for pre, *_ in passes:
        sizes.update({(pre, "forward_tasks"): 16 * int(at(pre + "fwd_ptr")[n + 1]),
                      (pre, "backward_tasks"): backward_task_bytes(pre) * int(at(pre + "bwd_ptr")[n + 1]),
                      (pre, "weight_tasks"): 12 * int(at(pre + "weight_ptr")[E])})
    arena, lists = e.mem.arena(sizes, "tasks")
    tiers = {pre: TierTasks.take({name: lists[(pre, name)] for name in TierTasks.names()}, held=(arena,))
             for pre, *_ in passes}
    ix.tiers = {}  # prefix: (forward levels, backward levels, weight tasks), each level (start, count)
    for number, tier in enumerate(passes):
        pre = tier[0]
        fwd, bwd = at(pre + "fwd_ptr"), at(pre + "bwd_ptr")
        t = tiers[pre]
        _tasks(e, ix, parts, g, c, True, tier, (t.forward_tasks, t.backward_tasks, lists["bias_tasks"], t.weight_tasks))
        forward = [(int(fwd[lv]), int(fwd[lv + 1] - fwd[lv])) for lv in range(1, depth + 1)]
        push = [(int(bwd[k]), int(bwd[k + 1] - bwd[k])) for k in range(depth)]
        ix.tiers[pre] = (forward, push[1:], int(at(pre + "weight_ptr")[E]))
        if not number:
            ix.forward_levels, ix.backward_levels, ix.n_weight_tasks = ix.tiers[pre]
            ix.push_levels = push
            ix.n_forward_tasks = int(fwd[n + 1])
            ix.backward_start, ix.n_backward_tasks = int(bwd[1]), int(bwd[depth] - bwd[1])  # as one list
    return Tasks(tiers=tiers, bias_tasks=lists["bias_tasks"], held=(arena,))
