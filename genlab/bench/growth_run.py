"""W5: a network grown on digits; every growth event timed, and the parts of an event."""

from __future__ import annotations

import contextlib
import statistics
import time

import numpy as np

from ..network import Network
from .baselines import _graphed, _torch_step, torch_group_model, torch_level_model
from .workloads import AUTO, GENLAB


_MISSING = object()  # growth_phases: an attribute the wrapped object did not have itself


@contextlib.contextmanager
def growth_phases(trainer):
    """Time the parts of a trainer's growth events (wall clock; the device synchronised after
    each part that queues GPU work, so that the work counts where it is queued). Yields a list
    that gets, per growth event, {"total": ms, "new_groups": n, part: ms, ...}. The parts: check
    (the growth rules, which contain choose, on the engine, duplicate, on the network, and the
    pictures each event leaves), copy (the network's), topology (its pictures: Network.topology
    and StepPictures.after), apply (the engine's apply_growth, which on the CUDA engine
    contains index, build, group_state and replay), flush (the executor's pending update, inside
    whichever part makes the event's first @settled call: engine.flush). Everything is unwrapped on exit."""
    from .. import growth, network, step_pictures

    events, now, restore = [], {}, []
    engine = trainer.engine
    sync = engine.stream.synchronize if engine.grows_in_place else (lambda: None)

    def wrap(owner, name, label, device=False):
        own = vars(owner).get(name, _MISSING)
        original = getattr(owner, name)

        def timed(*a, **k):
            t = time.perf_counter()
            out = original(*a, **k)
            if device:
                sync()
            now[label] = now.get(label, 0.0) + (time.perf_counter() - t) * 1e3
            return out

        setattr(owner, name, timed)
        restore.append((owner, name, own))

    wrap(trainer, "grow", "total", device=True)
    wrap(trainer.grower, "check", "check")
    wrap(growth, "duplicate_width", "duplicate")
    wrap(growth, "duplicate_depth", "duplicate")
    wrap(engine, "choose_growth", "choose", device=True)
    wrap(engine, "apply_growth", "apply", device=True)
    wrap(network.Network, "topology", "topology")
    wrap(step_pictures.StepPictures, "after", "topology")
    wrap(network.Network, "copy", "copy")
    if engine.grows_in_place:  # the CUDA engine: the parts of apply_growth
        from ..engines.cuda import growth as device_growth
        from ..engines.cuda import layout, topology

        wrap(layout.Layout, "grown", "index")
        wrap(topology, "build", "build", device=True)
        wrap(device_growth, "group_state", "group_state", device=True)
        wrap(device_growth, "replay", "replay", device=True)
        wrap(engine, "flush", "flush", device=True)
    grow = trainer.grow

    def grow_and_record():
        now.clear()
        made = grow()
        if made:
            events.append({"total": now.pop("total"), "new_groups": len(made), **now})
        return made

    trainer.grow = grow_and_record
    try:
        yield events
    finally:
        for owner, name, own in reversed(restore):
            if own is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, own)


