"""The output group's split-K: a network whose output group reads many groups (a wide random DAG,
or a network grown wide) would run the output's forward as one long task a tile, so its in-edges
are cut over several tasks, `Executor.split` in-edges each. Part q writes its sums into its own
block of `output_parts` (batch capacity rows of the output's width; the part holding the first
in-edge adds the bias), and the parts are added into the logits in part order (loss.cu's
sum_output_parts: a launch of sum_parts after the forward levels, or the persistent kernels'
loss items), so the logits are the same whichever part finished first.

Only where the output's tasks are the first tier's: an output of MT neurons or more is a wide
tier's tile, whose own split-K (split.py) is already deterministic."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..constants import TILE
from ..records import addr

if TYPE_CHECKING:
    from ..context import PassContext
    from ..layout import Layout
    from ..memory import Memory
    from .base import Executor


def count(executor: "Executor", layout: "Layout") -> int:
    """Parts the output group's in-edges are cut into (1: not cut)."""
    wider = [t.lowest for t in executor.tiers() if t.lowest]
    if not executor.splits_output(layout) or (wider and layout.width[layout.output_slot] >= min(wider)):
        return 1
    return -(-layout.output_fan_in // executor.split)


def scratch(executor: "Executor", layout: "Layout", cap: int, mem: "Memory") -> dict:
    """The parts' blocks for `cap` rows, allocated from `mem` (nothing where the output is not cut)."""
    n = count(executor, layout)
    if n == 1:
        return {}
    return {"output_parts": mem.new(4 * n * cap * int(layout.width[layout.output_slot]), "the output's split-K parts")}


def arguments(e: "PassContext") -> dict:
    """forward_level's arguments for the parts, by name: split, the parts' blocks (null where not
    cut), their rows."""
    return {"split": np.int32(e.executor.split), "parts": e.dev.rows.output_parts, "cap": np.int32(e.batch_cap)}


def persistent_arguments(e: "PassContext") -> tuple:
    """A persistent kernel's: the parts' blocks (null where not cut), their number, their rows."""
    return (e.dev.rows.output_parts, np.int32(count(e.executor, e.layout)), np.int32(e.batch_cap))


def enqueue_sum(e: "PassContext", batch: int, launch=None) -> None:
    """The logits of the first `batch` rows from the parts, in part order (after the forward
    levels, before anything reads them); nothing where the output is not cut."""
    n = count(e.executor, e.layout)
    if n == 1:
        return
    L, r = e.layout, e.dev.rows
    (launch or e.launch).keyed("sum_parts", (-(-batch // TILE), 1), dict(
        parts=r.output_parts, n=np.int32(n), cap=np.int32(e.batch_cap), batch=np.int32(batch),
        w=np.int32(L.width[L.output_slot]), logits=addr(r.act, e.block(L.output_slot)), ld=np.int32(e.ld)))
