"""The dataflow executors: one persistent launch runs a whole training step (cuda/dataflow.cu).

Blocks take tasks from a global counter in an order where every task's inputs come from tasks
taken before it: forward tasks (TILE neurons x a batch tile) in level order, the loss, backward
tasks deepest level first, weight and bias gradient tasks, then update chunks once every gradient
is in. A task waits for its inputs on per-(group, batch tile) counters; nothing waits on a grid
barrier.
"""

from __future__ import annotations

import numpy as np

from ....precision import ALL
from ..constants import TILE
from ..records import addr
from . import output_parts, passes
from .base import Activations
from .persistent import Persistent


class Dataflow(Persistent):
    name = "dataflow"
    chunk = TILE
    precisions = ALL  # its tasks are forward.cu's and backward.cu's tiles
    file, kernel = "dataflow.cu", "dataflow_step"

    def enqueue_step(self, batch: int) -> None:
        e = self.engine
        L, d = e.layout, e.dev
        g, c, r, t, p, sums = d.groups, d.csr, d.rows, d.tasks, d.parameters, d.sums
        optimizer = self.setup(batch)
        self.launch(g.width, r.act_off, g.bias_off, c.in_ptr, c.in_src, c.in_dst, c.in_woff,
                    c.out_ptr, c.out_dst, c.out_woff, g.hidden,
                    t.first.forward_tasks, np.int32(L.n_forward_tasks),
                    addr(t.first.backward_tasks, 8 * L.backward_start), np.int32(L.n_backward_tasks),
                    t.first.weight_tasks, np.int32(L.n_weight_tasks), t.bias_tasks, np.int32(L.n_bias_tasks),
                    p.params, p.grads, r.act, r.dz, r.labels,
                    np.int32(batch), np.int32(e.ld), np.int32(len(L.groups)), np.int32(L.input_slot),
                    np.int32(L.output_slot), np.int32(self.split), *output_parts.persistent_arguments(e),
                    sums.stats, sums.wstats, sums.scalars, *optimizer, r.counters)
        passes.ranges(e, batch)


class DataflowBatch(Dataflow):
    """The dataflow executor over batch-major activations."""

    name = "dataflow_batch"
    activations = Activations.BATCH
