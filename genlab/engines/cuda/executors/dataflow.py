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
        t = d.tasks
        code, s0, s1, s2, n_params, lr, h1, h2, eps = self.setup(batch)
        parts, n_parts, cap = output_parts.persistent_arguments(e)
        e.launch.named(self.kernel, (self.grid, 1), d.by_name, dict(  # the state's buffers by name, and these
            fwd_tasks=t.first.forward_tasks, n_fwd=np.int32(L.n_forward_tasks),
            bwd_tasks=addr(t.first.backward_tasks, 8 * L.backward_start), n_bwd=np.int32(L.n_backward_tasks),
            weight_tasks=t.first.weight_tasks, n_weight=np.int32(L.n_weight_tasks), bias_tasks=t.bias_tasks,
            n_bias=np.int32(L.n_bias_tasks), batch=np.int32(batch), ld=np.int32(e.ld), n_slots=np.int32(len(L.groups)),
            input_slot=np.int32(L.input_slot), output_slot=np.int32(L.output_slot), split=np.int32(self.split),
            parts=parts, n_parts=n_parts, cap=cap, optimizer=code, state0=s0, state1=s1, state2=s2,
            n_params=n_params, lr=lr, hyper1=h1, hyper2=h2, eps=eps))
        passes.ranges(e, batch)


class DataflowBatch(Dataflow):
    """The dataflow executor over batch-major activations."""

    name = "dataflow_batch"
    activations = Activations.BATCH
