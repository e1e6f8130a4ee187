"""What the engines whose growth scores live on the host share (serial, recurrent CUDA,
partitioned): the smoothing of the growth criterion and the pruning ranges after each step,
the prune report, and growth taken as a reload."""

from __future__ import annotations

from .. import operations as op
from ..growth import Scores, Tracker
from ..network import Network


class HostScores:
    """A mixin for an Engine: growth_scores and tracker on the host, fed from the step's stats."""

    growth_scores: Scores
    tracker: Tracker

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
