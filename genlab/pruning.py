"""Pruning: removing groups whose output no longer matters, folding what they contributed.

A group whose output stayed constant since the last check (a dead ReLU group, say) is removed
exactly: its constant output, times each out-edge's block, is folded into the consumer's bias.
Tracker keeps, step by step, what that decision reads (the reference the CUDA engine's
activation_range, prune_observe and prune_constant kernels implement).
"""

from __future__ import annotations

import numpy as np

from . import operations as op
from .errors import GraphError
from .network import INPUT, OUTPUT, Network


def prune_group(net: Network, g: int, constant: np.ndarray | None, log: list | None = None) -> list[int]:
    """Remove g, folding its constant output (if given) into its consumers' biases. Groups left
    without consumers are removed too (they no longer matter), and groups left without inputs
    are folded likewise (their output is the constant relu(bias)). Returns the removed groups;
    raises GraphError (leaving the caller to discard `net`) if the output would be cut off, or
    InexactFold (a GraphError) where a consumer's kind cannot take the constant exactly (a conv
    consumer pads with zeros, so a constant map convolved is not constant at the borders).
    `log` receives the folds (operations.Fold), in the order made."""
    removed = []
    pending = [(g, constant, op.FoldSource.RANGE)]
    while pending:
        g, c, source = pending.pop()
        if g not in net.widths:
            continue
        consumers, inputs = net.outputs(g), net.inputs(g)
        if c is not None and any(net.delay(g, d) for d in consumers):
            raise GraphError(f"group {g} is read through a delay: folding its constant output is not exact "
                             "(its consumers read zeros before the sequence reaches them)")
        if c is not None:
            for d in consumers:
                net.biases[d] = (net.biases[d] + net.kind(d).fold(net.spec(d), net.weights[(g, d)], c)).astype(net.dtype)
                if log is not None:
                    log.append(op.Fold(g, d, source))
        net.remove_group(g)
        removed.append(g)
        for d in consumers:  # (g itself among them where it reads itself through a delay: gone)
            if d in net.widths and d != OUTPUT and not net.inputs(d):
                constant = net.kind(d).constant_without_inputs(net.spec(d), net.biases[d])
                pending.append((d, constant, op.FoldSource.RELU_BIAS))
        for s in inputs:
            if s in net.widths and s != INPUT and not net.outputs(s):
                pending.append((s, None, None))
    if not net.inputs(OUTPUT):
        raise GraphError("pruning would cut the output group off from the input")
    net.validate()
    return removed


class Tracker:
    """What pruning reads, kept step by step: each hidden group's per-neuron activation range
    since the last check, and the moving average of its Taylor score. The reference the
    engines implement (the CUDA engine: activation_range, prune_observe and prune_constant)."""

    def __init__(self):
        self.lo: dict[int, np.ndarray] = {}
        self.hi: dict[int, np.ndarray] = {}
        self.taylor: dict[int, float] = {}

    def observe(self, stats: dict, ranges: bool, taylor_alpha: float | None) -> None:
        if ranges:
            for g, lo in stats["h_min"].items():
                if g != OUTPUT:
                    hi = stats["h_max"][g]
                    self.lo[g] = np.minimum(self.lo[g], lo) if g in self.lo else lo.copy()
                    self.hi[g] = np.maximum(self.hi[g], hi) if g in self.hi else hi.copy()
        if taylor_alpha is not None:
            for g, v in stats["taylor"].items():
                if g != OUTPUT:
                    t = self.taylor
                    t[g] = float(v) if g not in t else t[g] + taylor_alpha * (float(v) - t[g])

    def report(self, judge: bool = True) -> tuple[dict[int, np.ndarray], dict[int, float]]:
        """({group: its constant output} for the groups constant since the last judgement,
        {group: smoothed Taylor score}); with judge, the ranges start afresh (without, no group is
        judged and the ranges keep growing)."""
        if not judge:
            return {}, dict(self.taylor)
        constants = {g: lo.astype(np.float64) for g, lo in self.lo.items() if np.array_equal(lo, self.hi[g])}
        self.lo.clear()
        self.hi.clear()
        return constants, dict(self.taylor)

    def keep_only(self, groups) -> None:
        self.taylor = {g: v for g, v in self.taylor.items() if g in groups}
