"""A data-parallel step on the CUDA engine: the replica's step up to its gradients as one CUDA
graph, then two sums over the replicas on the engine's own buffers (NCCL, no copies, queued on the
engine's stream), then the update and the growth scores as a second graph.

    gradients forward and backward of this replica's rows in the executor's schedule (dataflow_rows:
              its whole step, whose update is deferred to the next step's forward items), then
              replica_pack (optim.cu): the gradients weighted by the replica's share of the rows,
              and its per-group sums of dL/dh, its squares and h dL/dh (scaled as the step's),
              loss and correct count packed into one array of doubles
    sums      the gradients; the packed doubles; activation ranges (min / max) when pruning tracks them
    update    replica_unpack (the packed sums back in place), each group's gradient norm and the
              step's from the summed gradients, the optimizer and the growth scores (smoothed
              from the summed statistics)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..base import Replicas
from . import growth

if TYPE_CHECKING:
    from .engine import CudaEngine


def step(e: "CudaEngine", x: np.ndarray, y: np.ndarray, replicas: Replicas) -> tuple[float, int, float]:
    """One data-parallel step's work on this replica: (the step's loss, correct count, gradient
    squared norm), every replica holding the same parameters after it."""
    batch = e.put_batch(x, y)
    tokens = e.layout.kinds.tokens
    share = replicas.fraction
    e.executor.before_step()
    e.captured(("replica gradients", batch, share, *e.step_key()),
               lambda: (e.executor.enqueue_gradients(batch), _pack(e, share))).launch()
    _sum(e, replicas)
    rows = replicas.total * tokens
    e.rows_counted = rows  # the statistics' element counts: every replica's rows
    ranges, count = _ranges(e)
    e.captured(("replica update", rows, *e.step_key()),
               lambda: (_unpack(e, ranges, count), e.executor.enqueue_update(), growth.observe(e, rows))).launch()
    return e.read_scalars()


def _pack(e: "CudaEngine", share: float) -> None:
    L, sums = e.layout, e.dev.sums
    n = len(L.groups)
    e.launch.flat("replica_pack", max(L.n_params, 3 * n + 2), dict(
        grads=e.dev.parameters.grads, n_params=np.int32(L.n_params), share=np.float64(share), stats=sums.stats,
        scalars=sums.scalars, n_groups=np.int32(n), sums=sums.replica_sums))


def _sum(e: "CudaEngine", replicas: Replicas) -> None:
    L, b = e.layout, e.dev
    replicas.on_stream(e.stream.handle)
    replicas.sum(replicas.buffer(int(b.parameters.grads), L.n_params))
    replicas.sum(replicas.buffer(int(b.sums.replica_sums), 3 * len(L.groups) + 2, "float64"))
    if e.pruning[0]:
        r = b.ranges
        for buf, reduce in ((r.range_min, replicas.min), (r.run_lo, replicas.min),
                            (r.range_max, replicas.max), (r.run_hi, replicas.max)):
            reduce(replicas.buffer(int(buf), L.n_cols))


def _unpack(e: "CudaEngine", ranges, count: int) -> None:
    """The packed sums back in place; wstats (each group's squared gradient norm) and the step's
    gradsq from the summed gradients: one block per parameter block (optim.cu's param_norms)."""
    L, sums = e.layout, e.dev.sums
    n = len(L.groups)
    e.launch.flat("replica_unpack", 3 * n, dict(sums=sums.replica_sums, n_groups=np.int32(n), stats=sums.stats,
                                                scalars=sums.scalars, wstats=sums.wstats))
    if count:
        e.launch.keyed("param_norms", (count, 1), dict(ranges=ranges, grads=e.dev.parameters.grads,
                                                       wstats=sums.wstats, gradsq=sums.gradsq))


def _ranges(e: "CudaEngine") -> tuple:
    """Each parameter block's (slot, first parameter, length) on the GPU, uploaded once a layout
    (before a capture: a graph cannot hold the copy)."""
    L = e.layout
    if e.replica_ranges[0] is not L:
        ranges = np.array([(L.slot[key[-1]], off, int(np.prod(L.shapes[key]))) for key, off in L.offsets.items()],
                          np.int32).reshape(-1, 3)
        e.replica_ranges = (L, e.mem.upload(ranges), len(ranges))
    _, ranges, count = e.replica_ranges
    return ranges, count
