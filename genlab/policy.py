"""The growth policy: when and how a network grows (genlab.growth applies it)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from . import checks
from . import operations as op

MODES = ("depth", "width", "alternate", "auto")
CRITERIA = tuple(c.name.lower() for c in op.Criterion)  # grad_std, weight_grad_norm, taylor


@dataclass
class GrowthPolicy:
    """When and how a network grows.

    threshold, relative: a group is marked when its smoothed statistic exceeds `threshold`, or,
        with relative=True, when its z-score across the hidden groups does (needs 2+ groups).
        The default suits grad_std at batch size 32; dL/dh of the batch-mean loss scales as
        1/batch size, so scale an absolute threshold with it (or use relative=True).
    criterion: "grad_std" (std of dL/dh over batch and neurons), "weight_grad_norm", "taylor"
        (|mean(h * dL/dh)|), or a function stats -> {group: value} (stats as engines report them).
    window: the statistic is an exponential moving average over about `window` steps.
    every: run the growth check every `every` steps during fit (None: only on Trainer.grow()).
    mode: "depth", "width", "alternate" (switch kind at each check), or "auto": depth-wise while
        the longest path through the group holds fewer than `max_depth` hidden groups, else width.
    cooldown: steps during which a group that grew, and the groups it created, cannot grow.
    max_groups: the most groups the network may hold (input and output included).
    preserve: initialise new groups so that the function is unchanged (False: plain random).
    noise: scale of the symmetry-breaking term E of a width-wise split, relative to the RMS of
        the weight block it splits.
    prune: remove groups whose output stayed constant since the last check (exact).
    prune_taylor, patience: remove groups whose Taylor score stayed below prune_taylor for
        `patience` checks in a row (approximate); None turns it off.
    """

    threshold: float = 5e-3
    relative: bool = False
    criterion: object = "grad_std"
    window: int = 20
    every: int | None = 50
    mode: str = "auto"
    max_depth: int = 3
    cooldown: int = 100
    max_groups: int = 32
    preserve: bool = True
    noise: float = 1.0
    prune: bool = False
    prune_taylor: float | None = None
    patience: int = 3

    def __post_init__(self):
        self.threshold = checks.real(self.threshold, "threshold")
        self.relative = checks.boolean(self.relative, "relative")
        if not callable(self.criterion):
            checks.choice(self.criterion, "growth criterion", CRITERIA)
        self.window = checks.integer(self.window, "window", 1)
        if self.every is not None:
            self.every = checks.integer(self.every, "every", 1)
        checks.choice(self.mode, "growth mode", MODES)
        self.max_depth = checks.integer(self.max_depth, "max_depth", 1)
        self.cooldown = checks.integer(self.cooldown, "cooldown", 0)
        self.max_groups = checks.integer(self.max_groups, "max_groups", 3)  # input, output and one hidden group
        self.preserve = checks.boolean(self.preserve, "preserve")
        self.noise = checks.real(self.noise, "noise", 0.0, 1e3)
        self.prune = checks.boolean(self.prune, "prune")
        if self.prune_taylor is not None:
            self.prune_taylor = checks.real(self.prune_taylor, "prune_taylor", 0.0)
        self.patience = checks.integer(self.patience, "patience", 1)

    def settings(self) -> dict:
        """The policy's fields, JSON-ready (a criterion function is named, not stored)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if callable(self.criterion):
            d["criterion"] = None
        return d
