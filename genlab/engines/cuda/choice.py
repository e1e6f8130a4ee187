"""executor="auto": which executor runs a network's training step, chosen per shape and GPU.

Every executor computes the same step; which one is fastest depends on the shape (narrow groups
in many levels favour the row executor, groups of 48 neurons or more the level executor's
register tiles; benchmarks/NOTES.md). `Chooser` picks by a short timed trial: at the first step
of a shape it runs a few steps of every executor that can run the network's group kinds, on the
live engine and the batch at hand, and puts the parameters, optimizer state and growth scores
back afterwards, so the trial changes nothing but the time it takes. The winner is cached per
shape and GPU, in memory and in ~/.cache/genlab/executors.json (GENLAB_CACHE_DIR moves it), so
a shape is tried once per machine.

A shape (`Shape`) is the network's group kinds, the precision (only the executors that offer it
are candidates), its depth, its number of hidden groups, their
median and largest width and the batch, each rounded to a power of two (the depth kept exact
up to 4): a network that grows within its shape keeps its executor; one that grows into a
shape met before takes that shape's executor at its next step, and into a new one keeps its
executor until the shape has lasted PATIENCE steps, then tries (so that a network growing every
few steps does not pay a trial at each growth step). A data-parallel step chooses with the cost
model (`model`) instead, from the shape alone, so that every replica runs the same executor and
the replicas stay bit-identical. The executors agree to float rounding, not bit for bit: a run
that must repeat exactly on another machine names its executor.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import BackendError
from ...precision import DEFAULT as FP32
from ...precision import Precision
from .constants import WIDE
from .deferred import settled
from .executors import EXECUTORS, Executor

if TYPE_CHECKING:
    from .engine import CudaEngine
    from .layout import Layout

TRIAL_STEPS = (3, 25)  # timed steps per executor (after one that captures its graph): as many as fit
TRIAL_MS = 3.0        # in this many milliseconds, within those bounds (small steps are noisy)
GIVE_UP = 1.5  # an executor whose first timed step is this much slower than the best so far stops there
PATIENCE = 50  # steps a shape made by growth waits on the current executor before its trial


def _round(n: int) -> int:
    """n to the nearest power of two (0 stays 0)."""
    return 0 if n <= 0 else 2 ** round(math.log2(n))


@dataclass(frozen=True)
class Shape:
    """What decides the fastest executor, rounded so that a shape covers many networks."""

    kinds: tuple[str, ...]
    depth: int
    groups: int
    width: int   # median width of the hidden groups (of the output group if there are none)
    widest: int
    batch: int
    precision: str = FP32.value

    @classmethod
    def of(cls, kinds, layout: "Layout", batch: int, precision: Precision = FP32) -> "Shape":
        hidden = layout.width[layout.hidden.astype(bool)]
        widths = hidden if hidden.size else layout.width[[layout.output_slot]]
        depth = len(layout.forward_levels)
        return cls(tuple(sorted(kinds)), depth if depth <= 4 else _round(depth), _round(int(hidden.size)),
                   _round(int(np.median(widths))), _round(int(widths.max())), _round(batch), precision.value)

    def key(self, device: str) -> str:
        return "|".join([device, *(f"{k}={v}" for k, v in asdict(self).items())])


def candidates(kinds, precision: Precision = FP32) -> list[type[Executor]]:
    """The executors that can run groups of these kinds in this precision, in the registry's order."""
    return [cls for cls in EXECUTORS.values() if set(kinds) <= cls.kinds and precision in cls.precisions]


def model(shape: Shape) -> str:
    """The cost model: the executor the shape sweep of `genlab bench` favours for a shape,
    without running it (the first one a trial tries, and a data-parallel run's choice). Groups of
    other kinds run on the level executor only. Dense groups of 16 neurons or fewer (the median,
    none of 256 or more): the row executor, one work item and one hand-off a group; of about 32:
    the dataflow executor's tiles without level barriers; wider: the level executor's register
    tiles (benchmarks/NOTES.md)."""
    names = [cls.name for cls in candidates(shape.kinds, Precision(shape.precision))]
    if shape.widest < WIDE:
        for width, name in ((16, "dataflow_rows"), (32, "dataflow")):
            if shape.width <= width and name in names:
                return name
    return "level" if "level" in names else names[0]


class Snapshot:
    """The engine's state a step changes beyond what the next step recomputes: parameters,
    optimizer state, growth scores, running activation ranges; copied on the device, put back
    into whatever buffers the engine holds then (a change of executor rebuilds some)."""

    def __init__(self, e: "CudaEngine"):
        from .growth import GROUP_STATE

        L = e.layout
        # (where it is in a device state, bytes) of each buffer kept
        n_state = len(e.optimizer.state_names)
        where = [(lambda d: d.parameters.params, 4 * L.n_params),
                 *[((lambda d, i=i: d.parameters.state[i]), 4 * L.n_params) for i in range(n_state)],
                 *[((lambda d, n=name: getattr(d.scores, n)), np.dtype(dtype).itemsize * len(L.groups))
                   for name, dtype in GROUP_STATE],
                 *[((lambda d, n=name: getattr(d.ranges, n)), 4 * L.n_cols)
                   for name in ("run_lo", "run_hi", "run_const")]]
        e.mem.check_room(sum(nbytes for _, nbytes in where), "a copy of the parameters for the executor trial")
        self.e, self.copies = e, []
        for at, nbytes in where:
            if nbytes:
                copy = e.mem.new(nbytes, "executor trial")
                e.drv.memcpy_dtod_async(copy, at(e.dev), nbytes, e.stream)
                self.copies.append((at, copy, nbytes))

    def put_back(self) -> None:
        e = self.e
        for at, copy, nbytes in self.copies:
            e.drv.memcpy_dtod_async(at(e.dev), copy, nbytes, e.stream)
        e.stream.synchronize()


