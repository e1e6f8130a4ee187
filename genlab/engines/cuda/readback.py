"""What the CUDA engine reads back to the host: parameters and gradients by key, the per-group
statistics of the last backward (as the serial engine reports them)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ...network import INPUT
from ..base import STATISTICS

if TYPE_CHECKING:
    from .engine import CudaEngine


def unflatten(e: "CudaEngine", buf) -> dict[tuple, np.ndarray]:
    """A flat buffer in the parameters' layout (params, grads, an optimizer state) as arrays by key."""
    L = e.layout
    flat = np.empty(L.n_params, np.float32)
    e.drv.memcpy_dtoh(flat, buf)
    return {k: flat[off:off + math.prod(L.shapes[k])].reshape(L.shapes[k]).copy() for k, off in L.offsets.items()}


def stats(e: "CudaEngine") -> dict[str, dict]:
    L, drv = e.layout, e.drv
    sums, count, std = sums_and_std(e)
    wsq = np.empty(len(L.groups), np.float64)
    drv.memcpy_dtoh(wsq, e.dev.sums.wstats)
    out = {name: {} for name in STATISTICS}
    for s, g in enumerate(L.groups):
        if g == INPUT:
            continue
        out["grad_std"][g] = float(std[s])
        out["weight_grad_norm"][g] = float(np.sqrt(wsq[s]))
        out["taylor"][g] = float(abs(sums[s, 2] / count[s]))
    if e.pruning[0]:
        out["h_min"], out["h_max"] = ranges(e)
    return out


def ranges(e: "CudaEngine") -> tuple[dict, dict]:
    """Each group's per-neuron minimum and maximum output over the last step's batch (tracked while
    pruning is on: e.pruning[0]), by group."""
    L, drv = e.layout, e.drv
    lo, hi = np.empty(L.n_cols, np.float32), np.empty(L.n_cols, np.float32)
    drv.memcpy_dtoh(lo, e.dev.ranges.range_min)
    drv.memcpy_dtoh(hi, e.dev.ranges.range_max)
    columns = {g: slice(int(L.col_off[s]), int(L.col_off[s] + L.width[s])) for s, g in enumerate(L.groups) if g != INPUT}
    return {g: lo[c].copy() for g, c in columns.items()}, {g: hi[c].copy() for g, c in columns.items()}


def sums_and_std(e: "CudaEngine") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per slot: the sums of dL/dh, its squares and h dL/dh; the element counts; the std of dL/dh.
    The sums come from the last step's read of its scalars when that was made for this layout."""
    L = e.layout
    if e._sums_of is L:
        sums = e._host_sums
    else:
        sums = np.empty((len(L.groups), 3), np.float64)
        e.drv.memcpy_dtoh(sums, e.dev.sums.stats)
    count = e.rows_counted * L.width.astype(np.float64)
    count[L.output_slot] /= L.kinds.tokens  # a sequence network's logits: a row per sample
    mean, meansq = sums[:, 0] / count, sums[:, 1] / count
    return sums, count, np.sqrt(np.maximum(meansq - mean * mean, 0.0))
