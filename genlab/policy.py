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

    def __setattr__(self, name: str, value) -> None:
        """Every field is checked when set, at construction and after (the lab's sliders set them)."""
        check = FIELD_CHECKS.get(name)
        super().__setattr__(name, check(value) if check else value)

    def settings(self) -> dict:
        """The policy's fields, JSON-ready (a criterion function is named, not stored)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if callable(self.criterion):
            d["criterion"] = None
        return d


def _criterion(value):
    return value if callable(value) else checks.choice(value, "growth criterion", CRITERIA)


FIELD_CHECKS = {
    "threshold": lambda v: checks.real(v, "threshold"),
    "relative": lambda v: checks.boolean(v, "relative"),
    "criterion": _criterion,
    "window": lambda v: checks.integer(v, "window", 1),
    "every": lambda v: None if v is None else checks.integer(v, "every", 1),
    "mode": lambda v: checks.choice(v, "growth mode", MODES),
    "max_depth": lambda v: checks.integer(v, "max_depth", 1),
    "cooldown": lambda v: checks.integer(v, "cooldown", 0),
    "max_groups": lambda v: checks.integer(v, "max_groups", 3),  # input, output and one hidden group
    "preserve": lambda v: checks.boolean(v, "preserve"),
    "noise": lambda v: checks.real(v, "noise", 0.0, 1e3),
    "prune": lambda v: checks.boolean(v, "prune"),
    "prune_taylor": lambda v: None if v is None else checks.real(v, "prune_taylor", 0.0),
    "patience": lambda v: checks.integer(v, "patience", 1),
}
