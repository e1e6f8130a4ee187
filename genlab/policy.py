"""The growth policy: when and how a network grows (genlab.growth applies it)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import StrEnum

import numpy as np

from . import checks
from .errors import ArgumentError
from . import operations as op

class GrowthMode(StrEnum):
    """GrowthPolicy.mode: which way a chosen group grows (a name or the member itself)."""

    DEPTH = "depth"
    WIDTH = "width"
    ALTERNATE = "alternate"  # depth at one check, width at the next
    AUTO = "auto"            # depth while the longest path through the group is short, else width


class Sibling(StrEnum):
    """GrowthPolicy.sibling: how a width-wise copy starts."""

    FRESH = "fresh"  # new random input weights, zero output weights
    SPLIT = "split"  # g's weights copied, its output weights split between the two with noise


MODES = tuple(GrowthMode)  # the choices, for the command line and the Lab
SIBLINGS = tuple(Sibling)
CRITERIA = tuple(c.name.lower() for c in op.Criterion)  # grad_std, weight_grad_norm, taylor


@dataclass
class GrowthPolicy:
    """When and how a network grows.

    top: at each check, grow the `top` eligible hidden groups whose smoothed statistic is highest
        (the default rule: a schedule of `top` groups every `every` steps until `max_groups`; it
        compares groups with each other only, so it needs no tuning to a dataset, a kind of group
        or a batch size). Used when threshold is None.
    threshold, relative: instead of `top`, mark every group whose smoothed statistic exceeds
        `threshold` (an absolute value: 5e-3 suits grad_std of dense groups on digits at batch 32,
        and dL/dh of the batch-mean loss scales as 1/batch size), or, with relative=True, whose
        z-score across the hidden groups does (a lone hidden group has no spread to stand out
        from: it is marked).
    criterion: "grad_std" (std of dL/dh over batch and neurons), "weight_grad_norm", "taylor"
        (|mean(h * dL/dh)|), or a function stats -> {group: value} (stats as engines report them).
    window: the statistic is an exponential moving average over about `window` steps.
    every: run the growth check every `every` steps during fit (None: only on Trainer.grow()).
    mode: "depth", "width", "alternate" (switch kind at each check), or "auto": depth-wise while
        the longest path through the group holds fewer than `max_depth` hidden groups, else width.
    cooldown: steps during which a group that grew, and the groups it created, cannot grow.
    max_groups: the most groups the network may hold (input and output included).
    preserve: initialise new groups so that the function is unchanged (False: plain random).
    sibling: how a width-wise copy starts (both keep the function): "fresh" (new random input
        weights, zero output weights: it learns new features) or "split" (g's weights copied, its
        output weights split between the two with noise).
    noise: scale of the symmetry-breaking term E of a "split", relative to the RMS of the weight
        block it splits.
    prune: remove groups whose output stayed constant since the last check (exact).
    prune_taylor, patience: remove groups whose Taylor score stayed below prune_taylor for
        `patience` checks in a row (approximate); None turns it off.
    """

    top: int = 1
    threshold: float | None = None
    relative: bool = False
    criterion: object = "grad_std"
    window: int = 20
    every: int | None = 50
    mode: GrowthMode = GrowthMode.AUTO
    max_depth: int = 3
    cooldown: int = 100
    max_groups: int = 32
    preserve: bool = True
    sibling: Sibling = Sibling.FRESH
    noise: float = 1.0
    prune: bool = False
    prune_taylor: float | None = None
    patience: int = 3

    def __setattr__(self, name: str, value) -> None:
        """Every field is checked when set, at construction and after (the lab's sliders set them)."""
        check = FIELD_CHECKS.get(name)
        super().__setattr__(name, check(value) if check else value)

    def __post_init__(self) -> None:
        if self.relative and self.threshold is None:
            raise ArgumentError("relative=True marks groups whose z-score exceeds threshold: give one (e.g. 1.0)")

    def cut(self, scores, hidden: set[int], eligible: set[int]) -> tuple[float, bool, int | None]:
        """The rule as a threshold every engine marks with (ema > threshold, or its z-score with
        relative) and the most groups to keep: `top` marks the eligible groups whose score is among
        the `top` highest (ties included, the budget order cuts them); a z-score over fewer than
        two scored hidden groups marks every eligible one. scores() gives {group: smoothed score}."""
        if self.threshold is not None and not self.relative:
            return self.threshold, False, None
        values = {g: s for g, s in scores().items() if g in hidden}
        if self.threshold is not None:  # relative
            return (self.threshold, True, None) if len(values) > 1 else (-math.inf, False, None)
        ranked = sorted((s for g, s in values.items() if g in eligible), reverse=True)
        if not ranked:
            return math.inf, False, 0
        return float(np.nextafter(ranked[min(self.top, len(ranked)) - 1], -math.inf)), False, self.top

    def settings(self) -> dict:
        """The policy's fields, JSON-ready (a criterion function is named, not stored)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if callable(self.criterion):
            d["criterion"] = None
        return d


def _criterion(value):
    return value if callable(value) else checks.choice(value, "growth criterion", CRITERIA)


FIELD_CHECKS = {
    "top": lambda v: checks.integer(v, "top", 1),
    "threshold": lambda v: None if v is None else checks.real(v, "threshold"),
    "relative": lambda v: checks.boolean(v, "relative"),
    "criterion": _criterion,
    "window": lambda v: checks.integer(v, "window", 1),
    "every": lambda v: None if v is None else checks.integer(v, "every", 1),
    "mode": lambda v: GrowthMode(checks.choice(v, "growth mode", MODES)),
    "max_depth": lambda v: checks.integer(v, "max_depth", 1),
    "cooldown": lambda v: checks.integer(v, "cooldown", 0),
    "max_groups": lambda v: checks.integer(v, "max_groups", 3),  # input, output and one hidden group
    "preserve": lambda v: checks.boolean(v, "preserve"),
    "sibling": lambda v: Sibling(checks.choice(v, "sibling", SIBLINGS)),
    "noise": lambda v: checks.real(v, "noise", 0.0, 1e3),
    "prune": lambda v: checks.boolean(v, "prune"),
    "prune_taylor": lambda v: None if v is None else checks.real(v, "prune_taylor", 0.0),
    "patience": lambda v: checks.integer(v, "patience", 1),
}
