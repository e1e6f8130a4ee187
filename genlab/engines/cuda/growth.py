"""Growth and pruning on the GPU: the rules' decision (cuda/growth.cu), and the replay of a growth
check's operations (genlab.operations) on the engine's buffers.

Growth alone keeps everything in place: new groups, parameters and edges are appended, the
parameter operations run in one launch (growth_init, a block each), the GPU rebuilds CSR, levels
and tasks. When groups were removed, the folds run first (in the log's order), then the layout is
rebuilt by gathering parameters, optimizer state and scores by key on the GPU.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ... import operations as op
from ...network import Network
from . import topology
from .layout import Layout
from .records import DeviceState, Parameters, Scores, addr

if TYPE_CHECKING:
    from .engine import CudaEngine

# per group, carried by group id through re-layouts: growth score, Taylor score, and whether seen
GROUP_STATE = tuple(Scores.TYPES.items())


def apply(e: "CudaEngine", net: Network, log: list) -> None:
    """Take the network as growth (and pruning) left it, replaying the log on the GPU; nothing
    goes up from the host but topology records. Everything new is allocated before anything is
    replaced, so a failure leaves the engine as it was. (The engine's apply_growth: settled.)"""
    old, states, cap = e.layout, e.optimizer.state_names, e.batch_cap
    moved = {o.new: o.old for o in log if isinstance(o, op.Move)}
    inherit = {o.new: o.source for o in log if isinstance(o, op.Inherit)}  # new groups start with their source's score
    if set(old.groups) - set(net.widths):
        for fold in (o for o in log if isinstance(o, op.Fold)):
            _fold(e, fold)
        L = Layout(net)
        e.mem.check_room(4 * L.n_params * (2 + len(states)), f"{L.n_params} parameters")
        built, scores = topology.build(e, L, cap), group_state(e, L, inherit)
        values, state = param_maps(old, L, moved)
        was = e.dev.parameters
        parameters = Parameters(e.mem.new(4 * L.n_params, "parameters"), e.mem.new(4 * L.n_params, "gradients"),
                                tuple(e.mem.new(4 * L.n_params, "optimizer state") for _ in states))
        gather(e, parameters.params, was.params, values)
        for new_state, old_state in zip(parameters.state, was.state):
            gather(e, new_state, old_state, state)
        param_cap, fresh = L.n_params, []
    else:
        L = old.grown(net, log)  # BackendError past 2^31 parameters
        built, scores = topology.build(e, L, cap, e.dev.edges), group_state(e, L, inherit)
        param_cap, parameters = e.param_cap, e.dev.parameters
        if L.n_params > param_cap:  # grow geometrically, copying what is there
            param_cap = max(L.n_params, int(1.5 * param_cap))
            e.mem.check_room(4 * param_cap * (2 + len(states)), f"{param_cap} parameters")
            was = parameters
            parameters = Parameters(*(e.mem.new(4 * param_cap, what) for what in ("parameters", "gradients")),
                                    tuple(e.mem.new(4 * param_cap, "optimizer state") for _ in states))
            for dst, src in ((parameters.params, was.params), *zip(parameters.state, was.state)):
                e.drv.memcpy_dtod_async(dst, src, 4 * old.n_params, e.stream)
        fresh = L.fresh
    uploaded = replay(e, L, parameters, log, fresh)  # kept until the launch has run
    e.stream.synchronize()
    del uploaded
    e.commit(DeviceState.of(built, parameters, scores), L, cap, param_cap)


def provably_finite(e: "CudaEngine", log: list) -> bool:
    """Whether the log's operations keep every parameter finite, from the guard's bound alone:
    copies, identities, zeros and moves do; a split makes at most (1/2 + noise) |V|, a He-uniform
    draw at most sqrt(6); a fold adds a block times a constant the guard does not bound."""
    if any(isinstance(o, op.Fold) for o in log):
        return False
    noise = max((o.noise for o in log if isinstance(o, op.Split)), default=0.0)
    return e.guard.param * (0.5 + noise) + 3.0 < e.guard.limit


def _fold(e: "CudaEngine", fold: op.Fold) -> None:
    """b_d += W_gd c on the current layout; c: g's constant output at the last check, or relu(b_g)."""
    L, g, d = e.layout, fold.group, fold.consumer
    params = e.dev.parameters.params
    c = (addr(e.dev.ranges.run_const, 4 * int(L.col_off[L.slot[g]])) if fold.source is op.FoldSource.RANGE
         else addr(params, 4 * L.offsets[("b", g)]))
    e.launch.keyed("prune_fold", (1, 1), dict(
        params=params, w_off=np.int32(L.offsets[("W", g, d)]), rows=np.int32(L.width[L.slot[d]]),
        cols=np.int32(L.width[L.slot[g]]), b_off=np.int32(L.offsets[("b", d)]), c=c, source=np.int32(fold.source)))


def replay(e: "CudaEngine", L: Layout, p: Parameters, log: list, fresh: list):
    """The parameter operations of `log` (and zeroed optimizer state for `fresh` parameters), in
    one launch of growth_init; the buffer they were uploaded in (None without any)."""
    offset, size = L.offsets.__getitem__, lambda k: math.prod(L.shapes[k])
    noise = next((o for o in log if isinstance(o, op.Noise)), op.Noise(0, 0))
    records = [o.record(offset, size) for o in log if isinstance(o, op.ParamOp)]
    records += [op.ZeroState(first, n).record(offset, size) for first, n in _ranges(L, fresh)]
    if not records:
        return None
    block, up = e.mem.upload_all({"ops": np.array([r for r, _ in records], np.int32),
                                  "fparams": np.array([f for _, f in records], np.float64)}, "growth operations")
    state0, state1, state2 = p.state_args()
    e.launch.keyed("growth_init", (len(records), 1), dict(
        ops=up["ops"], fparams=up["fparams"], params=p.params, state0=state0, state1=state1, state2=state2,
        seed=np.uint32(noise.seed & 0xFFFFFFFF), step=np.uint32(noise.step & 0xFFFFFFFF)))
    return block  # the caller keeps it until the stream has run the launch


def _ranges(L: Layout, keys: list) -> list[tuple[int, int]]:
    """(first, length) of the parameters of `keys` in layout L, adjacent blocks merged (a growth
    step's new blocks are appended one after another: one range instead of a record a block)."""
    out = []
    for start, n in sorted((L.offsets[k], math.prod(L.shapes[k])) for k in keys):
        if out and out[-1][0] + out[-1][1] == start:
            out[-1] = (out[-1][0], out[-1][1] + n)
        elif n:
            out.append((start, n))
    return out


def group_state(e: "CudaEngine", L: Layout, inherit: dict | None = None) -> Scores:
    """New buffers of the per-group scores for layout L, gathered on the GPU from the current ones
    by group id (growth_state); a new group in `inherit` (new: source) starts with its source's
    growth score. Nothing comes back to the host."""
    old, inherit = e.layout, inherit or {}
    n = len(L.groups)
    new = {name: e.mem.new(np.dtype(dtype).itemsize * n, name) for name, dtype in GROUP_STATE}
    if old is None:
        for name, dtype in GROUP_STATE:
            e.mem.fill(new[name], 0, n * np.dtype(dtype).itemsize // 4)
        return Scores.take(new)
    kept = len(old.groups)
    if L.groups[:kept] == old.groups:  # grown: the old slots kept their places, the new ones follow
        by_id = np.concatenate([np.arange(kept), np.full(n - kept, -1)]).astype(np.int32)
    else:
        by_id = np.array([old.slot.get(g, -1) for g in L.groups], np.int32)
    by_score = by_id.copy()
    for g, source in inherit.items():
        if g in L.slot:
            by_score[L.slot[g]] = old.slot.get(source, -1)
    block, maps = e.mem.upload_all({"by_score": by_score, "by_id": by_id}, "growth scores")
    e.launch.flat("growth_state", n, dict(by_score=maps["by_score"], by_id=maps["by_id"], n_slots=np.int32(n),
                                          **{name: getattr(e.dev.scores, name) for name, _ in GROUP_STATE},
                                          **{name + "_new": new[name] for name, _ in GROUP_STATE}))
    return Scores.take(new, held=(block,))


def param_maps(old: Layout, L: Layout, moved: dict) -> tuple[np.ndarray, np.ndarray]:
    """Where each parameter of L comes from in the old layout (-1: nowhere): values come from the
    same key or, for a moved edge, its old key; optimizer state from the same key."""
    values, state = np.full(L.n_params, -1, np.int32), np.full(L.n_params, -1, np.int32)
    for key, off in L.offsets.items():
        size = math.prod(L.shapes[key])
        if key in old.offsets and old.shapes[key] == L.shapes[key]:
            values[off:off + size] = state[off:off + size] = np.arange(old.offsets[key], old.offsets[key] + size)
        elif key in moved:
            values[off:off + size] = np.arange(old.offsets[moved[key]], old.offsets[moved[key]] + size)
    return values, state


def gather(e: "CudaEngine", dst, src, source: np.ndarray) -> None:
    """dst[i] = src[source[i]] (0 where source[i] < 0)."""
    e.launch.flat("gather", len(source), dict(dst=dst, src=src, map=e.mem.upload(source), n=np.int32(len(source))))


def observe(e: "CudaEngine", batch: int) -> None:
    """Enqueue this step's smoothing of the growth criterion and of the Taylor scores."""
    b, n = e.dev, len(e.layout.groups)
    if e.growth_criterion is not None:
        name, alpha = e.growth_criterion
        e.launch.flat("growth_observe", n, dict(n_slots=np.int32(n), batch=np.int32(batch),
                                                criterion=np.int32(op.Criterion[name.upper()]),
                                                alpha=np.float64(alpha)), b.by_name)
    if e.pruning[1] is not None:
        e.launch.flat("prune_observe", n, dict(n_slots=np.int32(n), batch=np.int32(batch),
                                               alpha=np.float64(e.pruning[1])), b.by_name)


def scores(e: "CudaEngine") -> dict[int, float]:
    """The smoothed growth criterion of every hidden group observed so far, read from the GPU."""
    L, b = e.layout, e.dev
    n = len(L.groups)
    ema, seen = np.empty(n, np.float64), np.empty(n, np.int32)
    e.drv.memcpy_dtoh_async(ema, b.scores.ema, e.stream)
    e.drv.memcpy_dtoh_async(seen, b.scores.seen, e.stream)
    e.stream.synchronize()
    return {g: float(ema[s]) for s, g in enumerate(L.groups) if seen[s] and L.hidden[s]}


def choose(e: "CudaEngine", eligible: set[int], threshold: float, relative: bool) -> list[tuple[int, float]]:
    """Mark, select and rank on the GPU; the groups to grow in budget order with their scores."""
    L, b = e.layout, e.dev
    n = len(L.groups)
    w, state, slots = b.growth, b.by_name, np.int32(n)
    e.drv.memcpy_htod(w.eligible, np.isin(L.group_id, np.fromiter(eligible, np.int32, len(eligible))).astype(np.int32))
    if relative:
        e.launch.named("growth_population", (1, 1), state, dict(n_slots=slots))
    e.launch.flat("growth_mark", n, dict(n_slots=slots, threshold=np.float64(threshold),
                                         relative=np.int32(bool(relative))), state)
    e.launch.flat("growth_select", n, dict(n_slots=slots), state)
    e.launch.flat("growth_rank", n, dict(n_slots=slots), state)
    rank, ema = np.empty(n, np.int32), np.empty(n, np.float64)
    e.drv.memcpy_dtoh_async(rank, w.rank, e.stream)
    e.drv.memcpy_dtoh_async(ema, b.scores.ema, e.stream)
    e.stream.synchronize()
    chosen = np.flatnonzero(rank >= 0)
    chosen = chosen[np.argsort(rank[chosen], kind="stable")]  # budget order (ranks are distinct)
    return [(int(L.group_id[s]), float(ema[s])) for s in chosen]


def prune_report(e: "CudaEngine", judge: bool = True) -> tuple[dict, dict]:
    """Constant groups since the last judgement, with their output, and smoothed Taylor scores;
    with judge the ranges start afresh (their values at this check stay for the folds), without
    it no group is judged and the ranges keep growing."""
    L, b, drv = e.layout, e.dev, e.drv
    n = len(L.groups)
    taylor, seen = np.empty(n, np.float64), np.empty(n, np.int32)
    copies = [(taylor, b.scores.taylor), (seen, b.scores.taylor_seen)]
    if judge:
        e.launch.flat("prune_constant", n, dict(n_slots=np.int32(n)), b.by_name)
        constant, lo = np.empty(n, np.int32), np.empty(L.n_cols, np.float32)
        copies += [(constant, b.growth.constant), (lo, b.ranges.run_lo)]
    for host, buf in copies:
        drv.memcpy_dtoh_async(host, buf, e.stream)
    if judge:
        drv.memcpy_dtod_async(b.ranges.run_const, b.ranges.run_lo, 4 * L.n_cols, e.stream)
        topology.reset_ranges(e, b.ranges, L.n_cols)
    e.stream.synchronize()
    scores = {g: float(taylor[s]) for s, g in enumerate(L.groups) if seen[s] and L.hidden[s]}
    if not judge:
        return {}, scores
    columns = lambda s: slice(int(L.col_off[s]), int(L.col_off[s] + L.width[s]))
    return {g: lo[columns(s)].astype(np.float64) for s, g in enumerate(L.groups) if constant[s]}, scores
