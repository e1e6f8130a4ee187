"""The genlab arms of the growth study: grown, regrown, layered and random. Each trains with the
same optimizer, batches (Trainer.batches from the same seed) and epochs, and is timed on its
training steps alone; the test accuracy is read after every epoch."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from .. import datasets, starts
from ..network import Network
from ..operations import Change
from ..policy import GrowthPolicy
from ..trainer import Trainer
from .tasks import Task

GROWING = 1 / 3  # the share of a run's steps over which growth spends its budget


@dataclass
class Run:
    """One arm of one task with one seed, JSON-ready (network: the grown one, kept in memory for
    the arms that read it and never written)."""

    task: str
    arm: str
    seed: int
    accuracy: float
    parameters: int
    seconds: float
    backend: str
    curve: list[float]
    groups: int | None = None
    events: list[dict] = field(default_factory=list)
    topology: dict | None = None
    network: Network | None = None

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "network"}
        if d["topology"] is None:
            del d["topology"]
        return d


def data_for(task: Task, seed: int) -> datasets.Dataset:
    """The task's data; the split and subset depend on the seed only where the set has no official split."""
    return datasets.load(task.dataset, seed=seed, n_samples=task.n_samples)


def seed_network(task: Task, data, seed: int) -> Network:
    return starts.build(data, task.kind, [task.width], True, seed)


def policy(task: Task, data, grow: bool = True) -> GrowthPolicy:
    """The default growth rule, its checks spread so that the budget is reached by the end of the
    first GROWING share of the run (a fixed every=50 would still be growing at the end of a short
    run and be done within an epoch of a long one); a group may grow again at the next check."""
    steps = task.epochs * -(-len(data.y_train) // task.batch_size)
    events = max(task.max_groups - 3, 1)  # from one hidden group (with the input and the output)
    every = max(1, int(steps * GROWING) // events)
    return GrowthPolicy(max_groups=task.max_groups, every=every if grow else None, cooldown=every)


def train(task: Task, data, net: Network, seed: int, backend: str, growth: GrowthPolicy | None = None,
          schedule: dict[int, int] | None = None) -> tuple[Trainer, list[float], float]:
    """Train `net` for the task's epochs; return the trainer, the test accuracy after each epoch and
    the seconds of the training steps. schedule {step: n}: after that step grow n groups drawn at
    random from those that may grow (the random arm)."""
    trainer = Trainer(net, backend=backend, seed=seed, lr=task.lr, batch_size=task.batch_size, growth=growth)
    with _quiet():  # the budget's one-line note, once per run, says nothing the study does not
        return _steps(task, data, trainer, seed, schedule)


@contextlib.contextmanager
def _quiet():
    log = logging.getLogger("genlab.growth")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _steps(task: Task, data, trainer: Trainer, seed: int, schedule: dict[int, int] | None):
    pick = np.random.default_rng([seed, 0x5EED])
    X, y = data.train
    curve, seconds = [], 0.0
    for _ in range(task.epochs):
        start = time.perf_counter()
        for idx in trainer.batches(len(X)):
            trainer.step(X[idx], y[idx])
            n = (schedule or {}).get(trainer.step_count)
            if n:
                eligible = trainer.grower.eligible(trainer.net, trainer.step_count)
                chosen = pick.choice(eligible, size=min(n, len(eligible)), replace=False) if eligible else []
                trainer.grow(groups=[int(g) for g in chosen])
        seconds += time.perf_counter() - start
        curve.append(trainer.evaluate(*data.test)["accuracy"])
    return trainer, curve, seconds


def _run(task: Task, arm: str, seed: int, trainer: Trainer, curve: list[float], seconds: float,
         keep: bool = False) -> Run:
    net = trainer.net
    events = [{k: e[k] for k in ("step", "kind", "source", "new", "statistic")} for e in trainer.history.events]
    return Run(task.dataset, arm, seed, curve[-1], net.n_params, round(seconds, 3), trainer.backend, curve,
               groups=len(net.groups), events=events, topology=_topology(net) if keep else None,
               network=net.copy() if keep else None)


def _topology(net: Network) -> dict:
    t = net.topology()
    return {"widths": {str(g): w for g, w in t["widths"].items()}, "edges": t["edges"],
            "kinds": {str(g): k for g, k in net.kinds.items()}}


def grown(task: Task, seed: int, backend: str, given: Run | None = None) -> Run:
    data = data_for(task, seed)
    trainer, curve, seconds = train(task, data, seed_network(task, data, seed), seed, backend, policy(task, data))
    return _run(task, "grown", seed, trainer, curve, seconds, keep=True)


def regrown(task: Task, seed: int, backend: str, given: Run) -> Run:
    """The grown network's final topology, its parameters drawn afresh, trained fixed."""
    net = given.network.copy()
    net.init_params(seed + 1000)
    trainer, curve, seconds = train(task, data_for(task, seed), net, seed, backend)
    return _run(task, "regrown", seed, trainer, curve, seconds)


def layered(task: Task, seed: int, backend: str, given: Run) -> Run:
    """One hidden group of the task's kind with about as many parameters as the grown network."""
    data = data_for(task, seed)
    _, net = starts.one_layer_like(data, task.kind, given.parameters, seed)
    trainer, curve, seconds = train(task, data, net, seed, backend)
    return _run(task, "layered", seed, trainer, curve, seconds)


def random(task: Task, seed: int, backend: str, given: Run) -> Run:
    """As many duplications at the same steps as the grown run made, the groups drawn at random
    (the mode, cooldowns and budget of the same policy)."""
    schedule: dict[int, int] = {}
    for e in given.events:
        if e["kind"] in (Change.DEPTH, Change.WIDTH):
            schedule[e["step"]] = schedule.get(e["step"], 0) + 1
    data = data_for(task, seed)
    trainer, curve, seconds = train(task, data, seed_network(task, data, seed), seed, backend,
                                    policy(task, data, grow=False), schedule)
    return _run(task, "random", seed, trainer, curve, seconds)


GENLAB_ARMS = {"grown": grown, "regrown": regrown, "layered": layered, "random": random}
