"""The step guard: a training step is applied whole or not at all.

A step is refused (TrainingError, nothing changed) when its loss is not finite or its gradient's
norm is not finite or above GRAD_LIMIT (the engines check this before the update; the CUDA
kernels read the same limit from constants.cuh). What is left is an update of finite gradients
that overflows a parameter: a huge learning rate, or parameters already near the float's range.
StepGuard keeps upper bounds of |parameter| and |first optimizer state| (SGD's velocity, Adam's
m) from which it tells, before a step, whether any step the engine could accept stays finite:
then the update runs in place, as fast as ever. Otherwise the engine backs up the parameters and
optimizer state, applies the step, checks it, and restores the backup if anything became
non-finite; it then measures the bounds exactly.

The bounds follow the optimizers' formulas (genlab.optim) with every gradient entry at most the
gradient's norm G:
  SGD:  v' = momentum v + g, p' = p - lr v'         -> |v'| <= m|v| + G, |p'| <= |p| + lr |v'|
  Adam: m' = b1 m + (1 - b1) g, p' = p - lr m^ / (sqrt(v^) + eps), m^ = m' / (1 - b1^t)
                                                    -> |m'| <= b1|m| + (1 - b1) G,
                                                       |p'| <= |p| + lr |m'| / ((1 - b1) eps)
(Adam's v stays at most max(|v|, G^2), finite while G <= GRAD_LIMIT.)
"""

from __future__ import annotations

import math
from typing import Callable, Protocol, TypeVar

import numpy as np

from .errors import TrainingError

R = TypeVar("R")

GRAD_LIMIT = 1e18  # a step whose gradient norm exceeds this has diverged (its square fits a float32)


def gradient_ok(loss: float, gradsq: float) -> bool:
    """Whether a step with this loss and sum of squared gradients may be applied at all."""
    return math.isfinite(loss) and math.isfinite(gradsq) and gradsq <= GRAD_LIMIT * GRAD_LIMIT


def check_gradient(loss: float, gradsq: float) -> None:
    """TrainingError, saying the step was not applied, unless gradient_ok(loss, gradsq) (every
    engine's check before its update)."""
    if not gradient_ok(loss, gradsq):
        norm = math.sqrt(gradsq) if gradsq >= 0 else math.nan
        raise TrainingError(f"the loss or its gradients became {loss} (gradient norm {norm:.3g}): "
                            "the step was not applied (lower the learning rate, or scale the inputs down)")


class StepGuard:
    """Upper bounds of |parameter| and |optimizer state 0| for an engine of float type `dtype`."""

    def __init__(self, dtype):
        self.limit = float(np.finfo(dtype).max) / 64  # room for the rounding of the bounds themselves
        self.param = self.state = math.inf  # unknown until measured

    def measured(self, param: float, state: float) -> None:
        """Exact maxima of |parameter| and |state 0| (NaN counts as infinite)."""
        self.param = _finite_or_inf(param)
        self.state = _finite_or_inf(state)

    def _after(self, optimizer, g: float) -> tuple[float, float]:
        return optimizer.step_bound(self.param, self.state, g)

    def safe(self, optimizer) -> bool:
        """Whether every step the engine would accept keeps every parameter and state finite."""
        param, state = self._after(optimizer, GRAD_LIMIT)
        return param < self.limit and state < self.limit

    def advance(self, optimizer, gradsq: float) -> None:
        """The bounds after a step of gradient norm sqrt(gradsq), applied in place."""
        self.param, self.state = self._after(optimizer, math.sqrt(gradsq))


class Restorable(Protocol):
    """What the careful update needs of an engine, each on its own memory (host arrays, device
    buffers): a copy of the parameters and optimizer state, putting it back, and the exact bounds
    (max |parameter|, max |optimizer state 0|; inf where any parameter or state is not finite)."""

    guard: StepGuard
    optimizer: object

    @property
    def params(self) -> dict: ...

    def backup_state(self) -> object: ...

    def restore_state(self, saved: object) -> None: ...

    def exact_bounds(self) -> tuple[float, float]: ...


def careful(engine: Restorable, apply: Callable[[], R]) -> R:
    """The careful update, for a step the guard cannot prove finite: back up, apply (what apply
    raises leaves the backup unused: the step refused itself), measure exactly; if a parameter or
    state became non-finite, put the backup back and raise TrainingError naming where, else take
    the measured bounds. Returns what apply returned."""
    saved = engine.backup_state()
    result = apply()
    found = engine.exact_bounds()
    if math.inf in found:
        message = refused_update(engine.optimizer.lr, engine.params)  # read before they are put back
        engine.restore_state(saved)
        engine.guard.measured(*engine.exact_bounds())
        raise TrainingError(message)
    engine.guard.measured(*found)
    return result


def _finite_or_inf(value: float) -> float:
    value = float(value)
    return value if math.isfinite(value) else math.inf


def max_abs(arrays) -> float:
    """The largest |entry| of some arrays (inf if any entry is not finite; 0 for none)."""
    best = 0.0
    for a in arrays:
        if a.size:
            m = float(np.max(np.abs(a)))
            if not math.isfinite(m):
                return math.inf
            best = max(best, m)
    return best


def refused_update(lr: float, params: dict) -> str:
    """The TrainingError's words for an update that would have made a parameter non-finite: which
    group's (the first block found, from params: {key: array} as the update left them) and what to
    try."""
    where = "parameters"
    for key, value in sorted(params.items()):  # (the same block on every engine)
        if not np.isfinite(value).all():
            where = (f"the weights of edge {key[1]} -> {key[2]}, into group {key[2]}," if key[0] == "W" else
                     f"group {key[1]}'s own parameters")
            break
    return (f"this step's update (learning rate {lr:g}) would have made {where} non-finite; it was not applied "
            f"(try a learning rate of {lr / 10:g} or less)")
