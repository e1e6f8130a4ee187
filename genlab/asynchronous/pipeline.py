"""Synthetic gradients pipelined over successive minibatches: DNI(cuts, pipelined=True).

With the parts' backwards decoupled (dni.py), what still ties them together is the forward: a
later part reads what an earlier one computed on the same batch. Pipelined, each part works on
its own batch: at step t, stage q (the q-th part that has groups) runs its forward and backward
on batch t - q, reading the earlier stages' groups (and the input) as they were for that batch,
kept from the steps before. No stage then waits for another within a step, so on the GPU every
stage's forward and backward run side by side (engines/cuda/pipelined.py).

    step t    stage 0: forward, backward (synthetic gradients at its boundary groups) of batch t
              stage 1: forward of batch t - 1 from stage 0's groups kept at step t - 1, backward
              ...
              the last stage's loss and correct count are of batch t - (stages - 1)
    modules   a boundary group's module learns from the stage that reads it: its truth of that
              stage's batch, against the group's activations of that batch (kept) and the
              module's prediction of them now
    after     the step's activations of the groups later stages read are kept (rings of as
              many batches as the furthest reader is stages away), as are its labels

The first step after the engine takes a network (a start, growth, a checkpoint) or after a
refused step runs unpipelined (every stage on that batch) and fills the rings with it; batches
in flight then are not finished by the later stages. forward(),
backward() and update() called one by one run the unpipelined step. Each boundary group must be
read by one later stage (its module's truth is of one batch): GraphError otherwise.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from ..cuts import Stages
from ..errors import BackendError
from ..network import INPUT, Network
from .decoupled import DecoupledEngine


class PipelinedEngine(DecoupledEngine):
    """The serial DNI engine with its stages pipelined over successive batches (module text): the
    reference the CUDA engine's pipelined step is checked against."""

    def __init__(self, *args, **kwargs):
        self.rings: dict[int, deque] = {}  # {group read later: its activations of the last steps, newest first}
        self.labels: deque = deque()  # the labels of the last steps, newest first
        self.fresh, self._piping, self._now = True, False, None
        self.scored: int | None = None
        super().__init__(*args, **kwargs)

    def load(self, net: Network) -> None:
        super().load(net)
        self.stages = Stages.of(net, self.part)
        self.rings, self.labels, self.fresh = {}, deque(), True

    # the forward's and the backward's hooks
    def source(self, h, s, g):
        back = self.stages.seen(s, g) if self._piping else 0
        return self.rings[s][back - 1] if back else h[s]

    def received(self, g, grad_out, h, y):
        if not self._piping or g not in self.boundary:
            return super().received(g, grad_out, h, y)
        st = self.stages
        module = self.module(g, h[0].size)
        q = st.reader[g]
        seen, y_seen = self.rings[g][q - st.stage[g] - 1], self.labels_of(q)
        self._pending[g] = (seen, y_seen, self._true.pop(g) * len(seen), module.predict(seen, y_seen))
        synthetic = module.predict(h, self.labels_of(st.stage[g])) / len(h)
        return synthetic if grad_out is None else grad_out + synthetic

    def labels_of(self, stage: int) -> np.ndarray:
        """The labels of the batch the stage works on this step."""
        return self._now if stage == 0 else self.labels[stage - 1]

    def step(self, x, y, replicas=None):
        if replicas is not None:
            raise BackendError("pipelined synthetic gradients run in one process, not data-parallel")
        if self.fresh:
            out, self.scored = super().step(x, y), None
        else:
            self._now, self._piping = np.asarray(y), True
            top = self.labels_of(self.stages.depth)
            try:
                out = super().step(x, top)
            except BaseException:
                self.fresh = True  # a refused step restarts the pipeline
                raise
            finally:
                self._piping = False
            self.scored = len(top)
        self._keep(y)
        return out

    def _keep(self, y) -> None:
        """The step's activations that later stages read, and its labels, into the rings."""
        st = self.stages
        for s, d in st.delay.items():
            now = np.array(self._h[s]) if s == INPUT else self._h[s]  # the caller's x may change
            if self.fresh:
                self.rings[s] = deque([now] * d, maxlen=d)
            else:
                self.rings[s].appendleft(now)
        y = np.array(y)
        if self.fresh:
            self.labels = deque([y] * st.depth, maxlen=max(st.depth, 1))
        else:
            self.labels.appendleft(y)
        self.fresh = False
