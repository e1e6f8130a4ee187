"""A data-parallel step on the CUDA engine: the replica's step up to its gradients as one CUDA
graph (the executor's enqueue_gradients), then the sums over the replicas on the engine's own
buffers (NCCL, no copies; queued on torch's current stream, the legacy default stream, which
orders itself with the engine's blocking stream), then the update and the growth scores as a
second graph.

    gradients forward and backward of this replica's rows in the executor's schedule (dataflow_rows:
              its whole step, whose update is deferred to the next step's forward items)
    sums      gradients (each replica's weighted by its share of the rows), per-group sums of dL/dh,
              its squares and h dL/dh (float64), activation ranges (min / max) when pruning tracks them
    norms     each group's gradient norm and the step's gradient norm, again from the summed gradients
    scalars   loss (weighted by the replicas' shares) and correct count, for the update's guard
    update    the optimizer and the growth scores (smoothed from the summed statistics)
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
    e.executor.before_step()
    e.captured(("replica gradients", batch, *e.step_key()), lambda: e.executor.enqueue_gradients(batch)).launch()
    _sum(e, replicas)
    rows = replicas.total * tokens
    e.rows_counted = rows  # the statistics' element counts: every replica's rows
    e.captured(("replica update", rows, *e.step_key()),
               lambda: (e.executor.enqueue_update(), growth.observe(e, rows))).launch()
    return e.read_scalars()


def _sum(e: "CudaEngine", replicas: Replicas) -> None:
    L, b = e.layout, e.buffers
    replicas.on_stream(e.stream.handle)
    replicas.sum(replicas.buffer(int(b["grads"]), L.n_params), scale=replicas.fraction)
    replicas.sum(replicas.buffer(int(b["stats"]), 3 * len(L.groups), "float64"), scale=replicas.moment_scale)
    replicas.sum(replicas.buffer(int(b["scalars"]), 1, "float64"), scale=replicas.fraction)  # the mean loss
    replicas.sum(replicas.buffer(e.ptr("scalars", 8), 1, "int32"))  # the correct count
    if e.pruning[0]:
        for name, reduce in (("range_min", replicas.min), ("run_lo", replicas.min),
                             ("range_max", replicas.max), ("run_hi", replicas.max)):
            replicas_buffer = replicas.buffer(int(b[name]), L.n_cols)
            reduce(replicas_buffer)
    _norms(e)


def _norms(e: "CudaEngine") -> None:
    """wstats (each group's squared gradient norm) and the step's gradsq, from the gradients as
    they are now: one block per parameter block (optim.cu's param_norms)."""
    L, b = e.layout, e.buffers
    if e.replica_ranges[0] is not L:
        ranges = np.array([(L.slot[key[-1]], off, int(np.prod(L.shapes[key]))) for key, off in L.offsets.items()],
                          np.int32).reshape(-1, 3)
        e.replica_ranges = (L, e.mem.upload(ranges), len(ranges))
    _, ranges, count = e.replica_ranges
    e.mem.fill(b["wstats"], 0, 2 * len(L.groups))
    e.mem.fill(e.ptr("scalars", 16), 0, 2)
    if count:
        e.launch("param_norms", (count, 1), ranges, b["grads"], b["wstats"], e.ptr("scalars", 16))
