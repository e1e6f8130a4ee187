"""The serial engine: a plain NumPy loop over the groups in topological order.

It is the reference every other engine is tested against, and the CPU fallback. Activations are
batch-major: h[g] has shape (batch, width[g]). Parameters live in one dict keyed
("W", src, dst) for an edge's weight block and ("b", g) for a group's bias.
"""

from __future__ import annotations

import math

import numpy as np

from ..guard import StepGuard, careful, check_gradient, max_abs
from ..growth import Scores, Tracker
from ..network import INPUT, OUTPUT, Network
from ..precision import ALL, DEFAULT, Precision, parse, rounded
from . import through_time
from .base import STATISTICS, EngineState, Replicas, Stepwise
from .buckets import Buckets
from .host_scores import HostScores


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against labels y, and its gradient dL/dlogits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = float(np.mean(np.log(total[:, 0]) - shifted[rows, y]))
    grad = exp / total
    grad[rows, y] -= 1
    grad /= len(y)
    return loss, grad


class SerialEngine(HostScores, Stepwise):
    """Runs a Network on the CPU with NumPy, in float32 (default) or float64."""

    name = "serial"
    grows_in_place = False  # growth reloads the network (its parameters are already on the host)
    dtypes = ("float32", "float64")
    precisions = ALL  # it rounds the dense products' operands as the CUDA engine does (genlab.precision)
    runs_recurrent = True
    reads_every_step = True

    def __init__(self, net: Network, optimizer, dtype="float32", precision: Precision = DEFAULT):
        self.dtype, self.precision = np.dtype(dtype), parse(precision)
        if self.dtype.name not in self.dtypes:
            raise ValueError(f"the serial engine runs in float32 or float64, not {self.dtype}")
        self.optimizer = optimizer
        self.state: dict[tuple, dict] = {}  # optimizer state per parameter key
        self.growth_criterion = None  # (statistic, alpha): smoothed at every step (see growth.Grower)
        self.growth_scores = Scores()
        self.pruning = (False, None)  # (track activation ranges, Taylor alpha or None), see growth.Grower
        self.tracker = Tracker()
        self.guard = StepGuard(self.dtype)
        self._buckets: Buckets | None = None  # a data-parallel step's gradient sums, during its backward
        self.load(net)

    def load(self, net: Network) -> None:
        """Take the network's topology and parameters; keep optimizer state of unchanged params."""
        self.order = net.topological_order()[1:]
        self.inputs = {g: net.inputs(g) for g in self.order}
        self.delays, self.widths = dict(net.delays), dict(net.widths)  # recurrent edges (through_time.py)
        self.kinds = {g: rounded(net.kind(g), self.precision) for g in self.order}
        self.specs = {g: net.spec(g) for g in self.order}
        self.input_shape = net.input_shape
        self._params = {("W", s, d): w.astype(self.dtype) for (s, d), w in net.weights.items()}
        self._params.update({("b", g): b.astype(self.dtype) for g, b in net.biases.items()})
        self.state = {k: v for k, v in self.state.items() if k in self._params and all(
            a.shape == self._params[k].shape for a in v.values() if isinstance(a, np.ndarray))}
        self._grads: dict[tuple, np.ndarray] = {}
        self._stats: dict[str, dict] = {name: {} for name in STATISTICS}
        self._h: dict[int, np.ndarray] = {}
        self.growth_scores.ema = {g: v for g, v in self.growth_scores.ema.items() if g in net.widths}
        self.tracker.keep_only(net.widths)
        self._measure()

    def _measure(self) -> None:
        """Exact bounds of |parameter| and |optimizer state 0| for the step guard."""
        self.guard.measured(*self.exact_bounds())

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits for a batch x of shape (batch, *input_shape), or (batch, steps, n_inputs) for a
        recurrent network; keeps the activations for backward."""
        if self.delays:
            return through_time.forward(self, x)
        x = np.asarray(x, self.dtype)
        h, p, self._cache, self._ins = {INPUT: x.reshape(len(x), *self.input_shape)}, self._params, {}, {}
        for g in self.order:
            sources = self.inputs[g]
            ins = self._ins[g] = [self.source(h, s, g) for s in sources]
            h[g], self._cache[g] = self.kinds[g].forward(self.specs[g], ins, [p[("W", s, g)] for s in sources],
                                                         p[("b", g)])
        self._h = h
        return h[OUTPUT]

    def source(self, h: dict, s: int, g: int) -> np.ndarray:
        """What group g reads of its source s (h[s]; a pipelined engine's later parts read an
        earlier batch's: genlab.asynchronous.pipeline)."""
        return h[s]

    def backward(self, y: np.ndarray) -> float:
        """Loss of the last forward against labels y; fills grads and the per-group statistics."""
        if self.delays:
            return through_time.backward(self, y, softmax_cross_entropy)
        h = self._h
        loss, dlogits = softmax_cross_entropy(h[OUTPUT], y)
        dh = {OUTPUT: dlogits}
        grads, self._pooled = {}, {}
        stats = {name: {} for name in STATISTICS}
        for g in reversed(self.order):
            kind, spec = self.kinds[g], self.specs[g]
            grad_out = self.received(g, dh.pop(g, None), h[g], y)  # every consumer of g has sent its share
            self._pooled[g] = (grad_out, h[g])
            dz, grads[("b", g)] = kind.backward(spec, grad_out, h[g], self._cache[g], self._params[("b", g)])
            for s, seen in zip(self.inputs[g], self._ins[g]):
                grads[("W", s, g)], share = kind.edge_grads(spec, dz, seen, self._params[("W", s, g)])
                if s != INPUT:
                    self.send(dh, s, g, share)
            if self._buckets is not None:  # final now: their sum over the replicas can start
                self._buckets.add(grads, [("b", g), *(("W", s, g) for s in self.inputs[g])])
            stats["grad_std"][g] = float(grad_out.std())
            stats["weight_grad_norm"][g] = float(np.sqrt(
                sum(np.sum(grads[("W", s, g)] ** 2) for s in self.inputs[g]) + np.sum(grads[("b", g)] ** 2)))
            stats["taylor"][g] = float(abs(np.mean(h[g] * grad_out)))
            flat = h[g].reshape(len(h[g]), -1)
            stats["h_min"][g], stats["h_max"][g] = flat.min(axis=0), flat.max(axis=0)
        self._grads, self._stats = grads, stats
        return loss

    def send(self, dh: dict, s: int, g: int, share: np.ndarray) -> None:
        """Group g's share of dL/dh[s], added up in dh (decoupled engines divert some: genlab.asynchronous.dni)."""
        dh[s] = dh[s] + share if s in dh else share

    def received(self, g: int, grad_out: np.ndarray | None, h: np.ndarray, y: np.ndarray) -> np.ndarray:
        """dL/dh of group g as its backward uses it, from the shares sent to it (y: the labels)."""
        return grad_out

    @property
    def params(self) -> dict[tuple, np.ndarray]:
        return self._params

    @property
    def grads(self) -> dict[tuple, np.ndarray]:
        return self._grads

    def update(self) -> None:
        """One optimizer step with the gradients of the last backward."""
        for key, grad in self._grads.items():
            self.optimizer.update(self._params[key], grad, self.state.setdefault(key, {}))

    def step(self, x: np.ndarray, y: np.ndarray, replicas: Replicas | None = None) -> tuple[float, int]:
        """Forward, backward and update on one batch; return (loss, correct predictions). With
        replicas, the gradients, statistics, loss and count are summed over them first (_reduce).

        All or nothing (genlab.guard): a non-finite loss, a non-finite or diverging gradient, or an
        update that would make a parameter non-finite raises TrainingError, and the parameters
        and optimizer state stay exactly as they were."""
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            logits = self.forward(x)
            self._buckets = None if replicas is None else Buckets(replicas)
            try:
                loss = self.backward(y)
                correct = int(np.sum(np.argmax(logits, axis=-1) == y))
                if replicas is not None:
                    loss, correct = self._reduce(replicas, loss, correct)
            finally:
                self._buckets = None
            gradsq = float(sum(np.vdot(g, g) for g in self.grads.values()))
        check_gradient(loss, gradsq)
        if self.guard.safe(self.optimizer):
            self.update()
            self.guard.advance(self.optimizer, gradsq)
        else:
            careful(self, self._update_quietly)
        self.observe_scores(self.stats)
        return loss, correct

    def _reduce(self, replicas: Replicas, loss: float, correct: int) -> tuple[float, int]:
        """The step's gradients (every replica's mean gradient weighted by its share of the rows;
        their sums started during the backward: Buckets), statistics (from the summed moments of
        dL/dh, over all rows), loss and correct count: the last three in one sum."""
        groups = sorted(self._pooled)
        moments = np.array([[dh.sum(dtype=np.float64), np.square(dh, dtype=np.float64).sum(),
                             np.multiply(h, dh, dtype=np.float64).sum(), dh.size * replicas.total / replicas.rows]
                            for dh, h in (self._pooled[g] for g in groups)], np.float64).reshape(-1, 4)
        packed = np.empty(3 * len(groups) + 2, np.float64)  # each replica's share: moments, loss, count
        sums = packed[:-2].reshape(-1, 3)
        np.multiply(moments[:, :3], replicas.moment_scale, out=sums)
        packed[-2:] = loss * replicas.fraction, correct
        self._buckets.finish(self._grads)
        replicas.sum(packed)
        squares = dict.fromkeys(groups, 0.0)  # each group's gradients' squared norm, in key order
        for k in sorted(self._grads):
            squares[k[-1]] = squares.get(k[-1], 0) + np.vdot(self._grads[k], self._grads[k])
        stats = self._stats
        for (s1, s2, s3), count, g in zip(sums, moments[:, 3], groups):
            mean = s1 / count
            stats["grad_std"][g] = float(np.sqrt(max(s2 / count - mean * mean, 0.0)))
            stats["taylor"][g] = float(abs(s3 / count))
            stats["weight_grad_norm"][g] = float(np.sqrt(squares[g]))
        if self.pruning[0]:
            for name, reduce in (("h_min", replicas.min), ("h_max", replicas.max)):
                flat = np.concatenate([stats[name][g].ravel() for g in groups])
                reduce(flat)
                stats[name] = dict(zip(groups, np.split(flat, np.cumsum([stats[name][g].size for g in groups])[:-1])))
        return float(packed[-2]), int(round(packed[-1]))

    def _update_quietly(self) -> None:
        """The update, letting an overflow happen (the careful update checks for it)."""
        with np.errstate(over="ignore", invalid="ignore"):
            self.update()

    # ------------------------------------------------------------------ the careful update (guard.careful)
    def backup_state(self) -> tuple[dict, dict]:
        return ({k: p.copy() for k, p in self._params.items()},
                {k: {n: (v.copy() if isinstance(v, np.ndarray) else v) for n, v in s.items()}
                 for k, s in self.state.items()})

    def restore_state(self, saved: tuple[dict, dict]) -> None:
        params, self.state = saved
        for k, p in params.items():
            self._params[k][...] = p

    def exact_bounds(self) -> tuple[float, float]:
        """Max |parameter| and max |state 0|; inf for the state where any state array is not finite."""
        first = self.optimizer.state_names[0]
        state0 = max_abs(s[first] for s in self.state.values() if first in s)
        others = [v for s in self.state.values() for n, v in s.items() if n != first and isinstance(v, np.ndarray)]
        return max_abs(self._params.values()), (math.inf if max_abs(others) == math.inf else state0)


    def choose_growth(self, eligible: set[int], threshold: float, relative: bool) -> list[tuple[int, float]]:
        """The groups to grow now, in budget order, with their smoothed scores."""
        hidden = {g for g in self.order if g != OUTPUT}
        within_step = lambda g: [s for s in self.inputs[g] if (s, g) not in self.delays]  # the rule's chains
        return self.growth_scores.choose(within_step, hidden, eligible, threshold, relative)


    def export_state(self) -> EngineState:
        names = self.optimizer.state_names
        optimizer = {}
        for key, st in self.state.items():
            shape = self._params[key].shape
            optimizer[key] = {n: (np.full(shape, st[n], np.float64) if np.isscalar(st[n]) else st[n].copy())
                              for n in names if n in st}
        return self.state_with(optimizer)

    def import_state(self, state: EngineState, net: Network) -> None:
        names = self.optimizer.state_names
        new = {}
        for key, arrays in state.optimizer.items():
            shape = self._params[key].shape
            entry = {}
            for n in names:
                a = np.asarray(arrays[n])
                if a.shape != shape:
                    raise ValueError(f"optimizer state {n} of {key} has shape {a.shape}, the parameter {shape}")
                if n == "t":  # the serial engine counts Adam's steps per parameter block
                    if a.size and not (a == a.flat[0]).all():
                        raise ValueError(f"Adam's step count differs within {key}")
                    entry[n] = int(a.flat[0]) if a.size else 0
                else:
                    entry[n] = a.astype(self.dtype)
            new[key] = entry
        self.state = new
        self.take_scores(state)
        self._measure()
