"""The level executors: a training step as launches, one per topological level and tier of widths
(captured once in a CUDA graph and replayed).

    forward   level 1 .. depth: h of the level's groups from their sources'
    loss      softmax cross-entropy: loss, correct count, dz of the output group
    backward  the deepest hidden level first: dz of each group, pulled from its consumers' (level)
              or pushed by the consumers into their sources' blocks (level_push)
    gradients weight gradients (one launch per tier), bias gradients
    update    the optimizer, over every parameter (refused on the device if the step is not finite)

The pull executors cut groups into tiers of width: narrower than MID on TILE x TILE tiles
(forward.cu, backward.cu), MID to WIDE - 1 on MT x MT tiles, WIDE or more on WT x WT (wide.cu).
"""

from __future__ import annotations

from ....kinds import KINDS
from ....precision import ALL
from ..constants import MID, MT, TILE, WIDE, WT
from . import passes
from .base import Activations, Executor, Tier


class Level(Executor):
    name = "level"
    chunk = TILE
    precisions = ALL  # its tiles (forward.cu, backward.cu, wide.cu) are built per precision
    kinds = frozenset(KINDS)  # other kinds run their own kernels per level (passes.py, conv.cu, attention.cu)

    def tiers(self):
        return (Tier("", "", 0, TILE), Tier("mid_", "_mid", MID, MT), Tier("wide_", "_wide", WIDE, WT))

    def enqueue_step(self, batch: int) -> None:
        e = self.engine
        passes.forward(e, batch)
        passes.backward(e, batch)
        passes.update(e)


class LevelBatch(Level):
    """The level executor over batch-major activations (one row of every neuron per sample)."""

    name = "level_batch"
    activations = Activations.BATCH
    kinds = frozenset({"dense"})


class LevelPush(Level):
    """Backward by pushing: each group adds its dz W into its sources' blocks (atomics), then a
    finish pass per level masks and counts; one tier of TILE-neuron tasks."""

    name = "level_push"
    push = True
    kinds = frozenset({"dense"})

    def tiers(self):
        return (Tier("", "", 0, TILE),)