def run_growth(steps: int = 2000, every: int = 20, max_groups: int = 512, batch: int = 64,
               implementations=("genlab_level", "genlab_dataflow", "serial", "torch_eager_group",
                                "torch_level_graph")) -> dict:
    """W5: digits from one group, growth every `every` steps up to max_groups, for `steps` steps.
    genlab grows in place; PyTorch rebuilds its model (and re-captures its graph) at each event
    from the genlab network of that moment. Returns total seconds and median ms per growth event."""
    import torch

    from .. import datasets
    from ..growth import GrowthPolicy
    from ..trainer import Trainer

    data = datasets.load("digits", seed=0)
    rng = np.random.default_rng(0)
    batches = [rng.choice(len(data.y_train), batch, replace=False) for _ in range(steps)]
    # split siblings, as every committed W5 run grew (the default became "fresh" later)
    policy = dict(threshold=0.0, every=every, cooldown=0, max_groups=max_groups, mode="width", sibling="split")
    out = {"description": f"digits from one group of 8, growth every {every} steps up to {max_groups} groups, "
                          f"{steps} steps of batch {batch}"}
    nets = []  # the network after each growth step (from the genlab CUDA run), for PyTorch to rebuild
    for label in [i for i in (*GENLAB, AUTO, "serial") if i in implementations]:
        backend = "serial" if label == "serial" else "cuda"
        executor = None if label == "serial" else label[len("genlab_"):]
        trainer = Trainer(Network.mlp([64, 8, 10], seed=0), backend=backend, seed=0, growth=GrowthPolicy(**policy),
                          executor=executor)
        grow, events = trainer.grow, []

        def timed_grow():
            torch.cuda.synchronize()
            t = time.perf_counter()
            made = grow()
            torch.cuda.synchronize()
            if made:
                events.append((time.perf_counter() - t) * 1e3)
                if label == "genlab_level":
                    nets.append((trainer.step_count, trainer.net.copy()))
            return made

        trainer.grow = timed_grow
        torch.cuda.synchronize()
        start, ends, grown_at = time.perf_counter(), [], []
        for idx in batches:
            made = len(events)
            trainer.step(data.X_train[idx], data.y_train[idx])
            if backend == "cuda":  # each step timed alone: the one after an event captures its graph again
                torch.cuda.synchronize()
            ends.append(time.perf_counter())
            if len(events) > made:
                grown_at.append(len(ends) - 1)
        total = ends[-1] - start
        took = np.diff([start] + ends) * 1e3
        after = [took[i + 1] for i in grown_at if i + 1 < len(took)]  # the steps right after an event
        median = float(np.median(np.delete(took, grown_at + [i + 1 for i in grown_at])))  # steps without events
        out[label] = {"total_s": total, "growth_event_ms": statistics.median(events),
                      # the event and what the step after it costs beyond a step's median (the graph
                      # of the step captured again): the whole cost of an event to training
                      "growth_event_with_next_step_ms": statistics.median(
                          e + max(a - median, 0.0) for e, a in zip(events, after)) if after else None,
                      "median_step_ms": median,
                      # a step's mean cost, the growth events taken out (auto's trials stay in)
                      "mean_step_ms": (total * 1e3 - sum(events)) / steps,
                      "growth_events": len(events), "groups_end": len(trainer.net.groups), "steps": steps,
                      "test_accuracy": trainer.evaluate(*data.test)["accuracy"]}
        if label == AUTO:
            out[label]["executor_end"] = trainer.engine.executor.name
        # where an event's time goes: the same growth again, each part timed (growth_phases); the
        # parts of the event whose total is the median
        phased = Trainer(Network.mlp([64, 8, 10], seed=0), backend=backend, seed=0, growth=GrowthPolicy(**policy),
                         executor=executor)
        with growth_phases(phased) as timed:
            for idx in batches[:every * max(len(events), 1) + 1]:
                phased.step(data.X_train[idx], data.y_train[idx])
        if timed:
            out[label]["growth_event_phases_ms"] = sorted(timed, key=lambda e: e["total"])[len(timed) // 2]
    for label in ("torch_eager_group", "torch_level_graph"):
        if label in implementations and nets:
            out[label] = _torch_growth(label, dict(nets), batches, data)
    return out


def _torch_growth(label: str, schedule: dict, batches: list, data) -> dict:
    """W5 in PyTorch: the model rebuilt (and its graph re-captured) from the genlab network of
    each growth step (`schedule`: step -> network), trained on the same batches."""
    import torch

    device = torch.device("cuda")
    net = Network.mlp([64, 8, 10], seed=0)
    events = []
    torch.cuda.synchronize()
    start = time.perf_counter()
    step = None
    for i, idx in enumerate(batches, start=1):
        if step is None or i - 1 in schedule:
            t = time.perf_counter()
            current = schedule.get(i - 1, net)
            xt = torch.from_numpy(data.X_train[idx]).to(device)
            yt = torch.from_numpy(data.y_train[idx]).to(device)
            if label == "torch_eager_group":
                step = _torch_step(*torch_group_model(current, device), xt, yt, 1e-3)
            else:
                static_x, static_y = xt.clone(), yt.clone()
                step = _graphed(_torch_step(*torch_level_model(current, device), static_x, static_y, 1e-3,
                                            capturable=True))
            torch.cuda.synchronize()
            if i - 1 in schedule:
                events.append((time.perf_counter() - t) * 1e3)
        if label == "torch_level_graph":
            static_x.copy_(torch.from_numpy(data.X_train[idx]))
            static_y.copy_(torch.from_numpy(data.y_train[idx]))
        else:
            xt.copy_(torch.from_numpy(data.X_train[idx]))
            yt.copy_(torch.from_numpy(data.y_train[idx]))
        step()
    torch.cuda.synchronize()
    total = time.perf_counter() - start
    return {"total_s": total, "growth_event_ms": statistics.median(events),
            "mean_step_ms": (total * 1e3 - sum(events)) / len(batches), "growth_events": len(events)}
