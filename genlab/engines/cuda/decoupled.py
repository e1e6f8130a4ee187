"""Synthetic gradients (genlab.DNI) on the CUDA engine: the step of asynchronous/dni.py's
DecoupledEngine, on the GPU (cuda/dni.cu), captured as one CUDA graph like every step.

The step is the level_push executor's with the backward cut at the crossing edges (an edge from
a group of one part into a later part):

    forward    as always
    backward   dz starts from each boundary group's synthetic gradient M(h) / batch instead of
               zero (dni_predict); each part pushes only into its own groups, so no crossing
               edge sends its share (the earlier part takes the prediction, not the truth) and
               no part waits for another: the parts' backwards and their weight and bias
               gradients run side by side, each part on a stream of its own (forked from the
               step's stream and joined back, inside the graph)
    truth      batch * the shares the crossing edges would have sent (dni_truth): the modules'
               targets (the later part's own dz, which its own cuts may have seeded: the targets
               bootstrap, as in the paper and the serial engine)
    modules    their gradients (dni_grads, whose squares join the step's gradient norm, so one
               guard refuses the network's and the modules' updates together), their errors
               (dni_errors, read back with the step's scalars), their Adam step (optim.cu)
    update     the network's, as always

A boundary group keeps its module (parameters and Adam state) across growth while it still
crosses with the same width; a new one starts at zero, as on the serial engine.
"""

from __future__ import annotations

import math
import weakref
from collections import deque
from dataclasses import dataclass

import numpy as np

from ...cuts import ERRORS, Interface, checked_width, module_entry, parts, relative_error
from ...errors import BackendError, GraphError
from ...network import INPUT, OUTPUT, Network
from ...optim import Adam
from ...precision import DEFAULT as FP32
from ...precision import Precision
from . import runtime
from .deferred import settled
from .constants import DNI_ROWS, THREADS
from .engine import CudaEngine
from .executors import AUTO, passes
from .executors.level import LevelPush
from .records import Parameters

FILE = "dni.cu"


class DecoupledPush(LevelPush):
    """level_push with the backward cut into parts by the engine's modules (module text)."""

    def enqueue_step(self, batch: int) -> None:
        e = self.engine
        passes.forward(e, batch)
        passes.backward(e, batch, e.modules)
        e.modules.enqueue_train(batch)
        e.modules.enqueue_update()
        passes.update(e)

    def enqueue_gradients(self, batch: int) -> None:
        raise BackendError("synthetic gradients run in one process (or with distributed='partitioned'), not "
                           "data-parallel")

    def graph_key(self) -> tuple:
        opt = self.engine.module_optimizer
        return (opt.lr, *opt.hyper)


@dataclass(frozen=True)
class Part:
    """One part's backward on the device: its push levels ((number, first task, count) in `tasks`),
    the sources it pushes into (`hidden`, a flag a slot), its weight and bias gradient tasks (`part`:
    whose)."""

    part: int
    levels: list
    tasks: int
    hidden: int
    weight: int
    n_weight: int
    bias: int
    n_bias: int


