"""Hogwild! (Niu et al. 2011): K workers step on one set of parameters without locks or barriers.

Trainer(net, parallel=genlab.Hogwild(workers=K)).fit(...) deals each epoch's batches to the
workers in turn (batch j to worker j mod K); every worker runs forward, backward and its own
optimizer's update on the shared parameters as soon as it can, reading whatever the others have
written so far. A worker's *staleness* at a step is the number of updates the others made between
its read of the parameters (forward) and its own write (update): 0 for synchronous training.

Where the workers live is the engine's business (TEAMS): on the serial engine, processes over
shared memory (processes.py, as PyTorch's mnist_hogwild); on the CUDA engine, streams of one GPU
(streams.py). Each worker keeps its own optimizer state: worker 0 starts from the trainer's and
hands it back after the fit (with its growth scores), the others start fresh.

Growth runs with the workers paused: a fit stops them at every `growth.every`-th step, grows the
network as a synchronous trainer would, and starts them again on the grown network. With one
worker, a Hogwild fit takes the synchronous trainer's steps exactly (bit for bit). A worker's
failed step (a TrainingError) stops the others and puts the parameters back as they were when the
workers last started, so a failure never leaves a half-applied mix behind.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from .. import checks
from ..errors import ArgumentError, ArgumentTypeError, BackendError, TrainingError
from .team import Team

MAX_WORKERS = 64  # the step guard's room for K unaccounted updates (genlab.guard: limit / K each)


def deal(batches: list[np.ndarray], workers: int) -> list[list[np.ndarray]]:
    """Batch j to worker j mod workers."""
    return [batches[w::workers] for w in range(workers)]


@dataclass(frozen=True)
class Hogwild:
    """Trainer(parallel=Hogwild(workers=K)): K lock-free workers on shared parameters (module text).

    workers: 1 to MAX_WORKERS. One worker reproduces the synchronous trainer exactly."""

    workers: int = 2

    def __post_init__(self):
        checks.integer(self.workers, "Hogwild workers", 1, MAX_WORKERS)

    def check(self, engine) -> None:
        """BackendError unless the engine has a kind of team."""
        self._make(engine)

    def team(self, trainer, X: np.ndarray, y: np.ndarray) -> Team:
        """The workers for the trainer's engine, started."""
        return self._make(trainer.engine)(trainer, X, y, self.workers, trainer.grower.needs_stats)

    @staticmethod
    def _make(engine):
        for engine_type, make in _teams().items():
            if type(engine) is engine_type:
                return make
        raise BackendError(f"Hogwild runs on the serial and CUDA engines, not on the {engine.name} engine "
                           f"({type(engine).__name__})")


def _teams() -> dict:
    """Engine type -> its kind of Team (the CUDA one only where PyCUDA imports)."""
    from ..engines.serial import SerialEngine
    from .processes import ProcessTeam

    teams = {SerialEngine: ProcessTeam}
    try:
        from ..engines.cuda.engine import CudaEngine
        from .streams import StreamTeam
    except ImportError:
        return teams
    teams[CudaEngine] = StreamTeam
    return teams


def epoch(trainer, team: Team, batches: list[np.ndarray], losses: list, hits: list, bar) -> None:
    """One pass of the team over `batches` (trainer.batches), recorded as the synchronous fit
    records its steps (plus each step's worker and staleness). The workers stop at every growth
    step of the trainer's policy; the network grows and they start again on it. A failed run of
    steps is forgotten whole: the steps counted, the history and the growth bookkeeping go back to
    where they were, as the parameters do."""
    every, i = trainer.growth.every, 0
    per_row = team.y[:1].size  # labels a sample (a recurrent network read at every step: one a step)
    while i < len(batches):
        stop = len(batches) if not every else min(len(batches), i + every - trainer.step_count % every)
        saved = (trainer.step_count, copy.deepcopy(trainer.grower.__dict__))
        try:
            for r in team.run(deal(batches[i:stop], team.workers)):
                record = trainer._account(r.loss, r.correct, r.rows, r.rows * per_row, lambda: r.grad_std,
                                          lambda: r.stats, worker=r.worker, staleness=r.staleness)
                losses.append(record["loss"] * r.rows)
                hits.append(record["accuracy"] * r.rows)
                bar.update()
        except TrainingError:
            trainer.step_count = saved[0]
            trainer.history.forget(trainer.step_count)
            trainer.grower.__dict__.update(saved[1])
            raise
        finally:
            trainer._dirty = True
        if every and trainer.step_count % every == 0 and trainer.grow():
            team.reload()
        i = stop


def checked(parallel, distributed, decouple=None) -> Hogwild | None:
    """Trainer(parallel=...): the Hogwild workers of fit or None; ArgumentTypeError or
    ArgumentError for what it cannot be."""
    if parallel is None:
        return None
    if not isinstance(parallel, Hogwild):
        raise ArgumentTypeError(f"parallel must be a genlab.Hogwild or None, got {type(parallel).__name__}")
    if decouple is not None:
        raise ArgumentError("parallel=Hogwild(...) and decouple=DNI(...) do not go together: choose one way of not "
                            "waiting")
    if distributed is not None:
        raise ArgumentError("parallel=Hogwild(...) runs its workers in this process's machine; it does not go with "
                            f"distributed={distributed!r}")
    return parallel
