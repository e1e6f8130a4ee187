"""Optimizers: their hyperparameters, and the NumPy update every engine must reproduce.

Both follow PyTorch's formulas (torch.optim.SGD with momentum, torch.optim.Adam), so a genlab
run and a PyTorch run from the same weights take the same steps. State is kept per parameter
(keyed like the engine's parameters), so when the network grows the existing parameters keep
their moments and new ones start fresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

import numpy as np


class OptimizerCode(IntEnum):
    """Which update the kernels apply (cuda/optim.cu; the code is shared through constants.cuh)."""

    SGD = 0
    ADAM = 1


@dataclass
class SGD:
    """SGD with momentum: v = momentum * v + g; p -= lr * v."""

    lr: float = 0.1
    momentum: float = 0.9

    name = "sgd"
    code: ClassVar[OptimizerCode] = OptimizerCode.SGD
    state_names: ClassVar[tuple[str, ...]] = ("vel",)  # the engines' per-parameter state buffers

    @property
    def hyper(self) -> tuple[float, float, float]:
        """The kernels' three hyper-parameters."""
        return (self.momentum, 0.0, 0.0)

    def update(self, param: np.ndarray, grad: np.ndarray, state: dict) -> None:
        if self.momentum:
            v = state.get("v")
            if v is None:
                v = state["v"] = grad.copy()
            else:
                v *= self.momentum
                v += grad
            grad = v
        param -= self.lr * grad


@dataclass
class Adam:
    """Adam with bias correction; the step count is kept per parameter."""

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    name = "adam"
    code: ClassVar[OptimizerCode] = OptimizerCode.ADAM
    state_names: ClassVar[tuple[str, ...]] = ("m", "v", "t")

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
        if lr is not None:
            optimizer.lr = float(lr)
        return optimizer
    try:
        cls = OPTIMIZERS[str(optimizer).lower()]
    except KeyError:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {sorted(OPTIMIZERS)}") from None
    if lr is not None:
        options["lr"] = float(lr)
    return cls(**options)
