"""What the engines whose statistics and growth scores live on the host share (serial, recurrent
CUDA, partitioned), written once: the last step's statistics, the smoothing of the growth
criterion and the pruning ranges after each step, the prune report, growth taken as a reload,
and the scores' part of the exported state."""

from __future__ import annotations

import numpy as np

from .. import operations as op
from ..growth import Scores, Tracker
from ..network import Network
from .base import EngineState


class HostScores:
    """A mixin for an Engine: the last step's statistics (_stats, {statistic: {group: value}}),
    growth_scores and tracker on the host, fed from those statistics."""

    growth_scores: Scores
    tracker: Tracker
    dtype: np.dtype
    _stats: dict

    @property
    def stats(self) -> dict[str, dict]:
        return self._stats

    @property
    def grad_std(self) -> dict[int, float]:
        """Std of dL/dh over batch and neurons for every group but the input (last backward), in
        ascending group id."""
        return dict(sorted(self._stats["grad_std"].items()))

    def state_with(self, optimizer: dict) -> EngineState:
        """An EngineState of this optimizer state ({key: {state name: array}}) and the scores."""
        t = self.tracker
        return EngineState(optimizer, dict(self.growth_scores.ema), dict(t.taylor),
                           {g: (t.lo[g].copy(), t.hi[g].copy()) for g in t.lo})

    def take_scores(self, state: EngineState) -> None:
        """The growth and Taylor scores and the pruning ranges of an exported state."""
        self.growth_scores.ema = dict(state.ema)
        self.tracker.taylor = dict(state.taylor)
        self.tracker.lo = {g: lo.astype(self.dtype) for g, (lo, _) in state.ranges.items()}
        self.tracker.hi = {g: hi.astype(self.dtype) for g, (_, hi) in state.ranges.items()}

    def observe_scores(self, stats: dict) -> None:
        """Smooth the growth criterion and track the pruning statistics of this step."""
        if self.growth_criterion is not None:
            name, alpha = self.growth_criterion
            self.growth_scores.observe(stats[name], alpha)
        ranges, taylor_alpha = self.pruning
        if ranges or taylor_alpha is not None:
            self.tracker.observe(stats, ranges, taylor_alpha)

    def smoothed_scores(self) -> dict[int, float]:
        return dict(self.growth_scores.ema)

    def prune_report(self, judge: bool = True) -> tuple[dict, dict]:
        """Constant groups since the last judgement (with their output) and smoothed Taylor scores."""
        return self.tracker.report(judge)

    def apply_growth(self, net: Network, log: list[op.GrowthOp]) -> None:
        """Take the grown network (made on the host, its parameters current) and carry each new
        group's score over from the group it came from."""
        self.load(net)
        for operation in log:
            if isinstance(operation, op.Inherit):
                self.growth_scores.inherit(operation.new, operation.source)
