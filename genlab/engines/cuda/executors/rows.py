"""The row executor (dataflow_rows): one persistent launch runs a whole step (cuda/rows.cu), its
work items a group's CH neurons over the whole batch, a batch row per thread.

Items, in the order blocks take them (each needs only items taken before it):
    input         the input group's rows are there
    forward       one per forward task, level by level; applies the previous step's update to
                  exactly the weights it stages first, when one is pending (the deferred update)
    loss          softmax cross-entropy, the output group's dz and bias gradient
    backward      one per backward task, deepest level first, interleaved with the weight items
    weight        of the levels LAG below (backward_order), so that they fill idle blocks
    input weight  the weight gradients of the input group's out-edges, EW at a time
    update        only with defer_update off: the optimizer over CHUNK parameters an item

The step's own update is left pending: the next step's forward items apply it, or flush() does
before anything reads or replaces the parameters or runs a forward pass outside a step (the
engine's @settled entry points, engines/cuda/deferred.py), or a step with another learning rate
begins (before_step). The same update, at the same values, as the other executors make.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ....guard import gradient_ok

from ....errors import BackendError
from .. import runtime
from ..constants import CH, CHUNK, EW, LAG
from ..layout import Layout
from ..records import Ptr, Record, addr
from . import output_parts, passes
from .persistent import Persistent


@dataclass(frozen=True)
class RowsLists(Record):
    """The row executors' own list: the order of the backward and weight items (backward_order)."""

    bwd_order: Ptr


