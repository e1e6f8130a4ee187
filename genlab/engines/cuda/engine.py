"""The CUDA engine: genlab's kernels (cuda/*.cu) driven through PyCUDA, float32.

State lives on the GPU in structure-of-arrays form (layout.py, cuda/genlab.cuh), held as typed
records in `engine.dev` (records.py): a flat parameter buffer, its gradients and optimizer state in
the same layout (Parameters), activations and their gradients in the executor's layout (Rows);
the topology and task lists are built on the GPU (topology.py). A change (a load, growth, a larger
batch, another executor) makes its records in full, then swaps them in. A training step is the
executor's (executors/), captured once per batch size and optimizer settings into a CUDA graph
and replayed; one read-back a step brings its scalars (loss, correct count, sum of squared
gradients: 24 bytes) to check for divergence, with each group's sums of dL/dh (24 bytes a group)
for the growth statistics.
Growth is replayed on the GPU (growth.py). Subclasses: decoupled.py (synthetic gradients).
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import ClassVar

import numpy as np

from ...errors import BackendError, TrainingError
from ...guard import StepGuard, careful, check_gradient, gradient_ok, max_abs
from ...network import INPUT, Network
from ...precision import ALL, DEFAULT, Precision, parse
from ..base import EngineState, Replicas, Stepwise
from . import growth, readback, replicas as replicated, runtime, state, topology
from .choice import Chooser, candidates
from .concurrent import Concurrent
from .deferred import settled
from .executors import AUTO, Activations, executor_class, passes
from .graph import Graph
from .layout import Layout
from .memory import Memory
from .records import DeviceState, Parameters, Rows
from . import staging


class CudaEngine(Concurrent, Stepwise):
    """Runs a Network on an NVIDIA GPU with genlab's CUDA kernels (float32).

    executor: how a training step is scheduled (a name of executors.EXECUTORS); every one
    computes the same step. "auto" (the default) picks one per shape of network and batch, by a
    short timed trial cached per GPU (choice.py), and again when growth changes the shape.
    forward(), backward() and update() one by one run the level passes."""

    name = "cuda"
    dtypes = ("float32",)
    has_executors = True
    precisions = ALL  # the level and dataflow executors' products (genlab.precision)
    executor_type = staticmethod(executor_class)  # a name's executor class (a subclass may narrow the choice)
    # what does not settle the executor's pending work (deferred.py; the rest is @settled): a step's
    # own path, what reads only its sums, scores, gradients or activations, what only settled
    # members call (commit), and flush itself
    keeps_pending: ClassVar[frozenset[str]] = frozenset({
        "step", "replay", "launch_step", "finish_step", "put_batch", "put_labels", "rows", "read_scalars",
        "ensure_batch", "batch_buffers", "row_buffers", "block", "ld", "captured", "step_key",
        "enqueue_growth_observe", "trace_step", "stats", "grad_std", "grads", "smoothed_scores", "choose_growth",
        "prune_report", "grows_in_place", "commit", "flush"})

    def __init__(self, net: Network, optimizer, dtype="float32", executor: str = AUTO, precision: Precision = DEFAULT):
        if np.dtype(dtype).name not in self.dtypes:
            raise BackendError(f"the CUDA engine runs in float32, not {np.dtype(dtype)}; use the serial "
                               "engine for float64")
        import pycuda.driver as drv

        state = runtime.kernels()
        self.drv, self.context, self.device = drv, state.context, state.device
        self.dtype, self.optimizer, self.precision = np.dtype(np.float32), optimizer, parse(precision)
        self.pruning = (False, None)  # (track activation ranges, Taylor alpha or None), see growth.Grower
        self.growth_criterion = None  # (statistic, alpha): smoothed at every step (see growth.Grower)
        self.stream = drv.Stream()
        self.launch = runtime.Launcher(self.stream, self.precision)
        self.mem = Memory(self.stream)
        self.layout: Layout | None = None
        self.dev: DeviceState | None = None  # every device buffer, as typed records (records.py)
        self.batch_cap = self.param_cap = self.batch = 0
        self._stats_cache = None
        self._host_scalars = drv.pagelocked_zeros(24, np.uint8)
        self.uploads = staging.Staging(drv)  # page-locked buffers the batches go up through
        self._host_sums, self._sums_of = None, None  # the statistics' sums, read with the scalars
        self._graphs: dict[tuple, Graph] = {}
        self.rows_counted = 0  # rows the statistics of the last backward count (a data-parallel step: all replicas')
        self.replica_ranges = (None, None, 0)  # (layout, its parameter blocks' ranges, count): replicas.py
        self.guard = StepGuard(np.float32)
        self.chooser = Chooser() if executor == AUTO else None  # executor="auto" (choice.py)
        self.kinds: frozenset[str] = frozenset()  # the network's group kinds (load)
        self.executor = self.executor_type("level" if self.chooser else executor)(self)
        self.load(net)

    # ------------------------------------------------------------------ layout and buffers
    @property
    def ld(self) -> int:
        """The kernels' `ld`: 0 for group-major activations, else the length of a row (genlab.cuh)."""
        return self.layout.n_cols if self.executor.activations is Activations.BATCH else 0

    @property
    def grows_in_place(self) -> bool:
        """Whether growth's new parameters are made on the GPU (apply_growth): where every group is
        dense; other kinds grow on the host (their identities and splits are not replayed here)."""
        return self.layout is not None and not self.layout.kinds.any

    def block(self, slot: int) -> int:
        """Byte offset of a group's activations (row 0, neuron 0)."""
        return 4 * int(self.layout.col_off[slot]) * self.executor.activations.block_scale(self.batch_cap)

    def batch_buffers(self, ix: Layout, cap: int) -> Rows:
        """Activations, their gradients, the labels and the executor's counters for `cap` rows."""
        return Rows(**self.row_buffers(ix, cap))

    def row_buffers(self, ix: Layout, cap: int) -> dict:
        """The buffers of batch_buffers' record, by field (a subclass's record adds its own)."""
        offsets = ix.col_off.astype(np.int64) * self.executor.activations.block_scale(cap)
        new = {"act": self.mem.new(4 * ix.n_cols * cap, "activations"),
               "dz": self.mem.new(4 * ix.n_cols * cap, "gradients"), "labels": self.mem.new(4 * cap, "labels"),
               "act_off": self.mem.upload(offsets.astype(np.int32))}
        if ix.kinds.cache_floats:  # what the kinds' forward keeps for their backward (attention), per sample
            new["cache"] = self.mem.new(4 * ix.kinds.cache_floats * (cap // ix.kinds.tokens), "the kinds' cache")
        if ix.kinds.tokens > 1:  # a sequence network's logits and their gradient, a row per sample
            classes = int(ix.width[ix.output_slot])
            new["pooled"], new["dpooled"] = (self.mem.new(4 * classes * cap, "logits") for _ in range(2))
        new.update(self.executor.batch_scratch(ix, cap))
        words = self.executor.counter_words(len(ix.groups), cap)
        if words:
            new["counters"] = self.mem.new(4 * words, "dependency counters")
        return new

    def ensure_batch(self, batch: int) -> None:
        """Activation and gradient blocks with room for `batch` rows (capacity doubles)."""
        if batch <= self.batch_cap:
            return
        L = self.layout
        cap = max(batch, 2 * self.batch_cap)
        if L.n_cols * cap >= 2**31:
            cap = batch
        if L.n_cols * cap >= 2**31:
            raise BackendError(f"activations of {L.n_cols} neurons x {batch} rows exceed 2^31 elements")
        self.mem.check_room(8 * L.n_cols * cap + 4 * L.kinds.cache_floats * (cap // L.kinds.tokens),
                            f"activations for a batch of {cap}")
        new = self.batch_buffers(L, cap)
        self.stream.synchronize()
        self.dev = replace(self.dev, rows=new)
        self.batch_cap = cap
        self._graphs.clear()

    @settled
    def load(self, net: Network, placement: dict | None = None) -> None:
        """Take the network's topology and parameters (a full upload); keep the optimizer state
        of unchanged parameters and the scores of remaining groups. Everything is allocated anew
        before anything is replaced, so a failure (out of memory) leaves the engine as it was."""
        if net.recurrent:
            raise BackendError("CudaEngine runs DAGs; a recurrent network runs on RecurrentCudaEngine "
                               "(Trainer(backend='cuda') picks it)")
        self.kinds = frozenset(net.kinds[g] for g in net.groups if g != INPUT)
        if self.chooser is not None and not self.kinds <= self.executor.kinds:
            self.executor = candidates(self.kinds, self.precision)[0](self)  # until the first step chooses
        self.executor.check_kinds(self.kinds)
        L = Layout(net) if placement is None else Layout.placed(net, placement)
        host = np.empty(L.n_params, np.float32)
        for key, off in L.offsets.items():
            value = net.weights[key[1:]] if key[0] == "W" else net.biases[key[1]]
            host[off:off + value.size] = value.ravel()
        states, cap = self.optimizer.state_names, max(self.batch_cap, 1)
        self.mem.check_room(4 * L.n_params * (2 + len(states)) + 8 * L.n_cols * cap
                            + 4 * L.kinds.cache_floats * (cap // L.kinds.tokens),
                            f"a network of {L.n_params} parameters and {L.n_cols} neurons")
        built, scores = topology.build(self, L, cap), growth.group_state(self, L)
        carried = growth.param_maps(self.layout, L, {})[1] if self.layout is not None else None
        state_bound = self.guard.state if carried is not None and (carried >= 0).any() else 0.0
        state = tuple(self.mem.new(4 * L.n_params, "optimizer state") for _ in states)
        for i, buf in enumerate(state):
            if carried is not None and (carried >= 0).any():
                growth.gather(self, buf, self.dev.parameters.state[i], carried)
            else:
                self.drv.memset_d32(buf, 0, max(L.n_params, 1))
        parameters = Parameters(self.mem.upload(host, "parameters"), self.mem.new(4 * L.n_params, "gradients"), state)
        self.stream.synchronize()
        self.commit(DeviceState.of(built, parameters, scores), L, cap, L.n_params)
        self.guard.measured(max_abs([host]), state_bound)

    def commit(self, new: DeviceState, L: Layout, cap: int, param_cap: int) -> None:
        """Replace the device state and the layout with new ones (made in full beforehand)."""
        self.dev = new
        self.layout, self.batch_cap, self.param_cap, self._stats_cache = L, cap, param_cap, None
        self._graphs.clear()  # they hold the old buffers' addresses

    @settled
    def use_executor(self, name: str) -> None:
        """Schedule steps with the executor called `name` from now on: its task lists and
        activation layout are built for the current topology; parameters, optimizer state and
        growth scores stay (the running activation ranges start again, as after growth)."""
        cls = self.executor_type(name)
        if type(self.executor) is cls:
            return
        current, self.executor = self.executor, cls(self)
        try:
            self.executor.check_kinds(self.kinds)
            L = copy.copy(self.layout)
            L.records = []  # the edge list is copied as it is
            new = topology.build(self, L, self.batch_cap, self.dev.edges)
            self.stream.synchronize()
        except BaseException:
            self.executor = current
            raise
        self.commit(self.dev.with_topology(new), L, self.batch_cap, self.param_cap)

    # ------------------------------------------------------------------ rows in and out
    def rows(self, slot: int, batch: int, host: np.ndarray, to_device: bool = True) -> None:
        """Copy `batch` rows of a group's activations from `host` to the device, or back into it
        (staging.rows: an upload is queued; synchronise the stream before reading a read back)."""
        staging.rows(self, slot, batch, host, to_device)

    def put_batch(self, x: np.ndarray, y: np.ndarray | None = None) -> int:
        """Upload a batch of samples as rows (a sequence network's: a row per token); return the rows."""
        L = self.layout
        batch = len(x) * L.kinds.tokens
        self.ensure_batch(batch)
        self.batch = self.rows_counted = batch
        self.rows(L.slot[INPUT], batch, np.ascontiguousarray(np.reshape(x, (batch, -1)), np.float32))
        if y is not None:
            self.put_labels(y)
        return batch

    def put_labels(self, y: np.ndarray) -> None:
        y = np.ascontiguousarray(y, np.int32)
        if len(y) * self.layout.kinds.tokens != self.batch:
            raise ValueError(f"{len(y)} labels for a batch of {self.batch // self.layout.kinds.tokens} samples")
        self.drv.memcpy_htod_async(self.dev.rows.labels, self.uploads.fill("labels", y), self.stream)
        self.uploads.done("labels", self.stream)

    def read_scalars(self) -> tuple[float, int, float]:
        """(loss, correct predictions, sum of squared gradients) of the last backward. The
        per-group sums of dL/dh come back in the same synchronisation (grad_std reads them)."""
        L, drv = self.layout, self.drv
        if self._host_sums is None or self._host_sums.shape[0] != len(L.groups):
            self._host_sums = drv.pagelocked_empty((len(L.groups), 3), np.float64)
        drv.memcpy_dtoh_async(self._host_scalars, self.dev.sums.scalars, self.stream)
        drv.memcpy_dtoh_async(self._host_sums, self.dev.sums.stats, self.stream)
        self.stream.synchronize()
        self._sums_of = L  # _host_sums hold the sums of this layout's last backward
        raw = self._host_scalars
        return (float(raw[:8].view(np.float64)[0]), int(raw[8:12].view(np.int32)[0]),
                float(raw[16:24].view(np.float64)[0]))

    # ------------------------------------------------------------------ training
    def flush(self) -> None:
        """Apply what the executor left pending (the row executor's deferred update); every
        @settled entry point does it first (deferred.py), so only code outside the engine that
        launches a captured step itself needs it."""
        self.executor.flush()

    @settled
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits for a batch x (copied to the host)."""
        L = self.layout
        batch = self.put_batch(x)
        passes.forward(self, batch)
        out = np.empty((batch // L.kinds.tokens, int(L.width[L.output_slot])), np.float32)
        if L.kinds.tokens > 1:
            self.drv.memcpy_dtoh_async(out, self.dev.rows.pooled, self.stream)
        else:
            self.rows(L.output_slot, batch, out, to_device=False)
        self.stream.synchronize()
        return out

    @settled
    def backward(self, y: np.ndarray) -> float:
        """Loss of the last forward against labels y; fills gradients and statistics."""
        self.put_labels(y)
        passes.backward(self, self.batch)
        self._stats_cache = None
        return self.read_scalars()[0]

    @settled
    def update(self) -> None:
        """One optimizer step with the gradients of the last backward (refused on the device if
        they or the loss are not finite)."""
        passes.update(self)
        self.stream.synchronize()

    def step(self, x: np.ndarray, y: np.ndarray, replicas: Replicas | None = None) -> tuple[float, int]:
        """Forward, backward and update on one batch as one CUDA graph; return (loss, correct).
        With replicas, the step of one replica of a data-parallel run (replicas.py).
        All or nothing (genlab.guard): the kernels refuse the update of a step whose loss or
        gradient is not finite (or diverged); a step whose update the guard cannot prove finite
        runs with a backup, put back if a parameter became non-finite. Either raises TrainingError."""
        if self.chooser is not None:
            rows = (len(x) if replicas is None else replicas.total) * self.layout.kinds.tokens
            self.chooser.step(self, x, y, rows, replicated=replicas is not None)
        if not self.guard.safe(self.optimizer):
            return careful(self, lambda: self._take(x, y, replicas))[:2]
        loss, correct, gradsq = self._take(x, y, replicas)
        self.guard.advance(self.optimizer, gradsq)
        return loss, correct

    def _take(self, x: np.ndarray, y: np.ndarray, replicas: Replicas | None) -> tuple[float, int, float]:
        """The step itself: its (loss, correct, gradsq); TrainingError where its loss or gradient
        was not finite (the kernels refused its update)."""
        if replicas is None:
            loss, correct, gradsq = self.replay(self.put_batch(x, y))
        else:
            loss, correct, gradsq = replicated.step(self, x, y, replicas)
            self.executor.after_step(gradient_ok(loss, gradsq))
        self._stats_cache = None
        check_gradient(loss, gradsq)
        return loss, correct, gradsq

    def replay(self, batch: int) -> tuple[float, int, float]:
        """Run the captured step on the batch put up (put_batch); its (loss, correct, gradsq)."""
        self.launch_step(batch)
        return self.finish_step()

    @settled
    def measure(self) -> tuple[float, float]:
        """Exact bounds for the step guard, from the device."""
        found = self.exact_bounds()
        self.guard.measured(*found)
        return found

    # ------------------------------------------------------------------ the careful update (guard.careful)
    @settled
    def backup_state(self, optimizer_state: bool = True) -> state.Backup:
        """The parameters (and the optimizer state) as they are now, the pending update applied."""
        return state.Backup(self.dev.parameters, self.layout.n_params, self.mem, optimizer_state)

    @settled
    def restore_state(self, saved: state.Backup) -> None:
        saved.put_back(self.dev.parameters)

    @settled
    def exact_bounds(self) -> tuple[float, float]:
        return state.bounds(self)

    @settled
    def export_state(self) -> EngineState:
        return state.export(self)

    @settled
    def import_state(self, saved: EngineState, net: Network) -> None:
        if saved.placement is not None and saved.placement.get("engine") == self.name:
            self.load(net, saved.placement)  # the saved run's slots and offsets: it resumes exactly
        state.restore(self, saved)

    def trace_step(self, x: np.ndarray, y: np.ndarray) -> dict:
        """One training step with the timeline of the executor's work items (executors/rows.py)."""
        out = self.executor.trace_step(x, y)
        self._stats_cache = None
        return out

    def enqueue_growth_observe(self, batch: int) -> None:
        growth.observe(self, batch)

    def step_key(self) -> tuple:
        """What, beside the batch, makes a captured step differ: the optimizer's settings, what is
        tracked for growth and pruning, the executor's own."""
        opt = self.optimizer
        return (self.pruning, self.growth_criterion, opt.code, opt.lr, *opt.hyper, *self.executor.graph_key())

    def captured(self, key: tuple, enqueue) -> Graph:
        """The graph of what enqueue() queues, captured on first use of `key`."""
        graph = self._graphs.get(key)
        if graph is None:
            self.stream.synchronize()
            graph = self._graphs[key] = Graph(self.stream, enqueue)
        return graph

    def _graph(self, batch: int) -> Graph:
        """The graph of a whole training step for this batch size (captured on first use)."""
        return self.captured((batch, *self.step_key()),
                             lambda: (self.executor.enqueue_step(batch), growth.observe(self, batch)))

    # ------------------------------------------------------------------ reading back
    @property
    @settled
    def params(self) -> dict[tuple, np.ndarray]:
        """Every parameter, copied to the host, keyed as the serial engine keys them."""
        return readback.unflatten(self, self.dev.parameters.params)

    @property
    def grads(self) -> dict[tuple, np.ndarray]:
        return readback.unflatten(self, self.dev.parameters.grads)

    @property
    def stats(self) -> dict[str, dict]:
        """Per-group statistics of the last backward, as the serial engine reports them."""
        if self._stats_cache is None:
            self._stats_cache = readback.stats(self)
        return self._stats_cache

    def _sums_and_std(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per slot: the sums of dL/dh, its squares and h dL/dh; the element counts; the std of dL/dh."""
        return readback.sums_and_std(self)

    @property
    def grad_std(self) -> dict[int, float]:
        """The std of dL/dh per group but the input, in ascending group id: read at every training
        step, so it fetches only the sums and orders them through an index made with the layout."""
        if self._stats_cache is not None:
            return dict(sorted(self._stats_cache["grad_std"].items()))
        L = self.layout
        return dict(zip(L.std_ids, self._sums_and_std()[2][L.std_slots].tolist()))

    # ------------------------------------------------------------------ growth
    smoothed_scores = growth.scores  # read from the GPU

    def choose_growth(self, eligible: set[int], threshold: float, relative: bool) -> list[tuple[int, float]]:
        return growth.choose(self, eligible, threshold, relative)

    def prune_report(self, judge: bool = True) -> tuple[dict, dict]:
        return growth.prune_report(self, judge)

    @settled
    def apply_growth(self, net: Network, log: list) -> None:
        """Grow in place (growth.py); growth the guard cannot prove finite runs with a backup, and
        is refused (TrainingError, the engine as it was) if it made a parameter non-finite."""
        if not self.grows_in_place:  # grown on the host: its parameters are current (the optimizer state is kept)
            self.load(net)
            return
        self.kinds = frozenset(net.kinds[g] for g in net.groups if g != INPUT)
        risky = not growth.provably_finite(self, log)
        saved = (self.dev, self.layout, self.batch_cap, self.param_cap)
        backup = self.backup_state(optimizer_state=False) if risky else None
        growth.apply(self, net, log)
        if math.inf in self.measure() and backup is not None:  # exact bounds again, in any case
            self.commit(*saved)
            backup.put_back(self.dev.parameters)
            self.measure()
            raise TrainingError("this growth step would have made parameters non-finite; it was not applied")
