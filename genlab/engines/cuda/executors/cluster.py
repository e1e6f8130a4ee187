"""The cluster executor: one launch of one thread-block cluster runs a whole training step of a
small network, level by level, with the cluster's hardware barrier between the levels
(cuda/cluster.cu).

A phase is a level's forward records, the loss, a hidden level's backward records, every weight
and bias gradient, or the update (cluster_plan.py writes the records on the host); the cluster's
warps share each phase's records (a warp: CLUSTER_CHUNK neurons of a group over 32 batch rows)
and wait for one another at the barrier. A phase costs about a barrier and a round trip to L2,
so a classroom network's step is a few tens of microseconds; a large network keeps only
CLUSTER multiprocessors busy and runs faster elsewhere (executor="auto" tries both).
"""

from __future__ import annotations

import weakref

import numpy as np

from .. import runtime
from ..constants import CLUSTER, CLUSTER_CHUNK, CLUSTER_RECORD, CLUSTER_THREADS, CLUSTER_WARP_FLOATS, Phase
from ..layout import Layout
from . import passes
from .base import Executor
from .cluster_plan import build


class Cluster(Executor):
    name = "cluster"
    chunk = CLUSTER_CHUNK
    file, kernel = "cluster.cu", "cluster_step"
    # as cluster.cu is built (its harness's variants differ): blocks, threads a block, floats a warp stages
    grid, threads, warp_floats = CLUSTER, CLUSTER_THREADS, CLUSTER_WARP_FLOATS

    def __init__(self, engine):
        super().__init__(engine)
        runtime.load(self.file)
        self.arguments = runtime.kernels().signatures[self.kernel][0]  # the ClusterStep record type
        # bytes of shared memory a block: each warp's staged inputs and two records
        self.shared = 4 * (self.warp_floats + 2 * CLUSTER_RECORD) * (self.threads // 32)
        function = runtime.kernels().functions[self.kernel]
        function.set_attribute(engine.drv.function_attribute.MAX_DYNAMIC_SHARED_SIZE_BYTES, self.shared)
        # the phases of each layout whose buffers were made (a layout that failed to load is dropped
        # with it)
        self._phases: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def counter_words(self, n_slots: int, batch: int) -> int:
        return 1  # the software barrier's count (devices without clusters)

    def topology_buffers(self, layout: Layout) -> dict:
        """The records and phases of `layout` (the update last, so that a step without it runs one
        phase fewer of the same list)."""
        plan = build(layout)
        self._phases[layout] = plan.phases
        return {"cluster_plan": self.engine.mem.upload(plan.records), "cluster_phases": self.engine.mem.upload(plan.phases)}

    def enqueue_step(self, batch: int) -> None:
        self._launch(batch, update=True)

    def enqueue_gradients(self, batch: int) -> None:
        """The step without its update (a data-parallel step sums the gradients in between;
        enqueue_update makes it)."""
        self._launch(batch, update=False)

    def _launch(self, batch: int, update: bool, trace=None) -> None:
        """The step's one launch; `trace`: a buffer of n_phases + 1 words for when each phase ended
        (ns, the first word the start), or None."""
        e = self.engine
        L, b = e.layout, e.buffers
        passes.zero_step_sums(e)
        e.mem.fill(b["counters"], 0, 1)
        code, s0, s1, s2, n_params, lr, h1, h2, eps = passes.optimizer_args(e)
        a = np.zeros((), self.arguments)
        for name in ("labels", "params", "grads", "act", "dz", "stats", "wstats", "scalars"):
            a[name] = int(b[name])
        a["plan"] = int(b["cluster_plan"])
        a["phases"] = int(b["cluster_phases"])
        a["barrier"] = int(b["counters"])
        a["trace"] = int(trace) if trace is not None else 0
        a["state0"], a["state1"], a["state2"] = int(s0), int(s1), int(s2)
        a["n_phases"] = len(self._phases[L]) - (not update)
        a["batch"], a["cap"], a["output_slot"] = batch, e.batch_cap, L.output_slot
        a["out_col"], a["classes"] = int(L.col_off[L.output_slot]), int(L.width[L.output_slot])
        a["optimizer"], a["n_params"], a["lr"], a["hyper1"], a["hyper2"], a["eps"] = code, n_params, lr, h1, h2, eps
        e.launch(self.kernel, (self.grid, 1), a.tobytes(), threads=self.threads, shared=self.shared)
        passes.ranges(e, batch)

    def phase_times(self, x, y) -> list[tuple[str, float]]:
        """One training step (applied, as step() would) with each phase's duration in
        microseconds, in order: (phase name, us)."""
        e = self.engine
        batch = e.put_batch(x, y)
        rows = self._phases[e.layout]
        buf = e.mem.new(8 * (len(rows) + 1), "trace")
        self._launch(batch, True, trace=buf)
        raw = np.empty(len(rows) + 1, np.uint64)
        e.drv.memcpy_dtoh_async(raw, buf, e.stream)
        e.stream.synchronize()
        buf.free()
        return [(Phase(int(row[0])).name.lower(), float(t) / 1e3) for row, t in zip(rows, np.diff(raw))]
