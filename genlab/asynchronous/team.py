"""A team of Hogwild! workers (hogwild.py) as the trainer sees it, whatever runs them: the
interface each kind of team implements (processes.py on the serial engine, streams.py on the CUDA
engine), the step a worker reports and a worker's starting state."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterator

import numpy as np


@dataclass(frozen=True)
class Report:
    """One worker's step as the trainer records it."""

    worker: int
    loss: float
    correct: int
    rows: int
    staleness: int              # the others' updates between this step's read and its write
    grad_std: dict              # {group: std of dL/dh} of the step (Engine.grad_std)
    stats: dict | None = None   # Engine.stats, when the trainer's growth needs them at every step


class Team(ABC):
    """K workers on the parameters of a trainer's engine."""

    def __init__(self, trainer, X: np.ndarray, y: np.ndarray, workers: int, needs_stats: bool):
        self.trainer, self.X, self.y, self.workers, self.needs_stats = trainer, X, y, workers, needs_stats

    @abstractmethod
    def run(self, plan: list[list[np.ndarray]]) -> Iterator[Report]:
        """Let worker w take the batches plan[w] (row indices of X) in order, all at once; yield each
        step as it finishes. Afterwards the trainer's engine holds the parameters, and worker 0's
        optimizer state and scores. A worker's TrainingError stops the rest and is raised with the
        parameters put back as they were before this run."""

    @abstractmethod
    def reload(self) -> None:
        """Take up the trainer's network again (after growth changed it)."""

    @abstractmethod
    def close(self) -> None:
        """Stop the workers and free what they shared."""


def own_state(state, worker: int):
    """Worker `worker`'s starting state: the trainer's for worker 0; for the others the same growth
    and pruning statistics and a fresh optimizer (K copies of one momentum would each push the
    parameters the same way at once)."""
    return state if worker == 0 else dataclasses.replace(state, optimizer={})
