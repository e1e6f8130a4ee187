"""The CUDA engine's state beyond the parameters, and the step guard's device side.

export / restore: optimizer state and growth statistics to and from genlab.engines.EngineState
(checkpoints; any engine reads what another wrote). bounds: the exact maxima of |parameter| and
|optimizer state 0| (the max_abs kernel), for genlab.guard.StepGuard. Backup: a copy of the
parameters and optimizer state on the device, taken before a step or growth the guard cannot
prove finite, and put back if it was not.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..base import EngineState
from ...network import INPUT, OUTPUT
from . import readback
from .constants import THREADS
from .growth import GROUP_STATE

if TYPE_CHECKING:
    from .engine import CudaEngine
    from .memory import Memory
    from .records import Parameters

INF_BITS = 0x7F800000


def export(e: "CudaEngine") -> EngineState:
    """The optimizer state, scores and running ranges (the engine's export_state: settled)."""
    L, drv = e.layout, e.drv
    names = e.optimizer.state_names
    flats = {n: readback.unflatten(e, buf) for n, buf in zip(names, e.dev.parameters.state)}
    state = EngineState(optimizer={key: {n: flats[n][key] for n in names} for key in L.offsets},
                        placement={"engine": e.name, **L.describe()})
    host = {}
    for name, dtype in GROUP_STATE:
        host[name] = np.empty(len(L.groups), dtype)
        drv.memcpy_dtoh(host[name], getattr(e.dev.scores, name))
    for s, g in enumerate(L.groups):
        if L.hidden[s]:
            if host["seen"][s]:
                state.ema[g] = float(host["ema"][s])
            if host["taylor_seen"][s]:
                state.taylor[g] = float(host["taylor"][s])
    lo, hi = np.empty(L.n_cols, np.float32), np.empty(L.n_cols, np.float32)
    drv.memcpy_dtoh(lo, e.dev.ranges.run_lo)
    drv.memcpy_dtoh(hi, e.dev.ranges.run_hi)
    for s, g in enumerate(L.groups):
        cols = slice(int(L.col_off[s]), int(L.col_off[s] + L.width[s]))
        if g not in (INPUT, OUTPUT) and np.isfinite(lo[cols]).all():
            state.ranges[g] = (lo[cols].copy(), hi[cols].copy())
    return state


def restore(e: "CudaEngine", state: EngineState) -> None:
    """Put a saved state back (the engine's import_state: settled)."""
    L, drv = e.layout, e.drv
    for n, buf in zip(e.optimizer.state_names, e.dev.parameters.state):
        flat = np.zeros(L.n_params, np.float32)
        for key, arrays in state.optimizer.items():
            off, shape = L.offsets[key], L.shapes[key]
            value = np.asarray(arrays[n], np.float32)
            if value.shape != tuple(shape):
                raise ValueError(f"optimizer state {n} of {key} has shape {value.shape}, the parameter {shape}")
            flat[off:off + math.prod(shape)] = value.ravel()
        drv.memcpy_htod(buf, flat)
    host = {name: np.zeros(len(L.groups), dtype) for name, dtype in GROUP_STATE}
    for values, value_name, seen_name in ((state.ema, "ema", "seen"), (state.taylor, "taylor", "taylor_seen")):
        for g, v in values.items():
            host[value_name][L.slot[g]], host[seen_name][L.slot[g]] = v, 1
    for name, _ in GROUP_STATE:
        drv.memcpy_htod(getattr(e.dev.scores, name), host[name])
    lo, hi = np.full(L.n_cols, np.inf, np.float32), np.full(L.n_cols, -np.inf, np.float32)
    for g, (glo, ghi) in state.ranges.items():
        s = L.slot[g]
        cols = slice(int(L.col_off[s]), int(L.col_off[s] + L.width[s]))
        lo[cols], hi[cols] = glo, ghi
    drv.memcpy_htod(e.dev.ranges.run_lo, lo)
    drv.memcpy_htod(e.dev.ranges.run_hi, hi)
    e.measure()


def bounds(e: "CudaEngine", params=None, state0=None, n: int | None = None) -> tuple[float, float]:
    """Exact max |parameter| and max |optimizer state 0| on the device (inf where not finite)."""
    p = e.dev.parameters
    params = p.params if params is None else params
    state0 = p.state[0] if state0 is None else state0
    n = e.layout.n_params if n is None else n
    out = e.mem.new(8, "bounds")
    e.mem.fill(out, 0, 2)
    blocks = max(1, -(-n // (THREADS * 8)))
    for i, buf in enumerate((params, state0)):
        e.launch.keyed("max_abs", (blocks, 1), dict(x=buf, n=np.int32(n), out=np.uintp(int(out) + 4 * i)))
    host = np.empty(2, np.uint32)
    e.drv.memcpy_dtoh_async(host, out, e.stream)
    e.stream.synchronize()
    return tuple(math.inf if bits >= INF_BITS else float(np.uint32(bits).view(np.float32)) for bits in host)


class Backup:
    """Parameters (and their optimizer state) as they are now, copied on the device, to put back:
    `n` floats each of `parameters` (records.Parameters), in `mem`'s allocations on its stream."""

    def __init__(self, parameters: "Parameters", n: int, mem: "Memory", state: bool = True):
        self.n, self.mem = n, mem
        kept = parameters.kept()
        names = list(kept) if state else ["params"]
        mem.check_room(4 * n * len(names), "a backup of the parameters")
        self.copies = {}
        for name in names:
            self.copies[name] = mem.new(4 * max(n, 1), "backup")
            mem.drv.memcpy_dtod_async(self.copies[name], kept[name], 4 * n, mem.stream)

    def put_back(self, parameters: "Parameters") -> None:
        """The copies back into `parameters` (the engine's, or those of the state put back)."""
        kept = parameters.kept()
        for name, copy in self.copies.items():
            self.mem.drv.memcpy_dtod_async(kept[name], copy, 4 * self.n, self.mem.stream)
        self.mem.stream.synchronize()