@settled
def trial(e: "CudaEngine", x: np.ndarray, y: np.ndarray, names: list[str]) -> dict[str, float]:
    """Milliseconds of a step (host work included) of each named executor on this batch: the
    median of TRIAL_STEPS (as many as fit in TRIAL_MS) after one that captures its graph; an
    executor whose lower bound (Executor.least_ms) loses by GIVE_UP to one timed before is left
    out. The engine ends with the fastest, its state as it was before."""
    snapshot, times = Snapshot(e), {}
    try:
        for name in names:
            if times and EXECUTORS[name].least_ms(e.layout, len(x), e) > GIVE_UP * min(times.values()):
                continue  # cannot win: not worth its steps (the cluster's on a large network: seconds)
            try:
                e.use_executor(name)
            except BackendError:  # no room for its buffers: not a candidate here
                continue
            snapshot.put_back()
            times[name] = _time_steps(e, x, y, min(times.values(), default=math.inf))
    finally:
        e.use_executor(min(times, key=times.get) if times else names[0])  # (settles the last one tried)
        snapshot.put_back()
    return times


def _time_steps(e: "CudaEngine", x, y, best: float) -> float:
    e.replay(e.put_batch(x, y))
    times, least, most = [], *TRIAL_STEPS
    while len(times) < most:
        t = time.perf_counter()
        e.replay(e.put_batch(x, y))
        times.append((time.perf_counter() - t) * 1e3)
        if times[0] > GIVE_UP * best or (len(times) >= least and sum(times) > TRIAL_MS):
            break
    return statistics.median(times)


class Chooser:
    """The executor="auto" of one engine: looks at every step whether the shape changed (step)."""

    def __init__(self):
        self._seen = None  # (layout, batch) last looked at: nothing to do until either changes
        self._waiting: list | None = None  # [shape key, steps]: a new shape not tried yet (PATIENCE)
        self.last: dict = {}  # the last choice: shape, executor, how, trial times (ms)

    def step(self, e: "CudaEngine", x: np.ndarray, y: np.ndarray, batch: int, replicated: bool = False) -> None:
        """Before a step of `batch` rows: choose again if the layout or the batch changed, or if
        a shape kept waiting has lasted PATIENCE steps."""
        if self._seen is None or self._seen[0] is not e.layout or self._seen[1] != batch:
            self._choose(e, x, y, batch, replicated)
        elif self._waiting is not None:
            self._waiting[1] += 1
            if self._waiting[1] >= PATIENCE:
                self._choose(e, x, y, batch, replicated, settled=True)

    def _choose(self, e: "CudaEngine", x, y, batch: int, replicated: bool, settled: bool = False) -> None:
        """The executor of this shape: the cached one, else (alone) a trial's winner or (replicated)
        the cost model's. A shape that growth made from a shape already chosen for waits on the
        current executor until it has lasted PATIENCE steps (a network growing every few steps
        would otherwise pay a trial at each growth step); the first shape is tried at once."""
        shape = Shape.of(e.kinds, e.layout, batch, e.precision)
        key = shape.key(e.device.name())
        names = [cls.name for cls in candidates(e.kinds, e.precision)]
        cached = None if replicated else _cache().get(key)
        waiting, times = None, {}
        if replicated:
            name, how = model(shape), "model"
        elif cached is not None and cached["executor"] in names:
            name, how, times = cached["executor"], "cache", cached["ms"]
        elif len(names) == 1:
            name, how = names[0], "only"
        elif self.last and not settled:
            waiting = self._waiting if self._waiting is not None and self._waiting[0] == key else [key, 0]
            name, how = (e.executor.name if e.executor.name in names else model(shape)), "waiting"
        else:
            name, how, times = self._trial(e, x, y, shape, names, key)
        e.use_executor(name)
        self._seen, self._waiting = (e.layout, batch), waiting
        self.last = {"shape": asdict(shape), "executor": name, "how": how, "ms": times}

    @staticmethod
    def _trial(e: "CudaEngine", x, y, shape: Shape, names: list[str], key: str) -> tuple[str, str, dict]:
        """(winner, how, times) of a trial, the cost model's pick tried first (the others stop
        after one step where they lose by GIVE_UP); the model's pick alone where there is no room
        for a copy of the state."""
        first = model(shape)
        try:
            times = trial(e, x, y, [first] + [n for n in names if n != first])
        except BackendError:
            return first, "model", {}
        name = min(times, key=times.get)
        _store(key, {"executor": name, "ms": times})
        return name, "trial", times


# ------------------------------------------------------------------------------ the cache on disk
_CACHE: dict | None = None


def cache_path() -> Path:
    root = os.environ.get("GENLAB_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "genlab")
    return Path(root) / "executors.json"


def _cache() -> dict:
    global _CACHE
    if _CACHE is None:
        try:
            _CACHE = json.loads(cache_path().read_text())
            if not isinstance(_CACHE, dict):
                _CACHE = {}
        except (OSError, ValueError):
            _CACHE = {}  # none yet, or unreadable: trials again
    return _CACHE


def _store(key: str, value: dict) -> None:
    """Remember a choice in memory and on disk (written whole and renamed: a reader never sees
    half a file); a disk that refuses keeps it in memory only."""
    cache = _cache()
    cache[key] = value
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError:
        pass


def forget() -> None:
    """Drop the cached choices (in memory and on disk): the next step of every shape is tried again."""
    global _CACHE
    _CACHE = {}
    try:
        cache_path().unlink()
    except OSError:
        pass
