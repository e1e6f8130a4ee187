"""The cluster executor: one launch of one thread-block cluster runs a whole training step of a
small network, level by level, with the cluster's hardware barrier between the levels
(cuda/cluster.cu).

A phase is a level's forward records, the loss, a hidden level's backward records, or every
weight and bias gradient (cluster_plan.py writes the records on the host); the cluster's warps
share each phase's records (a warp: CLUSTER_CHUNK neurons of a group over 32 batch rows) and wait
for one another at the barrier; the update follows as a kernel over the whole GPU. A phase costs
the barrier (0.42 us on an H200) and its slowest record, about 5 us today (benchmarks/NOTES.md):
the fastest executor for a 64-32-10 MLP (30 us a step against 37 for dataflow_rows), not yet for
the 50-group classroom network (100 against 84); a large network keeps only CLUSTER
multiprocessors busy and runs faster elsewhere. executor="auto" tries it beside the others.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np

from ....errors import BackendError
from .. import runtime
from ..constants import CLUSTER, CLUSTER_CHUNK, CLUSTER_RECORD, CLUSTER_THREADS, CLUSTER_WARP_FLOATS, Phase
from ..layout import Layout
from ..records import Ptr, Record
from . import passes
from .base import Executor
from .cluster_plan import build


@dataclass(frozen=True)
class ClusterLists(Record):
    """The cluster executor's own lists: its plan's records and phases (cluster_plan.py)."""

    plan: Ptr
    phases: Ptr


FP32_LANES = 128  # fp32 multiply-adds a multiprocessor issues a cycle, the most of any GPU (Hopper's)


class Cluster(Executor):
    name = "cluster"
    chunk = CLUSTER_CHUNK
    file, kernel = "cluster.cu", "cluster_step"
    # as cluster.cu is built (its harness's variants differ): blocks, threads a block, floats a warp stages
    grid, threads, warp_floats = CLUSTER, CLUSTER_THREADS, CLUSTER_WARP_FLOATS
    # the update as the launch's last phase (on CLUSTER multiprocessors) or as a kernel over the
    # whole GPU after it (the classroom network's step 105.6 against 100.5 us, benchmarks/NOTES.md)
    fused_update = False

    def __init__(self, engine):
        super().__init__(engine)
        runtime.load(self.file)
        self.arguments = runtime.kernels().signatures[self.kernel][0]  # the ClusterStep record type
        # bytes of shared memory a block: each warp's staged inputs and two records
        self.shared = 4 * (self.warp_floats + 2 * CLUSTER_RECORD) * (self.threads // 32)
        optin = getattr(engine.drv.device_attribute, "MAX_SHARED_MEMORY_PER_BLOCK_OPTIN", None)
        room = engine.device.get_attribute(optin) if optin is not None else self.shared
        if self.shared > room:
            raise BackendError(f"the cluster executor needs {self.shared} bytes of shared memory a block; "
                               f"{engine.device.name()} gives at most {room}")
        function = runtime.kernels().functions[self.kernel]
        function.set_attribute(engine.drv.function_attribute.MAX_DYNAMIC_SHARED_SIZE_BYTES, self.shared)
        # the phases of each layout whose buffers were made (a layout that failed to load is dropped
        # with it)
        self._phases: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._parts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._scratch: tuple | None = None  # (floats, buffer): the output's parts

    @classmethod
    def least_ms(cls, layout: Layout, batch: int, engine) -> float:
        """Its multiply-adds (three a weight and row: forward, dL/dh, the weight's gradient) at the
        fastest its CLUSTER multiprocessors could do them: 128 fp32 lanes each at the GPU's clock.
        (W4: ~200 ms against level's 21; the classroom network: ~0.2 us.)"""
        weights = sum(math.prod(shape) for key, shape in layout.shapes.items() if key[0] == "W")
        clock = getattr(engine.drv.device_attribute, "CLOCK_RATE", None)
        hz = engine.device.get_attribute(clock) * 1e3 if clock is not None else 3e9  # kHz; else above any GPU's
        return 6.0 * batch * weights / (cls.grid * FP32_LANES * 2 * hz) * 1e3

    def counter_words(self, n_slots: int, batch: int) -> int:
        return 1  # the software barrier's count (devices without clusters)

    def topology_buffers(self, layout: Layout) -> "ClusterLists":
        """The records and phases of `layout` (the update last, so that a step without it runs one
        phase fewer of the same list)."""
        plan = build(layout)
        self._phases[layout], self._parts[layout] = plan.phases, plan.parts
        return ClusterLists(plan=self.engine.mem.upload(plan.records), phases=self.engine.mem.upload(plan.phases))

    def enqueue_step(self, batch: int) -> None:
        self._launch(batch, update=self.fused_update)
        if not self.fused_update:
            passes.update(self.engine)

    def enqueue_gradients(self, batch: int) -> None:
        """The step without its update (a data-parallel step sums the gradients in between;
        enqueue_update makes it)."""
        self._launch(batch, update=False)

    def _launch(self, batch: int, update: bool, trace=None) -> None:
        """The step's one launch; `trace`: a buffer of n_phases + 1 words for when each phase ended
        (ns, the first word the start), or None."""
        e = self.engine
        L, d = e.layout, e.dev
        passes.zero_step_sums(e)
        e.mem.fill(d.rows.counters, 0, 1)
        code, s0, s1, s2, n_params, lr, h1, h2, eps = passes.optimizer_args(e)
        parts = self._parts[L]
        a = runtime.pack(self.arguments, d.by_name, dict(  # the rest are the state's buffers by name
            barrier=d.rows.counters, trace=trace if trace is not None else 0, state0=s0, state1=s1, state2=s2,
            n_phases=len(self._phases[L]) - (not update), batch=batch, cap=e.batch_cap, output_slot=L.output_slot,
            out_col=int(L.col_off[L.output_slot]), classes=int(L.width[L.output_slot]), n_parts=parts,
            parts=self._parts_buffer(parts * e.batch_cap * int(L.width[L.output_slot])) if parts > 1 else 0,
            optimizer=code, n_params=n_params, lr=lr, hyper1=h1, hyper2=h2, eps=eps))
        e.launch(self.kernel, (self.grid, 1), a.tobytes(), threads=self.threads, shared=self.shared)
        passes.ranges(e, batch)

    def _parts_buffer(self, floats: int):
        """Scratch for the output group's parts, kept while it is large enough."""
        if self._scratch is None or self._scratch[0] < floats:
            self._scratch = (floats, self.engine.mem.new(4 * floats, "output parts"))
        return self._scratch[1]

    def phase_times(self, x, y) -> dict:
        """One training step (applied, as step() would) with its timeline, in microseconds from
        the step's start: "phases" [(name, end)] and "items" per phase [(start, staged, summed,
        end) of each item; staged and summed only for forward items, else 0]."""
        e = self.engine
        batch = e.put_batch(x, y)
        rows, rb = self._phases[e.layout], -(-batch // 32)
        rows = rows if self.fused_update else rows[:-1]  # the update: a kernel of its own after the launch
        counts = [int(c) * rb if k in (Phase.FORWARD, Phase.BACKWARD) else rb if k == Phase.LOSS
                  else int(c) if k == Phase.GRADIENTS else 0 for k, _, c, _ in rows]
        words = len(rows) + 1 + 4 * sum(counts)
        buf = e.mem.new(8 * words, "trace")
        e.mem.fill(buf, 0, 2 * words)
        self._launch(batch, self.fused_update, trace=buf)
        if not self.fused_update:
            passes.update(e)
        raw = np.empty(words, np.uint64)
        e.drv.memcpy_dtoh_async(raw, buf, e.stream)
        e.stream.synchronize()
        buf.free()
        t0 = int(raw[0])
        us = lambda t: (int(t) - t0) / 1e3 if t else 0.0
        items, at = [], len(rows) + 1
        for c in counts:
            items.append([tuple(us(t) for t in raw[at + 4 * i:at + 4 * i + 4]) for i in range(c)])
            at += 4 * c
        return {"phases": [(Phase(int(r[0])).name.lower(), us(t)) for r, t in zip(rows, raw[1:len(rows) + 1])],
                "items": items}