class Rows(Persistent):
    name = "dataflow_rows"
    chunk = CH
    file, kernel = "rows.cu", "rows_step"
    tiles_per_slot = False  # an item covers the whole batch
    traces = True

    def __init__(self, engine):
        super().__init__(engine)
        self.arguments = runtime.kernels().signatures[self.kernel][0]  # the RowsStep record type
        self.defer_update = True  # False: the update runs as the kernel's last items (for comparisons)
        self.pending: list | None = None  # the optimizer arguments of the update left pending
        self._args: list | None = None  # this step's optimizer arguments (before_step)
        self._stamp: tuple | None = None  # what they were made for: the layout (its buffers), the settings
        self._args_key = self._pending_key = None  # _key() of _args and of pending
        self._finite = None  # a guard that always passes (optim.cu), for flush()

    # ------------------------------------------------------------------ the step
    def enqueue_step(self, batch: int, trace=None) -> None:
        """The whole step as one launch; `trace`: a buffer for the items' timeline, or None."""
        e = self.engine
        L, d = e.layout, e.dev
        code, s0, s1, s2, n_params, lr, h1, h2, eps = self.setup(batch)
        tasks = d.tasks.first
        parts, n_parts, cap = output_parts.persistent_arguments(e)
        a = runtime.pack(self.arguments, d.by_name, dict(  # the rest are the state's buffers by name
            fwd_tasks=tasks.forward_tasks, bwd_tasks=addr(tasks.backward_tasks, 8 * L.backward_start),
            state0=s0, state1=s1, state2=s2, trace=trace if trace is not None else 0,
            n_fwd=L.n_forward_tasks, n_bwd=L.n_backward_tasks, batch=batch, n_slots=len(L.groups),
            input_slot=L.input_slot, output_slot=L.output_slot, split=self.split, parts=parts, n_parts=n_parts,
            cap=cap, optimizer=code, n_params=n_params, lr=lr, hyper1=h1, hyper2=h2, eps=eps,
            pending=self.pending is not None, defer=self.defer_update))
        self.launch(a.tobytes())
        passes.ranges(e, batch)

    def enqueue_gradients(self, batch: int) -> None:
        """The whole step, its update left pending (defer_update): the next step's forward items
        apply it, to the gradients as the replicas summed them."""
        if self.defer_update:
            self.enqueue_step(batch)
        else:
            super().enqueue_gradients(batch)

    def enqueue_update(self) -> None:
        if not self.defer_update:
            super().enqueue_update()

    def graph_key(self) -> tuple:
        return (self.pending is not None, self.defer_update)

    def before_step(self) -> None:
        """The step is about to apply the pending update with this step's optimizer arguments:
        apply it now if it was made with others (a new learning rate)."""
        e, opt = self.engine, self.engine.optimizer
        stamp = (e.layout, opt.code, opt.lr, *opt.hyper)  # the layout by identity: a new one has new buffers
        if stamp != self._stamp:
            self._stamp, self._args = stamp, passes.optimizer_args(e)
            self._args_key = _key(self._args)
        if self.pending is not None and self._pending_key != self._args_key:
            self.flush()

    def after_step(self, finite: bool) -> None:
        """The pending update was applied by the step; the step's own is pending unless refused."""
        self.pending = self._args if finite and self.defer_update else None
        self._pending_key = self._args_key

    def flush(self) -> None:
        if self.pending is None:
            return
        e = self.engine
        if self._finite is None:
            self._finite = e.mem.new(24, "guard")
            e.drv.memset_d32(self._finite, 0, 6)  # loss and gradient 0: finite
        passes.update(e, self.pending, self._finite)
        self.pending = None
        e.stream.synchronize()

    # ------------------------------------------------------------------ its lists
    def topology_buffers(self, layout: Layout) -> "RowsLists":
        return RowsLists(bwd_order=self.engine.mem.upload(backward_order(layout)))

    # ------------------------------------------------------------------ the timeline
    def trace_step(self, x: np.ndarray, y: np.ndarray) -> dict:
        """One training step with the timeline of its work items: per item (in the order they
        were taken) its kind ("input", "forward", "loss", "backward", "weight", "input_weight",
        "update"), group slot (-1 where none), SM, and the times (microseconds from the step's
        first item) it was taken, its inputs were complete and it was done. The step is applied,
        as step() would."""
        e = self.engine
        L = e.layout
        self.before_step()
        batch = e.put_batch(x, y)
        counts = self._item_counts(L)
        total = sum(c for _, c in counts)
        buf = e.mem.new(32 * total, "trace")
        e.mem.fill(buf, 0, 8 * total)
        self.enqueue_step(batch, trace=buf)
        e.enqueue_growth_observe(batch)
        raw = np.empty((total, 4), np.uint64)
        e.drv.memcpy_dtoh_async(raw, buf, e.stream)
        loss, _, gradsq = e.read_scalars()  # synchronises
        self.after_step(gradient_ok(loss, gradsq))
        buf.free()
        return self._timeline(L, counts, raw)

    def _item_counts(self, L: Layout) -> list[tuple[str, int]]:
        in_edges = sum(1 for (src, _d) in L.edges if L.slot[src] == L.input_slot)
        n_inw = -(-int(L.width[L.input_slot]) // CH) * -(-in_edges // EW)
        counts = [("input", 1), ("forward", L.n_forward_tasks), ("loss", 1), ("backward", 2 * L.n_backward_tasks),
                  ("input_weight", n_inw)]  # rows_step's items
        if not self.defer_update:
            counts.append(("update", -(-L.n_params // CHUNK)))
        return counts

    def _timeline(self, L: Layout, counts: list, raw: np.ndarray) -> dict:
        drv, tasks = self.engine.drv, self.engine.dev.tasks.first
        total = len(raw)
        kinds = np.concatenate([[k] * c for k, c in counts])
        slots = np.full(total, -1)
        fwd = np.empty((L.n_forward_tasks, 4), np.int32)
        drv.memcpy_dtoh(fwd, tasks.forward_tasks)
        bwd = np.empty((L.n_backward_tasks, 2), np.int32)
        drv.memcpy_dtoh(bwd, addr(tasks.backward_tasks, 8 * L.backward_start))
        order = backward_order(L)  # backward and weight items, interleaved
        slots[1:1 + len(fwd)] = fwd[:, 0]
        slots[2 + len(fwd):2 + len(fwd) + len(order)] = bwd[order >> 1, 0]
        kinds[2 + len(fwd):2 + len(fwd) + len(order)] = np.where(order & 1, "weight", "backward")
        item = (raw[:, 0] & 0xFFFFFFFF).astype(np.int64)
        if not np.array_equal(np.sort(item), np.arange(total)):
            raise BackendError("the trace is incomplete")
        t0 = raw[:, 1].min()
        us = lambda col: (raw[:, col] - t0).astype(np.float64) / 1e3
        taken = np.argsort(raw[:, 1], kind="stable")
        return {"kind": kinds[item][taken], "slot": slots[item][taken], "item": item[taken],
                "sm": (raw[:, 0] >> np.uint64(32)).astype(np.int64)[taken],
                "taken": us(1)[taken], "ready": us(2)[taken], "done": us(3)[taken]}


def backward_order(ix: Layout) -> np.ndarray:
    """The order of backward items (2t) and weight items (2t + 1) of backward task t: level by
    level from the deepest, each level's weight items after the backward items of the level LAG
    below it. Every item still waits only for items before it: a weight item needs its
    consumers' dz, from deeper levels."""
    levels = [(start - ix.backward_start, count) for start, count in ix.backward_levels]
    order: list[int] = []
    for i, (start, count) in enumerate(levels):
        order += range(2 * start, 2 * (start + count), 2)
        if i >= LAG:
            start, count = levels[i - LAG]
            order += range(2 * start + 1, 2 * (start + count), 2)
    for start, count in levels[max(0, len(levels) - LAG):]:
        order += range(2 * start + 1, 2 * (start + count), 2)
    return np.array(order or [0], np.int32)


def _key(args: list) -> tuple:
    """Optimizer arguments as a comparable tuple (buffers by address)."""
    return tuple(float(a) if isinstance(a, np.floating) else int(a) for a in args)
