"""The partitioned engine: a network's groups spread over the processes of a World (model
parallel), each process computing its own groups level by level (stages.py) on its device with
PyTorch, the outputs of cut edges sent forward and their dL/dh sent back (torch.distributed
send / recv: NCCL between GPUs, gloo between CPU processes).

A step cuts the batch into micro-batches. Every process runs the forward of micro-batch 0, 1, ...
then their backward: a process waits only for the messages its next level reads, so with a
pipeline partition the first process starts micro-batch 1 while the second computes micro-batch
0, and the exchange hides behind the compute. Gradients sum over the micro-batches; the update
(genlab.optim's formulas) touches each process's own parameters; the statistics growth reads are
summed over the processes, so every process decides the same growth. After growth the partition
is extended to the new groups, and planned again when the balance has drifted
(genlab.partition.needs_repartition).

The result equals one device's to float32 rounding (tests/test_distributed.py).
"""

from __future__ import annotations

import math

import numpy as np

from ..engines.base import STATISTICS, Engine, EngineState
from ..engines.host_scores import HostScores
from ..errors import BackendError
from ..growth import Scores, Tracker
from ..guard import check_gradient, gradient_ok
from ..kinds.dense import Dense
from ..network import INPUT, OUTPUT, Network
from ..precision import DEFAULT as FP32
from ..partition import Partition, extend, needs_repartition, plan as plan_partition
from ..shapes import Form
from . import passes, stages, tensor_optim
from .synthetic import Synthetic
from .mode import Mode
from .world import World


class Partitioned(Mode):
    """Trainer(distributed="partitioned"): the groups spread over the processes."""

    micro_batches = 4           # a batch's micro-batches, pipelined through the processes
    methods = ("pipeline",)     # the partitions genlab.partition.plan chooses from ("metis" too: any cut runs)
    tolerance = 1.1             # the busiest process's work over the mean, past which growth plans again

    decouple = None  # a genlab.DNI: synthetic gradients at the cut instead of waiting (synthetic.py)

    def engine(self, backend, net, optimizer, dtype, executor, precision=FP32):
        if executor is not None:
            raise BackendError("a partitioned network runs level by level on each process; leave executor unset")
        PartitionedEngine.check_precision(precision)
        return PartitionedEngine(net, optimizer, self.world, dtype=dtype, micro_batches=self.micro_batches,
                                 tolerance=self.tolerance, methods=self.methods, decouple=self.decouple)

    def step(self, engine, x, y):
        return engine.step(x, y)


