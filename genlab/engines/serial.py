"""The serial engine: a plain NumPy loop over the groups in topological order.

It is the reference every other engine is tested against, and the CPU fallback. Activations are
batch-major: h[g] has shape (batch, width[g]). Parameters live in one dict keyed
("W", src, dst) for an edge's weight block and ("b", g) for a group's bias.
"""

from __future__ import annotations

import numpy as np

from .. import operations as op
from ..errors import TrainingError
from ..growth import Scores, Tracker
from ..network import INPUT, OUTPUT, Network
from .base import STATISTICS, Engine


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


class SerialEngine(Engine):
    """Runs a Network on the CPU with NumPy, in float32 (default) or float64."""

    name = "serial"
    grows_in_place = False  # growth reloads the network (its parameters are already on the host)
    dtypes = ("float32", "float64")

    def __init__(self, net: Network, optimizer, dtype="float32"):
        self.dtype = np.dtype(dtype)
        if self.dtype.name not in self.dtypes:
            raise ValueError(f"the serial engine runs in float32 or float64, not {self.dtype}")
        self.optimizer = optimizer
        self.state: dict[tuple, dict] = {}  # optimizer state per parameter key
        self.growth_criterion = None  # (statistic, alpha): smoothed at every step (see growth.Grower)
        self.growth_scores = Scores()
        self.pruning = (False, None)  # (track activation ranges, Taylor alpha or None), see growth.Grower
        self.tracker = Tracker()
        self.load(net)

    def load(self, net: Network) -> None:
        """Take the network's topology and parameters; keep optimizer state of unchanged params."""
        self.order = net.topological_order()[1:]
        self.inputs = {g: net.inputs(g) for g in self.order}
        self.kinds = {g: net.kind(g) for g in self.order}
        self._params = {("W", s, d): w.astype(self.dtype) for (s, d), w in net.weights.items()}
        self._params.update({("b", g): b.astype(self.dtype) for g, b in net.biases.items()})
        self.state = {k: v for k, v in self.state.items() if k in self._params and all(
            a.shape == self._params[k].shape for a in v.values() if isinstance(a, np.ndarray))}
        self._grads: dict[tuple, np.ndarray] = {}
        self._stats: dict[str, dict] = {name: {} for name in STATISTICS}
        self._h: dict[int, np.ndarray] = {}
        self.growth_scores.ema = {g: v for g, v in self.growth_scores.ema.items() if g in net.widths}
        self.tracker.keep_only(net.widths)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits for a batch x of shape (batch, n_inputs); keeps the activations for backward."""
        h, p = {INPUT: np.asarray(x, self.dtype)}, self._params
        for g in self.order:
            sources = self.inputs[g]
            h[g] = self.kinds[g].forward([h[s] for s in sources], [p[("W", s, g)] for s in sources], p[("b", g)],
                                         linear=g == OUTPUT)
        self._h = h
        return h[OUTPUT]

    def backward(self, y: np.ndarray) -> float:
        """Loss of the last forward against labels y; fills grads and the per-group statistics."""
        h = self._h
        loss, dlogits = softmax_cross_entropy(h[OUTPUT], y)
        dh = {OUTPUT: dlogits}
        grads = {}
        stats = {name: {} for name in STATISTICS}
        for g in reversed(self.order):
            kind = self.kinds[g]
            grad_out = dh.pop(g)  # dL/dh: every consumer of g has already sent its share
            dz = kind.backward(grad_out, h[g], linear=g == OUTPUT)
            grads[("b", g)] = kind.bias_grad(dz)
            for s in self.inputs[g]:
                grads[("W", s, g)], share = kind.edge_grads(dz, h[s], self._params[("W", s, g)])
                if s != INPUT:
                    dh[s] = dh[s] + share if s in dh else share
            stats["grad_std"][g] = float(grad_out.std())
            stats["weight_grad_norm"][g] = float(np.sqrt(
                sum(np.sum(grads[("W", s, g)] ** 2) for s in self.inputs[g]) + np.sum(grads[("b", g)] ** 2)))
            stats["taylor"][g] = float(abs(np.mean(h[g] * grad_out)))
            stats["h_min"][g], stats["h_max"][g] = h[g].min(axis=0), h[g].max(axis=0)
        self._grads, self._stats = grads, stats
        return loss

    @property
    def params(self) -> dict[tuple, np.ndarray]:
        return self._params

    @property
    def grads(self) -> dict[tuple, np.ndarray]:
        return self._grads

    @property
    def stats(self) -> dict[str, dict]:
        return self._stats

    @property
    def grad_std(self) -> dict[int, float]:
        """Std of dL/dh over batch and neurons for every group but the input (last backward), in
        ascending group id."""
        return dict(sorted(self.stats["grad_std"].items()))

    def update(self) -> None:
        """One optimizer step with the gradients of the last backward."""
        for key, grad in self._grads.items():
            self.optimizer.update(self._params[key], grad, self.state.setdefault(key, {}))

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """Forward, backward and update on one batch; return (loss, correct predictions).

        A non-finite loss raises TrainingError before the update, so parameters stay as they were.
        """
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            logits = self.forward(x)
            loss = self.backward(y)
        if not np.isfinite(loss) or not all(np.isfinite(g).all() for g in self.grads.values()):
            raise TrainingError(f"the loss or its gradients became {loss} on this batch; the step was "
                                "not applied (try a lower learning rate)")
        self.update()
        if self.growth_criterion is not None:
            name, alpha = self.growth_criterion
            self.growth_scores.observe(self.stats[name], alpha)
        ranges, taylor_alpha = self.pruning
        if ranges or taylor_alpha is not None:
            self.tracker.observe(self.stats, ranges, taylor_alpha)
        return loss, int(np.sum(np.argmax(logits, axis=1) == y))

    def prune_report(self) -> tuple[dict, dict]:
        """Constant groups since the last check (with their output) and smoothed Taylor scores."""
        return self.tracker.report()

    def choose_growth(self, eligible: set[int], threshold: float, relative: bool) -> list[tuple[int, float]]:
        """The groups to grow now, in budget order, with their smoothed scores."""
        hidden = {g for g in self.order if g != OUTPUT}
        return self.growth_scores.choose(self.inputs.__getitem__, hidden, eligible, threshold, relative)

    def apply_growth(self, net: Network, log: list[op.GrowthOp]) -> None:
        """Take the grown network (its parameters are current: this engine's live on the host)."""
        self.load(net)
        for operation in log:
            if isinstance(operation, op.Inherit):
                self.growth_scores.inherit(operation.new, operation.source)

    def write_back(self, net: Network) -> None:
        """Copy the trained parameters into the network (in the network's dtype)."""
        for (s, d) in net.weights:
            net.weights[(s, d)] = self._params[("W", s, d)].astype(net.dtype)
        for g in net.biases:
            net.biases[g] = self._params[("b", g)].astype(net.dtype)
