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

from .. import operations as op
from ..engines.base import STATISTICS, Engine, EngineState
from ..errors import BackendError, TrainingError
from ..growth import Scores, Tracker
from ..guard import gradient_ok
from ..network import INPUT, OUTPUT, Network
from ..optim import Adam
from ..partition import Partition, extend, needs_repartition, plan as plan_partition
from ..shapes import Form
from . import stages
from .modes import Mode
from .world import World


class Partitioned(Mode):
    """Trainer(distributed="partitioned"): the groups spread over the processes."""

    micro_batches = 4           # a batch's micro-batches, pipelined through the processes
    methods = ("pipeline",)     # the partitions genlab.partition.plan chooses from ("metis" too: any cut runs)
    tolerance = 1.1             # the busiest process's work over the mean, past which growth plans again

    def engine(self, backend, net, optimizer, dtype, executor):
        if executor is not None:
            raise BackendError("a partitioned network runs level by level on each process; leave executor unset")
        return PartitionedEngine(net, optimizer, self.world, dtype=dtype, micro_batches=self.micro_batches,
                                 tolerance=self.tolerance, methods=self.methods)

    def step(self, engine, x, y):
        return engine.step(x, y)


class PartitionedEngine(Engine):
    """One process's share of a partitioned network (module docstring)."""

    name = "partitioned"
    grows_in_place = False  # growth is made on the host from the gathered parameters, then reloaded
    dtypes = ("float32", "float64")

    def __init__(self, net: Network, optimizer, world: World, dtype="float32", micro_batches: int = 4,
                 partition: Partition | None = None, tolerance: float = 1.1, methods=("pipeline",)):
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
        self.load(net)

    # ------------------------------------------------------------------ the network
    def load(self, net: Network) -> None:
        """Take the network; keep the optimizer state of unchanged parameters (gathered from the
        process that held them) and the growth scores of remaining groups."""
        if net.recurrent or any(net.kinds[g] != "dense" for g in net.groups if g != INPUT):
            raise BackendError("the partitioned engine runs DAGs of dense groups")
        if net.form is not Form.FLAT:
            raise BackendError("the partitioned engine runs flat networks (n_inputs features)")
        carried = self._gather_state() if self.plan is not None else {}
        self.partition = self._partition(net)
        self.widths, self.inputs = dict(net.widths), {g: net.inputs(g) for g in net.groups}
        self.plan = stages.plan(net, self.partition, self.world.rank)
        # every message to a later process (a pipeline): one backward per micro-batch and process
        self.fused = all(self.partition.parts[s] < self.partition.parts[d] for s, d in self.partition.cut_edges)
        self.shapes = {("W", s, d): w.shape for (s, d), w in net.weights.items()}
        self.shapes.update({("b", g): b.shape for g, b in net.biases.items()})
        self.W, self.b, self.idx, self.opt = {}, {}, {}, {}
        for lv, lp in self.plan.levels.items():
            params = self._level_arrays(lp, {**{("W", s, d): w for (s, d), w in net.weights.items()},
                                             **{("b", g): b for g, b in net.biases.items()}})
            self.W[lv], self.b[lv] = (self._tensor(a).requires_grad_() for a in params)
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
        """The partition for `net`: planned (a pipeline cut of the levels) for a new network or
        after groups were removed, extended to new groups, planned again when out of balance."""
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
    def _forward(self, x: np.ndarray, keep: bool) -> list[dict]:
        """Every micro-batch's forward; per micro-batch a record of what backward needs."""
        torch, world, plan = self.torch, self.world, self.plan
        x = torch.as_tensor(np.ascontiguousarray(x)).to(world.device, self.tdtype)
        records = []
        for part in np.array_split(np.arange(len(x)), min(self.micro_batches, len(x))):
            rows = len(part)
            held, pending, levels, works = {("in",): x[part[0]:part[-1] + 1]}, {}, {}, []
            zero = torch.zeros(rows, 1, dtype=self.tdtype, device=world.device)
            for lv in range(1, plan.depth + 1):
                lp = plan.levels.get(lv)
                if lp is not None:
                    for key in lp.sources:
                        if key not in held:  # a message: wait for it
                            wait, held[key] = pending.pop(key)
                            for w in wait:
                                w.wait()
                            held[key].requires_grad_(keep)  # a leaf: its gradient goes back to the sender
                    # fused: the process's levels one graph; else each level's sources are leaves of its own
                    srcs = [held[k] if self.fused or k[0] == "in" else held[k].detach().requires_grad_(keep)
                            for k in lp.sources]
                    inp = torch.cat(srcs + [zero], 1).index_select(1, self.idx[lv])
                    z = torch.baddbmm(self.b[lv], inp.view(rows, len(lp.groups), lp.k_max).transpose(0, 1), self.W[lv])
                    z = z.transpose(0, 1).reshape(rows, -1)
                    out = z if lp.output else torch.relu(z)
                    if keep and self.fused:
                        out.retain_grad()  # dL/dh of the level's groups, for the statistics
                    levels[lv] = (srcs, out)
                    held[("own", lv)] = out if self.fused else out.detach()
                sends = [(held[("own", lv)].detach()[:, self._cols(lv, q)].contiguous(), q)
                         for q in (lp.sends if lp else ())]
                receives = [(torch.empty(rows, width, dtype=self.tdtype, device=world.device), p)
                            for p, width in plan.receives.get(lv, {}).items()]
                posted = world.exchange(sends, receives)
                works.append((posted, sends))
                for buf, p in receives:
                    pending[("from", p, lv)] = (posted, buf)
            records.append({"levels": levels, "rows": rows, "part": part, "works": works, "held": held})
        return records

    def _cols(self, lv: int, q: int):
        cache = self._col_cache if hasattr(self, "_col_cache") and self._col_cache[0] is self.plan else None
        if cache is None:
            self._col_cache = cache = (self.plan, {})
        key = (lv, q)
        if key not in cache[1]:
            cache[1][key] = self.torch.from_numpy(self.plan.levels[lv].sends[q]).to(self.world.device)
        return cache[1][key]

    def _output_rank(self) -> int:
        return self.partition.parts[OUTPUT]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits for a batch x, on every process (sent from the output group's)."""
        with self.torch.no_grad():
            records = self._forward(x, keep=False)
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
                for w in posted:
                    w.wait()

    def backward(self, y: np.ndarray) -> float:
        raise BackendError("the partitioned engine runs whole steps (step); forward gives logits")

    def update(self) -> None:
        raise BackendError("the partitioned engine runs whole steps (step)")

    def step(self, x: np.ndarray, y: np.ndarray, replicas=None) -> tuple[float, int]:
        """Forward and backward of every micro-batch, the statistics and gradient norm summed over
        the processes, then the update of each process's own parameters."""
        if replicas is not None:
            raise BackendError("the partitioned engine spreads groups, not rows, over the processes")
        torch = self.torch
        for t in (*self.W.values(), *self.b.values()):
            t.grad = None
        records = self._forward(x, keep=True)
        y_t = torch.as_tensor(np.asarray(y, np.int64)).to(self.world.device)
        totals = self._backward(records, y_t, len(y))
        self._wait(records)
        self._reduce(totals, len(y))
        loss, correct, gradsq = self._scalars
        if not gradient_ok(loss, gradsq):
            raise TrainingError(f"the loss or its gradients became {loss} (gradient norm {math.sqrt(gradsq):.3g}) on "
                                "this batch; the step was not applied (try a lower learning rate)")
        with torch.no_grad():
            params = [t for lv in self.W for t in (self.W[lv], self.b[lv])]
            states = {name: [t for lv in self.W for t in self.opt[lv][name]] for name in self.optimizer.state_names}
            if params:
                _update(self.optimizer, params, [p.grad for p in params], states)
        if self.growth_criterion is not None:
            name, alpha = self.growth_criterion
            self.growth_scores.observe(self.stats[name], alpha)
        ranges, taylor_alpha = self.pruning
        if ranges or taylor_alpha is not None:
            self.tracker.observe(self.stats, ranges, taylor_alpha)
        return loss, correct

    def _backward(self, records: list, y, n: int) -> dict:
        """Backward of every micro-batch; returns this process's sums: loss, correct and, per
        level, the moments of dL/dh per group and h's range per neuron."""
        torch, world, plan = self.torch, self.world, self.plan
        loss = torch.zeros((), dtype=torch.float64, device=world.device)
        correct = torch.zeros((), dtype=torch.int64, device=world.device)
        moments = {lv: torch.zeros(3, len(lp.groups), dtype=torch.float64, device=world.device)
                   for lv, lp in plan.levels.items()}
        lo, hi = {}, {}
        for r in records:
            if self.fused:
                self._backward_fused(r, y, n, loss, correct, moments, lo, hi)
                continue
            rows, levels, part = r["rows"], r["levels"], r["part"]
            grad_own, grad_from, works = {}, {}, []
            for lv in range(plan.depth, 0, -1):
                lp = plan.levels.get(lv)
                sends = [(grad_from.pop(("from", p, lv)), p) for p in plan.receives.get(lv, {})]  # complete now
                receives = [(torch.empty(rows, len(lp.sends[q]), dtype=self.tdtype, device=world.device), q)
                            for q in (lp.sends if lp else ())]
                posted = world.exchange(sends, receives)
                works.append((posted, sends))
                if lp is None:
                    continue
                srcs, out = levels[lv]
                if lp.output:
                    grad = self._loss(out, y, part, n, loss, correct)
                else:
                    grad = grad_own.pop(lv, None)
                    if grad is None:
                        grad = torch.zeros_like(out)
                    for w in posted:
                        w.wait()
                    for buf, q in receives:
                        grad.index_add_(1, self._cols(lv, q), buf)
                torch.autograd.backward(out, grad)
                self._moments(lv, out, grad, moments, lo, hi)
                for key, src in zip(lp.sources, srcs):
                    if src.grad is None:
                        continue
                    into = grad_own if key[0] == "own" else grad_from
                    slot = key[1] if key[0] == "own" else key
                    into[slot] = into[slot] + src.grad if slot in into else src.grad
            r["works"].extend(works)
        return {"loss": loss, "correct": correct, "moments": moments, "lo": lo, "hi": hi}

    def _loss(self, logits, y, part, n: int, loss, correct):
        """Add a micro-batch's share of the mean cross-entropy and its correct count; its dlogits."""
        torch = self.torch
        rows = len(logits)
        target = y[part[0]:part[-1] + 1]
        logp = torch.log_softmax(logits.detach().double(), 1)
        loss += -logp.gather(1, target[:, None]).sum() / n
        correct += (logits.detach().argmax(1) == target).sum()
        grad = logp.exp()
        grad[torch.arange(rows, device=grad.device), target] -= 1
        return (grad / n).to(self.tdtype)

    def _moments(self, lv: int, out, grad, moments: dict, lo: dict, hi: dict) -> None:
        """Add a level's sums of dL/dh, its squares and h dL/dh per group (and h's range per neuron)."""
        torch, lp = self.torch, self.plan.levels[lv]
        rows = len(out)
        h = out.detach().view(rows, len(lp.groups), lp.w_max)
        d = grad.view(rows, len(lp.groups), lp.w_max)
        moments[lv] += torch.stack((d, d * d, h * d)).sum((1, 3))  # summed in float64 over micro-batches
        if self.pruning[0]:
            lo[lv] = torch.minimum(lo[lv], h.amin(0)) if lv in lo else h.amin(0)
            hi[lv] = torch.maximum(hi[lv], h.amax(0)) if lv in hi else h.amax(0)

    def _backward_fused(self, r: dict, y, n: int, loss, correct, moments, lo, hi) -> None:
        """One micro-batch's backward when every message goes to a later process (a pipeline):
        the gradients of its outputs read elsewhere arrive first, then one backward through all
        of its levels, then the gradients of what it received go back."""
        torch, world, plan = self.torch, self.world, self.plan
        rows, levels, part = r["rows"], r["levels"], r["part"]
        readers = [(lv, q) for lv in sorted(plan.levels, reverse=True) for q in plan.levels[lv].sends]
        receives = [(torch.empty(rows, len(plan.levels[lv].sends[q]), dtype=self.tdtype, device=world.device), q)
                    for lv, q in readers]
        for w in world.exchange([], receives):
            w.wait()
        tensors, grads = [], []
        for lv, lp in plan.levels.items():
            out = levels[lv][1]
            if lp.output:
                tensors.append(out)
                grads.append(self._loss(out, y, part, n, loss, correct))
            mine = [(buf, q) for (buf, q), (level, _) in zip(receives, readers) if level == lv]
            if mine:
                grad = torch.zeros_like(out)
                for buf, q in mine:
                    grad.index_add_(1, self._cols(lv, q), buf)
                tensors.append(out)
                grads.append(grad)
        torch.autograd.backward(tensors, grads)
        for lv, (_, out) in levels.items():
            self._moments(lv, out, out.grad if out.grad is not None else torch.zeros_like(out), moments, lo, hi)
        sends = [(r["held"][("from", p, lv)].grad, p) for lv in sorted(plan.receives, reverse=True)
                 for p in plan.receives[lv]]
        r["works"].append((world.exchange(sends, []), sends))

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
    @property
    def stats(self) -> dict:
        return self._stats

    @property
    def grad_std(self) -> dict:
        return dict(sorted(self._stats["grad_std"].items()))

    def choose_growth(self, eligible: set[int], threshold: float, relative: bool) -> list[tuple[int, float]]:
        hidden = {g for g in self.widths if g not in (INPUT, OUTPUT)}
        return self.growth_scores.choose(lambda g: self.inputs[g], hidden, eligible, threshold, relative)

    def prune_report(self, judge: bool = True) -> tuple[dict, dict]:
        return self.tracker.report(judge)

    def apply_growth(self, net: Network, log: list) -> None:
        self.load(net)
        for operation in log:
            if isinstance(operation, op.Inherit):
                self.growth_scores.inherit(operation.new, operation.source)

    def export_state(self) -> EngineState:
        state = self._gather_state()
        t = self.tracker
        return EngineState(state, dict(self.growth_scores.ema), dict(t.taylor),
                           {g: (t.lo[g].copy(), t.hi[g].copy()) for g in t.lo})

    def import_state(self, state: EngineState, net: Network) -> None:
        self.plan = None  # the state comes from the file, not from the processes
        self.load(net)
        for lv, lp in self.plan.levels.items():
            for name in self.optimizer.state_names:
                held = {k: v[name] for k, v in state.optimizer.items() if name in v}
                self.opt[lv][name] = tuple(self._tensor(a) for a in self._level_arrays(lp, held))
        self.growth_scores.ema = dict(state.ema)
        self.tracker.taylor = dict(state.taylor)
        self.tracker.lo = {g: lo.astype(self.dtype) for g, (lo, _) in state.ranges.items()}
        self.tracker.hi = {g: hi.astype(self.dtype) for g, (_, hi) in state.ranges.items()}


def _update(optimizer, params: list, grads: list, state: dict) -> None:
    """genlab.optim's update (PyTorch's formulas) over lists of tensors at once (multi-tensor
    kernels); the state starts at zeros, where a fresh parameter's starts (Adam counts its steps
    per element, so parameters added by growth start their own count)."""
    import torch

    if isinstance(optimizer, Adam):
        b1, b2 = optimizer.beta1, optimizer.beta2
        t, m, v = state["t"], state["m"], state["v"]
        torch._foreach_add_(t, 1)
        torch._foreach_mul_(m, b1)
        torch._foreach_add_(m, grads, alpha=1 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
        first = torch._foreach_pow(b1, t)  # 1 - beta1^t, then 1 - beta2^t
        torch._foreach_neg_(first)
        torch._foreach_add_(first, 1)
        second = torch._foreach_pow(b2, t)
        torch._foreach_neg_(second)
        torch._foreach_add_(second, 1)
        denom = torch._foreach_div(v, second)
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, optimizer.eps)
        step = torch._foreach_div(m, denom)
        torch._foreach_div_(step, first)
        torch._foreach_mul_(step, optimizer.lr)
        torch._foreach_sub_(params, step)
        return
    vel = state["vel"]
    torch._foreach_mul_(vel, optimizer.momentum)
    torch._foreach_add_(vel, grads)
    torch._foreach_add_(params, vel, alpha=-optimizer.lr)