class PartitionedEngine(HostScores, Engine):
    """One process's share of a partitioned network (module docstring)."""

    name = "partitioned"
    grows_in_place = False  # growth is made on the host from the gathered parameters, then reloaded
    dtypes = ("float32", "float64")

    def __init__(self, net: Network, optimizer, world: World, dtype="float32", micro_batches: int = 4,
                 partition: Partition | None = None, tolerance: float = 1.1, methods=("pipeline",), decouple=None):
        import torch

        self.torch, self.world = torch, world
        self.dtype = np.dtype(dtype)
        if self.dtype.name not in self.dtypes:
            raise BackendError(f"the partitioned engine runs in float32 or float64, not {self.dtype}")
        self.tdtype = torch.float64 if self.dtype == np.float64 else torch.float32
        self.optimizer, self.micro_batches, self.tolerance, self.methods = optimizer, micro_batches, tolerance, methods
        self.growth_scores, self.tracker = Scores(), Tracker()
        self.partition, self.plan, self.opt = partition, None, {}
        self.repartitions = 0  # times growth drifted the balance enough to plan the partition again
        self.synthetic = None if decouple is None else Synthetic(
            torch, world.device, self.tdtype, net.n_outputs, decouple.conditioned, decouple.lr)
        self.load(net)

    # ------------------------------------------------------------------ the network
    def load(self, net: Network) -> None:
        """Take the network; keep the optimizer state of unchanged parameters (gathered from the
        process that held them) and the growth scores of remaining groups."""
        if net.recurrent or any(not isinstance(net.kind(g), Dense) for g in net.groups if g != INPUT):
            raise BackendError("the partitioned engine runs DAGs of dense groups")
        if net.form is not Form.FLAT:
            raise BackendError("the partitioned engine runs flat networks (n_inputs features)")
        carried = self._gather_state() if self.plan is not None else {}
        self.partition = self._partition(net)
        self.widths, self.inputs = dict(net.widths), {g: net.inputs(g) for g in net.groups}
        self.plan = stages.plan(net, self.partition, self.world.rank)
        self.column_index = {}  # (level, process) -> the columns of the level's output it reads (passes.columns)
        # every message to a later process (a pipeline): one backward per micro-batch and process
        self.fused = all(self.partition.parts[s] < self.partition.parts[d] for s, d in self.partition.cut_edges)
        if self.synthetic is not None and not self.fused:
            raise BackendError("synthetic gradients on the partitioned engine need a pipeline partition (every cut "
                               "edge to a later process); this partition sends both ways")
        self.shapes = {("W", s, d): w.shape for (s, d), w in net.weights.items()}
        self.shapes.update({("b", g): b.shape for g, b in net.biases.items()})
        self.W, self.b, self.idx, self.opt = {}, {}, {}, {}
        values = {**{("W", s, d): w for (s, d), w in net.weights.items()}, **{("b", g): b for g, b in net.biases.items()}}
        for lv, lp in self.plan.levels.items():
            self.W[lv], self.b[lv] = (self._tensor(a).requires_grad_() for a in self._level_arrays(lp, values))
            self.idx[lv] = self.torch.from_numpy(lp.index).to(self.world.device)
            self.opt[lv] = {}
            for name in self.optimizer.state_names:
                held = {k: v[name] for k, v in carried.items() if name in v}
                self.opt[lv][name] = tuple(self._tensor(a) for a in self._level_arrays(lp, held))
        self.groups = sorted(g for g in net.widths if g != INPUT)  # the rows of the statistics (after row 0)
        row = {g: i + 1 for i, g in enumerate(self.groups)}
        self.rows = {lv: self.torch.tensor([row[g] for g in lp.groups], device=self.world.device)
                     for lv, lp in self.plan.levels.items()}
        self.growth_scores.ema = {g: v for g, v in self.growth_scores.ema.items() if g in net.widths}
        self.tracker.keep_only(net.widths)
        self._stats = {name: {} for name in STATISTICS}

    def _partition(self, net: Network) -> Partition:
        """The partition for `net`: planned for a new network (the best of self.methods); after
        growth or pruning the old one extended to the new groups, or planned again when that
        would leave it out of balance."""
        old = self.partition
        if old is not None:
            if not needs_repartition(old, net, self.tolerance):
                return extend(old, net)
            self.repartitions += 1
        return plan_partition(net, self.world.size, self.tolerance, methods=self.methods)

    def _level_arrays(self, lp: stages.LevelPlan, values: dict) -> tuple[np.ndarray, np.ndarray]:
        """A level's (W, b) padded arrays holding values[key] where present (zeros elsewhere)."""
        W = np.zeros((len(lp.groups), lp.k_max, lp.w_max))
        b = np.zeros((len(lp.groups), 1, lp.w_max))
        for key, i, k, rows, cols in lp.blocks:
            if key in values:
                W[i, k:k + rows, :cols] = np.asarray(values[key]).T
        for i, g in enumerate(lp.groups):
            if ("b", g) in values:
                b[i, 0, :self.widths[g]] = values[("b", g)]
        return W, b

    def _tensor(self, a: np.ndarray):
        return self.torch.tensor(a, dtype=self.tdtype, device=self.world.device)

    # ------------------------------------------------------------------ parameters, gathered
    def _gather(self, pairs) -> dict:
        """{key: host array} of every parameter key, each filled by the process holding it from
        pairs (key, array) and summed over the processes (the others add zeros: exact)."""
        keys = sorted(self.shapes)
        sizes = [math.prod(self.shapes[k]) for k in keys]
        offsets = dict(zip(keys, np.cumsum([0] + sizes[:-1]).tolist()))
        flat = np.zeros(sum(sizes), self.dtype)
        for key, value in pairs:
            flat[offsets[key]:offsets[key] + value.size] = value.ravel()
        self.world.sum(flat)
        return {k: flat[offsets[k]:offsets[k] + n].reshape(self.shapes[k]).copy() for k, n in zip(keys, sizes)}

    def _own(self, W: dict, b: dict):
        """(key, host array) of each of this process's parameters, cut from level tensors W, b."""
        for lv, lp in self.plan.levels.items():
            Wh, bh = W[lv].detach().cpu().numpy(), b[lv].detach().cpu().numpy()
            for key, i, k, rows, cols in lp.blocks:
                yield key, Wh[i, k:k + rows, :cols].T
            for i, g in enumerate(lp.groups):
                yield ("b", g), bh[i, 0, :self.widths[g]]

    @property
    def params(self) -> dict:
        return self._gather(self._own(self.W, self.b))

    @property
    def errors(self):
        """With synthetic gradients: per step, {(level, reading process): the module's relative error}."""
        return self.synthetic.errors if self.synthetic is not None else []

    @property
    def grads(self) -> dict:
        grad = lambda t: t.grad if t.grad is not None else self.torch.zeros_like(t)
        return self._gather(self._own({lv: grad(t) for lv, t in self.W.items()},
                                      {lv: grad(t) for lv, t in self.b.items()}))

    def _gather_state(self) -> dict:
        """{key: {state name: host array}} of every parameter, gathered from the processes."""
        out: dict = {}
        for name in self.optimizer.state_names:
            values = self._gather(self._own({lv: s[name][0] for lv, s in self.opt.items()},
                                            {lv: s[name][1] for lv, s in self.opt.items()}))
            for key, value in values.items():
                out.setdefault(key, {})[name] = value
        return out

    # ------------------------------------------------------------------ forward and backward
    def _output_rank(self) -> int:
        return self.partition.parts[OUTPUT]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits for a batch x, on every process (sent from the output group's)."""
        with self.torch.no_grad():
            records = passes.forward(self, x, keep=False)
        logits = np.zeros((len(x), self.widths[OUTPUT]), self.dtype)
        if self.world.rank == self._output_rank():
            depth = self.plan.depth
            for r in records:
                logits[r["part"]] = r["levels"][depth][1].cpu().numpy()
        self._wait(records)
        self.world.broadcast(logits, self._output_rank())
        return logits

    def _wait(self, records) -> None:
        for r in records:
            for posted, _ in r["works"]:
                self.world.wait(posted)

    def step(self, x: np.ndarray, y: np.ndarray, replicas=None) -> tuple[float, int]:
        """Forward and backward of every micro-batch, the statistics and gradient norm summed over
        the processes, then the update of each process's own parameters."""
        if replicas is not None:
            raise BackendError("the partitioned engine spreads groups, not rows, over the processes")
        torch = self.torch
        for t in (*self.W.values(), *self.b.values()):
            t.grad = None
        records = passes.forward(self, x, keep=True)
        y_t = torch.as_tensor(np.asarray(y, np.int64)).to(self.world.device)
        totals = passes.backward(self, records, y_t, len(y))
        if self.synthetic is not None:
            self.synthetic.receive(self.world)  # (passes.backward_fused took each micro-batch's already)
        self._wait(records)
        self._reduce(totals, len(y))
        loss, correct, gradsq = self._scalars
        if not gradient_ok(loss, gradsq):
            if self.synthetic is not None:
                self.synthetic.forget()
            check_gradient(loss, gradsq)
        with torch.no_grad():
            params = [t for lv in self.W for t in (self.W[lv], self.b[lv])]
            states = {name: [t for lv in self.W for t in self.opt[lv][name]] for name in self.optimizer.state_names}
            if params:
                tensor_optim.update(self.optimizer, params, [p.grad for p in params], states)
        if self.synthetic is not None:
            self.synthetic.learn(len(y))
        self.observe_scores(self.stats)
        return loss, correct

    def _reduce(self, totals: dict, n: int) -> None:
        """The step's loss, count, gradient norm and per-group statistics over its n rows, summed
        over the processes (each group's by the process holding it, the others adding zeros);
        gathered on the device first, so the host waits once."""
        torch, groups = self.torch, self.groups
        device = self.world.device
        table = torch.zeros(len(groups) + 1, 4, dtype=torch.float64, device=device)
        table[0, 0], table[0, 1] = totals["loss"], totals["correct"].double()
        for lv in self.plan.levels:
            wsq = (self.W[lv].grad.double() ** 2).sum((1, 2)) + (self.b[lv].grad.double() ** 2).sum((1, 2))
            table.index_copy_(0, self.rows[lv], torch.cat([totals["moments"][lv], wsq[None]]).T)
        flat = table.cpu().numpy()
        flat[0, 2] = flat[1:, 3].sum()
        self.world.sum(flat)
        (loss, correct, gradsq, _), per_group = flat[0], flat[1:]
        stats = {name: {} for name in STATISTICS}
        count = n * np.array([self.widths[g] for g in groups], np.float64)
        mean, meansq = per_group[:, 0] / count, per_group[:, 1] / count
        std = np.sqrt(np.maximum(meansq - mean * mean, 0.0))
        taylor = np.abs(per_group[:, 2] / count)
        norm = np.sqrt(per_group[:, 3])
        stats["grad_std"] = dict(zip(groups, std.tolist()))
        stats["taylor"] = dict(zip(groups, taylor.tolist()))
        stats["weight_grad_norm"] = dict(zip(groups, norm.tolist()))
        if self.pruning[0]:
            stats["h_min"], stats["h_max"] = self._ranges(totals, groups)
        self._stats, self._scalars = stats, (float(loss), int(round(correct)), float(gradsq))

    def _ranges(self, totals: dict, groups: list) -> tuple[dict, dict]:
        """Per-neuron min and max of every group's h over the batch, gathered."""
        offsets = dict(zip(groups, np.cumsum([0] + [self.widths[g] for g in groups[:-1]]).tolist()))
        n = sum(self.widths[g] for g in groups)
        found = []
        for which, fill, reduce in (("lo", np.inf, self.world.min), ("hi", -np.inf, self.world.max)):
            flat = np.full(n, fill, np.float64)
            for lv, t in totals[which].items():
                a = t.cpu().numpy()
                for i, g in enumerate(self.plan.levels[lv].groups):
                    flat[offsets[g]:offsets[g] + self.widths[g]] = a[i, :self.widths[g]]
            reduce(flat)
            found.append({g: flat[offsets[g]:offsets[g] + self.widths[g]].astype(self.dtype) for g in groups})
        return found[0], found[1]

    # ------------------------------------------------------------------ statistics and growth
    def choose_growth(self, eligible: set[int], threshold: float, relative: bool) -> list[tuple[int, float]]:
        hidden = {g for g in self.widths if g not in (INPUT, OUTPUT)}
        return self.growth_scores.choose(lambda g: self.inputs[g], hidden, eligible, threshold, relative)



    def export_state(self) -> EngineState:
        return self.state_with(self._gather_state())

    def import_state(self, state: EngineState, net: Network) -> None:
        self.plan = None  # the state comes from the file, not from the processes
        self.load(net)
        for lv, lp in self.plan.levels.items():
            for name in self.optimizer.state_names:
                held = {k: v[name] for k, v in state.optimizer.items() if name in v}
                self.opt[lv][name] = tuple(self._tensor(a) for a in self._level_arrays(lp, held))
        self.take_scores(state)
