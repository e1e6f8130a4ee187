"""Pipelined synthetic gradients on the CUDA engine: DNI(pipelined=True) with backend="cuda", the
step of asynchronous/pipeline.py's PipelinedEngine (which says what it computes) on the GPU.

Each stage (a part of the cut network that has groups) works on its own batch: stage q on the
batch of q steps ago. Where a stage reads a group of an earlier stage (or the input), it reads a
kept block of that group's activations: the group's live block stays where the layout put it,
its kept blocks (a ring, newest first, as many as its furthest reader is stages away) sit after
the layout's columns in the activation buffer, and each stage's launches take a table of block
offsets of their own (`views`: the stage's groups and any it reads live, the earlier stages' it
reads at their kept blocks). So the stages share nothing they write within a step, and the step
is one CUDA graph whose stages run side by side, each on its stream:

    before     dz, the statistics and the step's scalars zeroed (the step's stream)
    stage q    forward of its groups (its own forward task lists, its view), the loss if it
               holds the output (labels of its batch, from the label ring), dni_predict into
               dz of its boundary groups (seed), its pushed backward, weight and bias gradients,
               the activation ranges (pruning), then its readers' modules: their predictions of
               the kept activations (no seed), the truth, gradients and errors
    after      the modules' Adam step, dni_keep (the rings take this step's activations and
               labels; refused with the update by the device guard), the network's update

The first step after a change of layout or of batch capacity, or after a refused step, is the
unpipelined DNI step, and fills the rings (dni_keep's fill). Growth scores smoothed on the GPU count every group's rows as
the first stage's batch (the statistics read back count each group's own).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...cuts import Stages, parts
from ...errors import BackendError
from ...network import Network
from . import runtime
from .constants import THREADS
from .deferred import settled
from .decoupled import FILE, DecoupledCudaEngine, DecoupledPush, split_levels
from .executors import output_parts, passes
from .executors.base import Activations
from .records import NULL, Ptr, Rows, addr


@dataclass(frozen=True)
class PipelinedRows(Rows):
    """The engine's rows, and the pipeline's: each stage's view of the columns (act_off of the
    batch it works on), the table of kept blocks, the ring of earlier batches' labels and the
    seed predictions."""

    views: Ptr = NULL
    keeps: Ptr = NULL
    label_ring: Ptr = NULL
    seeds: Ptr = NULL


class PipelinedPush(DecoupledPush):
    """The decoupled step, pipelined over the stages (module text)."""

    def enqueue_step(self, batch: int) -> None:
        e = self.engine
        if e.fresh:
            super().enqueue_step(batch)  # every stage on this batch
            e.enqueue_step_keep(batch, fill=True)
        else:
            e.enqueue_pipelined()

    def graph_key(self) -> tuple:
        e = self.engine
        return (*super().graph_key(), e.fresh, e.sizes)


class PipelinedCudaEngine(DecoupledCudaEngine):
    """The decoupled CUDA engine with its stages pipelined over successive batches (module text)."""

    keeps_pending = DecoupledCudaEngine.keeps_pending | {"enqueue_pipelined", "enqueue_step_keep", "labels_of", "view"}

    def __init__(self, *args, **kwargs):
        self.fresh, self.sizes, self.scored = True, (), None  # sizes: rows of each stage's batch, stage 0 first
        self.stages = self._next = None
        super().__init__(*args, **kwargs)
        if self.executor.activations is not Activations.GROUP:
            raise BackendError("pipelined synthetic gradients keep group-major activation blocks")

    @staticmethod
    def executor_type(name: str):
        DecoupledCudaEngine.executor_type(name)
        return PipelinedPush

    @settled
    def load(self, net: Network, placement: dict | None = None) -> None:
        self._next = Stages.of(net, parts(net, self.cuts))  # GraphError before anything changes
        super().load(net, placement)

    @settled
    def apply_growth(self, net: Network, log: list) -> None:
        self._next = Stages.of(net, parts(net, self.cuts))
        super().apply_growth(net, log)

    def _follow(self, net: Network) -> None:
        self.stages = self._next
        super()._follow(net)
        self.work = Work(self, self.part)
        self.fresh = True

    def module_order(self):
        st = self.stages  # grouped by the stage that reads them: each reader's modules are one run of the tables
        return lambda s: (st.reader[s], s)

    def batch_buffers(self, ix, cap: int) -> PipelinedRows:
        return PipelinedRows(**self.row_buffers(ix, cap))

    def row_buffers(self, ix, cap: int) -> dict:
        """The engine's, with room after the layout's columns for the kept blocks (act and dz,
        so no view reaches past either), each stage's view, the keep table and the label ring."""
        st = self._next
        new = super().row_buffers(ix, cap)
        keeps, views, cols = kept_blocks(ix, st, cap)
        size = 4 * cols * cap
        if max(views.max(), size // 4) >= 2**31:
            raise BackendError(f"activations and kept blocks of {cols} columns x {cap} rows exceed 2^31 elements")
        new["act"], new["dz"] = self.mem.new(size, "activations"), self.mem.new(size, "gradients")
        new["views"] = self.mem.upload(views.astype(np.int32), "pipeline views")
        new["keeps"] = self.mem.upload(np.array(keeps or [(0, 0, 0, 0)], np.int32), "pipeline keeps")
        new["label_ring"] = self.mem.new(4 * cap * max(st.depth, 1), "label ring")
        new["seeds"] = self.mem.new(4 * cap * max(sum(int(ix.width[ix.slot[s]]) for s in st.reader), 1),
                                    "seed predictions")
        return new

    def ensure_batch(self, batch: int) -> None:
        """Room for `batch` rows; the kept batches move into the larger buffers (the pipeline goes on)."""
        before, cap = self.dev.rows, self.batch_cap
        super().ensure_batch(batch)
        if self.batch_cap == cap or self.fresh or not isinstance(before, PipelinedRows):
            return
        L, st, drv = self.layout, self.stages, self.drv
        for (_, old, w, d), (_, new, _, _) in zip(kept_blocks(L, st, cap)[0], kept_blocks(L, st, self.batch_cap)[0]):
            for k in range(d):
                drv.memcpy_dtod_async(int(self.dev.rows.act) + 4 * (new + k * w * self.batch_cap),
                                      int(before.act) + 4 * (old + k * w * cap), 4 * w * cap, self.stream)
        for k in range(st.depth):
            drv.memcpy_dtod_async(int(self.dev.rows.label_ring) + 4 * k * self.batch_cap,
                                  int(before.label_ring) + 4 * k * cap, 4 * cap, self.stream)
        self.stream.synchronize()

    def view(self, stage: int) -> int:
        return addr(self.dev.rows.views, 4 * stage * len(self.layout.col_off))

    def labels_of(self, stage: int) -> int:
        rows = self.dev.rows
        return addr(rows.labels) if stage == 0 else addr(rows.label_ring, 4 * self.batch_cap * (stage - 1))

    # ------------------------------------------------------------------ the step
    def step(self, x, y, replicas=None):
        if replicas is not None:
            raise BackendError("pipelined synthetic gradients run in one process, not data-parallel")
        self.ensure_batch(len(x))  # before the sizes: new buffers restart the pipeline
        fresh, d = self.fresh, self.stages.depth
        self.sizes = (len(x),) * (d + 1) if fresh else (len(x), *self.sizes[:d])
        try:
            out = super().step(x, y)
        except BaseException:
            self.fresh = True  # a refused step restarts the pipeline
            raise
        self.scored = None if fresh else self.sizes[-1]
        self.rows_counted = self.work.rows(self.sizes)  # each group's statistics count its stage's rows
        self.fresh = False
        return out

    def enqueue_step_keep(self, rows: int, fill: bool) -> None:
        """dni_keep: the rings take this step's activations and labels (fill: every kept block)."""
        st = self.stages
        n = len(st.delay)
        widest = max([int(self.layout.width[self.layout.slot[s]]) for s in st.delay] + [1])
        r = self.dev.rows
        self.launch.keyed("dni_keep", (max(1, min(-(-rows * widest // THREADS), 1024)), n + 1), dict(
            keeps=r.keeps, n=np.int32(n), act=r.act, labels=r.labels, ring=r.label_ring, label_depth=np.int32(st.depth),
            stride=np.int32(self.batch_cap), rows=np.int32(rows), fill=np.int32(fill), guard=self.dev.sums.scalars))

    def enqueue_pipelined(self) -> None:
        """The pipelined step (module text) on the sizes set up by step()."""
        L, b, sizes, m, w = self.layout, self.dev, self.sizes, self.modules, self.work
        passes.zero_step_sums(self)
        self.mem.fill(b.rows.dz, 0, L.n_cols * self.batch_cap)
        m.fork.record(self.stream)
        for stage, part, stream, launch, done in zip(w.stage, m.parts, m.streams, m.launchers, m.done):
            stream.wait_for_event(m.fork)
            w.enqueue_stage(stage, part, launch, sizes[stage])
            done.record(stream)
        for done in m.done:
            self.stream.wait_for_event(done)
        m.enqueue_update()
        self.enqueue_step_keep(max(sizes), fill=False)
        passes.update(self)


class Work:
    """Each stage's work on the device for one layout: its forward task lists, and the runs of
    the modules' tables it seeds (as owner) and trains (as reader)."""

    def __init__(self, e: PipelinedCudaEngine, part: dict):
        L, b, st, m = e.layout, e.dev, e.stages, e.modules
        self.engine = e
        self.stage = [st.stage[next(g for g in L.groups if part.get(g) == p.part)] for p in m.parts]
        self.slot_stage = np.array([st.stage[g] for g in L.groups])
        levels = L.tiers[""][0]
        n = levels[-1][0] + levels[-1][1] if levels else 0
        tasks = np.empty((max(n, 1), 4), np.int32)
        e.drv.memcpy_dtoh_async(tasks, b.tasks.first.forward_tasks, e.stream)
        e.stream.synchronize()
        arrays, self.forward = {}, {}
        for q in set(self.stage):
            self.forward[q], arrays[f"forward{q}"] = split_levels(levels, tasks, self.slot_stage, q)
        owners = sorted(range(len(m.groups)), key=lambda i: (st.stage[m.groups[i]], i))
        table = np.empty(len(owners), runtime.record(FILE, "DniInterface"))
        host = np.empty(max(len(m.groups), 1) * table.itemsize, np.uint8)
        if m.groups:
            e.drv.memcpy_dtoh_async(host, m.table, e.stream)
            e.stream.synchronize()
            table[:] = host[:table.nbytes].view(table.dtype)[owners]
        arrays["owners"] = table.view(np.int32).reshape(len(owners), -1) if len(owners) else np.zeros((1, 6), np.int32)
        self._lists, self.where = e.mem.upload_all(arrays, "pipeline task lists")
        self.owned, self.read = {}, {}  # stage: (first, count) in the owner table, in the module table
        for k, i in enumerate(owners):
            q = st.stage[m.groups[i]]
            first, count = self.owned.get(q, (k, 0))
            self.owned[q] = (first, count + 1)
        for i, s in enumerate(m.groups):
            q = st.reader[s]
            first, count = self.read.get(q, (i, 0))
            self.read[q] = (first, count + 1)
        self.size = table.itemsize

    def rows(self, sizes: tuple) -> np.ndarray:
        """Each slot's rows this step (its stage's batch)."""
        return np.asarray(sizes, np.int64)[self.slot_stage]

    def enqueue_stage(self, q: int, part, launch, rows: int) -> None:
        """Stage q's share of the pipelined step, on `launch`'s stream (module text)."""
        e, L, b, m = self.engine, self.engine.layout, self.engine.dev, self.engine.modules
        view, labels, batch = e.view(q), e.labels_of(q), np.int32(rows)
        tasks = self.where[f"forward{q}"]
        (_, _, tiles, extra), = passes.tier_launches(e, rows)  # level_push: one tier
        given = {**extra, **output_parts.arguments(e), "act_off": view, "batch": batch, "ld": np.int32(e.ld)}
        for number, first, count in self.forward[q]:
            launch.named("forward_level", (count, tiles), b.by_name,
                         dict(tasks=addr(tasks, 16 * first), output_slot=np.int32(L.output_slot), **given))
        if q == e.stages.depth:  # the output's stage: its logits (a cut output's parts summed), the loss
            output_parts.enqueue_sum(e, rows, launch)
            passes.softmax_xent(e, rows, labels, launch)
        if q in self.owned:  # the synthetic gradients of its boundary groups, into their dz
            first, count = self.owned[q]
            launch("dni_predict", (count, -(-rows * m.widest // THREADS)),
                   m.cut(rows, interfaces=int(self.where["owners"]) + self.size * first, act_off=view,
                         labels=labels, pred=b.rows.seeds))
        passes.push_levels(e, rows, part.levels, part.tasks, part.hidden, launch, view)
        passes.dense_gradients(e, rows, part.weight, part.n_weight, part.bias, part.n_bias, launch, view)
        if e.pruning[0]:
            launch.named("activation_range", (part.n_bias, 1), b.by_name,
                         dict(tasks=part.bias, act_off=view, batch=batch, ld=np.int32(e.ld)))
        if q in self.read:  # the modules it reads: their predictions of the kept blocks, truth, gradients, errors
            first, count = self.read[q]
            cut = m.cut(rows, interfaces=int(m.table) + self.size * first, act_off=view, labels=labels, seed=0,
                        sums=int(m.sums) + 16 * first)
            grid = (count, -(-rows * m.widest // THREADS))
            launch("dni_predict", grid, cut)
            launch("dni_truth", grid, cut)
            m.enqueue_grads(launch, rows, cut, count)
            launch("dni_errors", (count, 1), cut)


def kept_blocks(ix, st: Stages, cap: int) -> tuple[list, np.ndarray, int]:
    """For a layout at `cap` rows: the keep table ((live block, first kept block, width, depth) of
    each group a later stage reads, offsets in floats), each stage's view of the blocks (a row of
    offsets a stage) and the columns of the activation buffer with the kept blocks."""
    extra, keeps = 0, []
    views = np.tile(ix.col_off.astype(np.int64) * cap, (st.depth + 1, 1))
    for s, d in sorted(st.delay.items()):
        slot, w = ix.slot[s], int(ix.width[ix.slot[s]])
        at = (ix.n_cols + extra) * cap
        keeps.append((int(views[0, slot]), at, w, d))
        for q in range(st.stage[s] + 1, st.stage[s] + d + 1):
            views[q, slot] = at + (q - st.stage[s] - 1) * w * cap
        extra += w * d
    return keeps, views, ix.n_cols + extra