class Modules:
    """The modules of one layout on the device: their parameters, gradients and Adam state as flat
    buffers, the tables cuda/dni.cu reads (DniInterface, DniCrossing), the batch's predictions and
    targets; each part's task lists and stream (passes.Seeded: the step's pushed backward)."""

    def __init__(self, e: "DecoupledCudaEngine", part: dict, crossing: set, classes: int, old: "Modules | None",
                 order=None):
        L = e.layout
        # a weak reference, as an executor's: a replaced engine gives its device memory back at once
        self.engine, self.layout, self.classes, self.conditioned = weakref.proxy(e), L, classes, e.conditioned
        self.groups = sorted({s for s, _ in crossing}, key=order)  # order: a sort key of boundary groups
        into = {s: sorted((g for t, g in crossing if t == s), key=lambda g: -L.slot[g]) for s in self.groups}
        table = np.zeros(len(self.groups), runtime.record(FILE, "DniInterface"))
        edges = np.zeros(len(crossing), runtime.record(FILE, "DniCrossing"))
        self.blocks = {}  # {group: (first parameter, width)}
        n_params = cols = c = 0
        for i, s in enumerate(self.groups):
            w = int(L.width[L.slot[s]])
            table[i] = (L.slot[s], w, cols, n_params, c, c + len(into[s]))
            self.blocks[s] = (n_params, w)
            for g in into[s]:
                wd, off = int(L.width[L.slot[g]]), L.offsets[("W", s, g)]
                edges[c] = (L.slot[g], wd, off)
                c += 1
            n_params, cols = n_params + self.size(w), cols + w
        self.n_params, self.cols = n_params, cols
        self.widest = max((w for _, w in self.blocks.values()), default=1)
        self.largest = max((self.size(w) for _, w in self.blocks.values()), default=1)
        values = self._carried(old)
        mem = e.mem
        self.table, self.edges = mem.upload(table, "DNI modules"), mem.upload(edges, "DNI crossing edges")
        self.params, self.m, self.v, self.t = (mem.upload(a, "DNI modules") for a in values)
        self.grads = mem.new(4 * max(n_params, 1), "DNI module gradients")
        self._parts(e, part)
        self.sums = mem.new(16 * max(len(self.groups), 1), "DNI module errors")
        self.host_sums = e.drv.pagelocked_zeros((max(len(self.groups), 1), 2), np.float64)
        self.rows = 0
        self.pred = self.target = self.partials = None
        self.ensure(e.batch_cap)

    def shapes(self, w: int) -> list[tuple[str, tuple]]:
        """A module of width w's parameters in cuda/dni.cu's order: W, b, and C conditioned."""
        return [("W", (w, w)), ("b", (w,)), *([("C", (self.classes, w))] if self.conditioned else [])]

    def size(self, w: int) -> int:
        return sum(math.prod(shape) for _, shape in self.shapes(w))

    def _carried(self, old: "Modules | None") -> list[np.ndarray]:
        """Parameters, m, v, t of every module: a group's old ones where it kept its width (and the
        label's part, conditioned), else zero."""
        values = [np.zeros(max(self.n_params, 1), np.float32) for _ in range(4)]
        if old is None or not old.groups:
            return values
        before = old.host(4)
        for s, (start, w) in self.blocks.items():
            if s in old.blocks and old.blocks[s][1] == w and old.classes == self.classes:
                first, size = old.blocks[s][0], self.size(w)
                for new, previous in zip(values, before):
                    new[start:start + size] = previous[first:first + size]
        return values

    def ensure(self, rows: int) -> None:
        """Predictions, targets and the gradients' partial sums for `rows` rows (before a capture:
        allocation is not captured)."""
        if rows > self.rows:
            e = self.engine
            self.pred = e.mem.new(4 * rows * max(self.cols, 1), "DNI predictions")
            self.target = e.mem.new(4 * rows * max(self.cols, 1), "DNI targets")
            self.partials = e.mem.new(4 * -(-rows // DNI_ROWS) * max(self.n_params, 1), "DNI partial gradients")
            self.rows = rows

    def host(self, count: int) -> list[np.ndarray]:
        """The first `count` of parameters, m, v, t from the device."""
        e = self.engine
        out = []
        for buf in (self.params, self.m, self.v, self.t)[:count]:
            a = np.empty(max(self.n_params, 1), np.float32)
            e.drv.memcpy_dtoh_async(a, buf, e.stream)
            out.append(a)
        e.stream.synchronize()
        return out

    # ------------------------------------------------------------------ the step's parts
    def cut(self, batch: int, **given) -> bytes:
        """The DniCut of a launch over every module on the step's buffers (`given`: fields set otherwise)."""
        d = self.engine.dev
        a = runtime.pack(runtime.record(FILE, "DniCut"), d.by_name, {  # the rest are the state's buffers by name
            "interfaces": self.table, "crossings": self.edges, "mparams": self.params, "mgrads": self.grads,
            "pred": self.pred, "target": self.target, "sums": self.sums, "partials": self.partials, "batch": batch,
            "cols": self.cols, "classes": self.classes, "conditioned": self.conditioned, "seed": 1,
            "stride": self.n_params, "gradsq": d.sums.gradsq, **given})
        return a.tobytes()

    def _parts(self, e: "DecoupledCudaEngine", part: dict) -> None:
        """Each part's share of the backward: its tasks of every push level, its weight-gradient
        tasks (of the edges into its groups) and bias tasks (the layout's lists, read back and
        split by part), the sources it pushes into (its own hidden groups), a stream, and the
        events that fork it from the step's stream and join it back."""
        L, d = self.layout, e.dev
        levels = L.push_levels
        n_push = levels[-1][0] + levels[-1][1] if levels else 0
        lists = {"backward_tasks": (n_push, 2), "weight_tasks": (L.tiers[""][2], 3), "bias_tasks": (L.n_bias_tasks, 2),
                 "in_dst": (L.n_edges,)}
        where = {"backward_tasks": d.tasks.first.backward_tasks, "weight_tasks": d.tasks.first.weight_tasks,
                 "bias_tasks": d.tasks.bias_tasks, "in_dst": d.csr.in_dst}
        host = {name: np.empty((max(shape[0], 1), *shape[1:]), np.int32) for name, shape in lists.items()}
        for name, array in host.items():
            e.drv.memcpy_dtoh_async(array, where[name], e.stream)
        e.stream.synchronize()
        tasks, weights, biases = host["backward_tasks"], host["weight_tasks"][:lists["weight_tasks"][0]], \
            host["bias_tasks"][:L.n_bias_tasks]
        of_slot = np.array([part.get(g, -1) for g in L.groups])
        arrays, kept = {}, []  # kept: (part, its push levels, weight tasks, bias tasks)
        for p in sorted(set(part.values())):
            own, mine = split_levels(levels, tasks, of_slot, p)
            weight = weights[of_slot[host["in_dst"][weights[:, 0]]] == p]
            bias = biases[of_slot[biases[:, 0]] == p]
            if own or len(weight) or len(bias):
                arrays[f"tasks{p}"] = mine
                arrays[f"hidden{p}"] = (L.hidden.astype(bool) & (of_slot == p)).astype(np.int32)
                arrays[f"weight{p}"], arrays[f"bias{p}"] = weight, bias
                kept.append((p, own, len(weight), len(bias)))
        self._task_lists, where = e.mem.upload_all(arrays, "DNI parts' task lists")  # kept alive with the parts
        self.parts = [Part(p, own, where[f"tasks{p}"], where[f"hidden{p}"], where[f"weight{p}"], n_weight,
                           where[f"bias{p}"], n_bias) for p, own, n_weight, n_bias in kept]
        drv = e.drv
        self.streams = [drv.Stream() for _ in self.parts]
        self.launchers = [runtime.Launcher(stream, e.precision) for stream in self.streams]
        self.fork, self.done = drv.Event(), [drv.Event() for _ in self.parts]

    def seed(self, batch: int) -> None:
        """The synthetic gradients in dz (passes.Seeded)."""
        if self.groups:
            e = self.engine
            e.launch("dni_predict", (len(self.groups), -(-batch * self.widest // THREADS)), self.cut(batch))

    def push(self, batch: int) -> None:
        """Each part's pushed backward and gradients on its own stream, side by side (passes.Seeded)."""
        e = self.engine
        self.fork.record(e.stream)
        for part, stream, launch, done in zip(self.parts, self.streams, self.launchers, self.done):
            stream.wait_for_event(self.fork)
            passes.push_levels(e, batch, part.levels, part.tasks, part.hidden, launch)
            passes.dense_gradients(e, batch, part.weight, part.n_weight, part.bias, part.n_bias, launch)
            done.record(stream)
        for done in self.done:
            e.stream.wait_for_event(done)

    def enqueue_train(self, batch: int) -> None:
        """The modules' targets, gradients and errors (the step's gradient norm gets theirs)."""
        if not self.groups:
            return
        e, cut = self.engine, self.cut(batch)
        e.launch("dni_truth", (len(self.groups), -(-batch * self.widest // THREADS)), cut)
        self.enqueue_grads(e.launch, batch, cut, len(self.groups))
        e.launch("dni_errors", (len(self.groups), 1), cut)

    def enqueue_grads(self, launch, batch: int, cut: bytes, count: int) -> None:
        """The gradients of `count` modules of `cut` (dni_grads over chunks of the batch, then
        dni_grads_sum), on `launch`'s stream."""
        blocks = -(-self.largest // THREADS)
        launch("dni_grads", (count, blocks * -(-batch // DNI_ROWS)), cut)
        launch("dni_grads_sum", (count, blocks), cut)

    def enqueue_update(self) -> None:
        """The modules' Adam step, refused on the device with the network's (the step's scalars)."""
        if not self.groups:
            return
        e, modules = self.engine, Parameters(self.params, self.grads, (self.m, self.v, self.t))
        passes.launch_update(e.launch, modules, passes.update_arguments(e.module_optimizer, modules, self.n_params),
                             e.dev.sums.scalars)

    def read_errors(self) -> None:
        """Queue the copy of the modules' error sums (the caller synchronises)."""
        if self.groups:
            e = self.engine
            e.drv.memcpy_dtoh_async(self.host_sums, self.sums, e.stream)

    def errors(self) -> dict[int, float]:
        """{boundary group: |prediction - truth| / |truth|} of the last backward."""
        return {g: relative_error(math.sqrt(miss), math.sqrt(truth))
                for g, (miss, truth) in zip(self.groups, self.host_sums.tolist())}

    def _slices(self, g: int):
        """(name, shape, slice of the flat buffers) of group g's module parameters."""
        at, w = self.blocks[g]
        for name, shape in self.shapes(w):
            size = math.prod(shape)
            yield name, shape, slice(at, at + size)
            at += size

    def interfaces(self, with_state: bool = False) -> dict[int, Interface]:
        """The modules as the serial engine keeps them (copied to the host; with_state: Adam's too)."""
        values = self.host(4 if with_state else 1)
        out = {}
        for g in self.blocks:
            module = out[g] = Interface(self.blocks[g][1], self.classes, self.conditioned, np.float32)
            for name, shape, at in self._slices(g):
                module.params[name][...] = values[0][at].reshape(shape)
                if with_state and int(values[3][at.start]):
                    module.state[name] = {"t": int(values[3][at.start]), "m": values[1][at].reshape(shape),
                                          "v": values[2][at].reshape(shape)}
        return out

    def put(self, saved: dict[int, dict[str, np.ndarray]]) -> None:
        """Modules from a checkpoint (cuts.module_entry's form) where their group crosses at that width."""
        values = self.host(4)
        widths = {g: w for g, (_, w) in self.blocks.items()}
        for g, entry in saved.items():
            checked_width(entry, g, set(widths), widths, self.conditioned, self.classes)
            for name, _, at in self._slices(g):
                values[0][at] = entry[name].ravel()
                steps = int(entry.get(f"t_{name}", 0))
                values[1][at] = entry[f"m_{name}"].ravel() if steps else 0.0
                values[2][at] = entry[f"v_{name}"].ravel() if steps else 0.0
                values[3][at] = steps
        e = self.engine
        for buf, value in zip((self.params, self.m, self.v, self.t), values):
            e.drv.memcpy_htod(buf, value)


def split_levels(levels: list, tasks: np.ndarray, owner: np.ndarray, p: int) -> tuple[list, np.ndarray]:
    """The tasks of `levels` ((first task, count) a level) whose group (a task's first int, a slot)
    `owner` gives to p: (level number, first of its tasks, count) of each level with any, and
    those tasks in level order."""
    own, chosen, at = [], [], 0
    for number, (start, count) in enumerate(levels):
        mine = tasks[start:start + count][owner[tasks[start:start + count, 0]] == p]
        if len(mine):
            own.append((number, at, len(mine)))
            chosen.append(mine)
            at += len(mine)
    return own, np.concatenate(chosen) if chosen else np.zeros((0, tasks.shape[1]), np.int32)


class DecoupledCudaEngine(CudaEngine):
    """The CUDA engine with the backward cut into parts after the cut groups, a synthetic-gradient
    module at every boundary group (genlab.DNI; module text). Dense groups, the level_push
    executor; the same step as asynchronous/dni.py's DecoupledEngine."""

    keeps_pending = CudaEngine.keeps_pending | {"interfaces", "export_modules", "module_order"}  # the modules' own

    def __init__(self, net: Network, optimizer, dtype, cuts: tuple[int, ...], conditioned: bool, lr: float = 1e-3,
                 executor: str | None = None, precision: Precision = FP32):
        if executor not in (None, AUTO, LevelPush.name):
            raise BackendError(f"synthetic gradients on the CUDA engine run on the {LevelPush.name} executor (the "
                               f"backward pushes, so a cut edge can stay silent), not {executor!r}")
        self.cuts, self.conditioned = tuple(cuts), conditioned
        self.pinned = frozenset(self.cuts)  # pruning keeps the cut groups
        self.module_optimizer = Adam(lr=lr)  # the modules' own, as on the serial engine
        self.errors = deque(maxlen=ERRORS)  # per step: {boundary group: |M - truth| / |truth|}
        self.part, self.crossing, self.boundary = {}, set(), set()
        self.modules: Modules | None = None
        super().__init__(net, optimizer, dtype, executor=LevelPush.name, precision=precision)

    @staticmethod
    def executor_type(name: str):
        if name != LevelPush.name:
            raise BackendError(f"synthetic gradients on the CUDA engine run on the {LevelPush.name} executor only")
        return DecoupledPush

    @settled
    def load(self, net: Network, placement: dict | None = None) -> None:
        if net.recurrent:
            raise BackendError("DNI cuts a feed-forward network; this one has edges with a delay")
        for c in self.cuts:
            if c not in net.widths or c in (INPUT, OUTPUT):
                raise GraphError(f"DNI cut group {c} is not a hidden group of the network")
        super().load(net, placement)
        self._follow(net)

    @settled
    def apply_growth(self, net: Network, log: list) -> None:
        super().apply_growth(net, log)
        self._follow(net)

    def _follow(self, net: Network) -> None:
        """The parts, crossing edges and modules of the network as it is now."""
        runtime.load(FILE)
        part = parts(net, self.cuts)
        crossing = {(s, g) for g in net.groups for s in net.inputs(g) if s != INPUT and part[g] > part[s]}
        self.modules = Modules(self, part, crossing, net.n_outputs, self.modules, self.module_order())
        self.part, self.crossing, self.boundary = part, crossing, {s for s, _ in crossing}
        self._graphs.clear()

    def module_order(self):
        """The sort key of the boundary groups' modules in the device tables (None: by group)."""
        return None

    def ensure_batch(self, batch: int) -> None:
        super().ensure_batch(batch)
        if self.modules is not None:
            self.modules.ensure(self.batch_cap)

    @settled
    def use_executor(self, name: str) -> None:
        self.executor_type(name)

    # ------------------------------------------------------------------ training
    @settled
    def backward(self, y: np.ndarray) -> float:
        self.put_labels(y)
        passes.backward(self, self.batch, self.modules)
        self.modules.enqueue_train(self.batch)
        self._stats_cache = None
        return self.read_scalars()[0]

    @settled
    def update(self) -> None:
        """The modules' update, then the network's (both refused on the device if the step is not finite)."""
        self.modules.enqueue_update()
        super().update()

    def read_scalars(self) -> tuple[float, int, float]:
        self.modules.read_errors()
        out = super().read_scalars()
        if self.modules.groups:
            self.errors.append(self.modules.errors())
        return out

    @property
    def interfaces(self) -> dict[int, Interface]:
        """{boundary group: its module}, copied from the device."""
        return self.modules.interfaces()

    def export_modules(self) -> dict[int, dict[str, np.ndarray]]:
        """{boundary group: its module} for a checkpoint (cuts.module_entry's form)."""
        return {g: module_entry(m.params, m.state) for g, m in self.modules.interfaces(with_state=True).items()}

    @settled
    def import_modules(self, saved: dict[int, dict[str, np.ndarray]]) -> None:
        """Take modules from a checkpoint; GraphError where one does not fit the network."""
        self.modules.put(saved)
