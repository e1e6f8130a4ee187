"""Optimizers: their hyperparameters, and the NumPy update every engine must reproduce.

Both follow PyTorch's formulas (torch.optim.SGD with momentum, torch.optim.Adam), so a genlab
run and a PyTorch run from the same weights take the same steps. State is kept per parameter
(keyed like the engine's parameters), so when the network grows the existing parameters keep
their moments and new ones start fresh.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum
from typing import ClassVar

import numpy as np

from . import checks
from .errors import ArgumentTypeError


class OptimizerCode(IntEnum):
    """Which update the kernels apply (cuda/optim.cu; the code is shared through constants.cuh)."""

    SGD = 0
    ADAM = 1


class Checked:
    """Every hyper-parameter is checked when set (at construction and after), so a bad value is
    an ArgumentError before any step uses it."""

    ranges: ClassVar[dict]  # field -> (low, high, low excluded)

    def __setattr__(self, name, value) -> None:
        if name in self.ranges:
            low, high, low_open = self.ranges[name]
            value = checks.real(value, f"{type(self).__name__}.{name}", low, high, low_open)
        super().__setattr__(name, value)

    def settings(self) -> dict:
        """The hyper-parameters by name (JSON-ready)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class SGD(Checked):
    """SGD with momentum: v = momentum * v + g; p -= lr * v."""

    lr: float = 0.1
    momentum: float = 0.9

    name = "sgd"
    code: ClassVar[OptimizerCode] = OptimizerCode.SGD
    state_names: ClassVar[tuple[str, ...]] = ("vel",)  # the engines' per-parameter state buffers
    ranges: ClassVar[dict] = {"lr": (0.0, None, False), "momentum": (0.0, 1.0, False)}

    def step_bound(self, param: float, state: float, g: float) -> tuple[float, float]:
        """Bounds of |p| and |v| after a step whose gradient entries are at most g (genlab.guard)."""
        state = self.momentum * state + g
        return param + self.lr * state, state

    @property
    def hyper(self) -> tuple[float, float, float]:
        """The kernels' three hyper-parameters."""
        return (self.momentum, 0.0, 0.0)

    def update(self, param: np.ndarray, grad: np.ndarray, state: dict) -> None:
        if self.momentum:
            v = state.get("vel")
            if v is None:
                v = state["vel"] = grad.copy()
            else:
                v *= self.momentum
                v += grad
            grad = v
        param -= self.lr * grad


@dataclass
class Adam(Checked):
    """Adam with bias correction; the step count is kept per parameter."""

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    name = "adam"
    code: ClassVar[OptimizerCode] = OptimizerCode.ADAM
    state_names: ClassVar[tuple[str, ...]] = ("m", "v", "t")
    ranges: ClassVar[dict] = {"lr": (0.0, None, False), "beta1": (0.0, 0.9999999, False),
                              "beta2": (0.0, 0.9999999, False), "eps": (0.0, None, True)}

    def step_bound(self, param: float, state: float, g: float) -> tuple[float, float]:
        """Bounds of |p| and |m| after a step whose gradient entries are at most g (genlab.guard)."""
        state = self.beta1 * state + (1 - self.beta1) * g
        return param + self.lr * state / ((1 - self.beta1) * self.eps), state

    @property
    def hyper(self) -> tuple[float, float, float]:
        return (self.beta1, self.beta2, self.eps)

    def update(self, param: np.ndarray, grad: np.ndarray, state: dict) -> None:
        if not state:
            state.update(t=0, m=np.zeros_like(param), v=np.zeros_like(param))
        state["t"] += 1
        t, m, v = state["t"], state["m"], state["v"]
        m *= self.beta1
        m += (1 - self.beta1) * grad
        v *= self.beta2
        v += (1 - self.beta2) * grad * grad
        step = self.lr / (1 - self.beta1 ** t)
        param -= step * m / (np.sqrt(v / (1 - self.beta2 ** t)) + self.eps)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def make_optimizer(optimizer="adam", lr: float | None = None, **options):
    """An optimizer from its name ('sgd' or 'adam') or an instance, with lr overriding."""
    if isinstance(optimizer, (SGD, Adam)):
        if options:
            raise ArgumentTypeError(f"options {sorted(options)} go with an optimizer's name, not an instance")
        if lr is not None:
            optimizer.lr = lr
        return optimizer
    cls = OPTIMIZERS[checks.choice(optimizer.lower() if isinstance(optimizer, str) else optimizer,
                                   "optimizer", sorted(OPTIMIZERS))]
    if lr is not None:
        options["lr"] = lr
    names = {f.name for f in fields(cls)}
    unknown = set(options) - names
    if unknown:
        raise ArgumentTypeError(f"{cls.__name__} has no option {', '.join(sorted(unknown))} "
                                f"(its options: {', '.join(sorted(names))})")
    return cls(**options)
