"""The executor interface: how one training step is scheduled on the GPU.

An executor reads top to bottom in its own module: what it launches, in which order, with which
task lists. The engine owns the device state (engine.dev: typed records, records.py), the layout
and the stream; an executor is given the engine, reads it through an ExecutorContext
(context.py), and adds what its schedule needs (dependency counters, an order of work items, a
deferred update). Every executor computes the same step as the serial engine; forward(),
backward() and update() called one by one always run the level passes (passes.py) in the
executor's layout.
"""

from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ....errors import BackendError
from ....precision import DEFAULT as FP32
from ....precision import Precision
from ..constants import SPLIT
from . import output_parts, split

if TYPE_CHECKING:
    from ..context import ExecutorContext
    from ..layout import Layout
    from ..records import Record


class Activations(Enum):
    """Where element (row b, neuron j) of a group lives (cuda/genlab.cuh)."""

    GROUP = "group"  # each group's block contiguous (batch x width), act_off = col_off * capacity
    BATCH = "batch"  # one row of every neuron per sample, act_off = col_off

    def block_scale(self, capacity: int) -> int:
        """act_off[s] = col_off[s] * this."""
        return capacity if self is Activations.GROUP else 1


@dataclass(frozen=True)
class Tier:
    """Groups of `lowest` neurons or more (up to the next tier's) and how their tasks are cut:
    task lists named with `prefix`, kernels named with `suffix` ("" for the first tier's
    forward_level, backward_level, weight_grad), `size` neurons a task."""

    prefix: str
    suffix: str
    lowest: int
    size: int


class Executor(ABC):
    """One schedule of a training step. Subclasses set the class attributes and enqueue_step."""

    name: ClassVar[str]
    activations: ClassVar[Activations] = Activations.GROUP
    push: ClassVar[bool] = False  # backward: consumers scatter dL/dh into sources (else sources pull)
    chunk: ClassVar[int]  # neurons per forward / backward task of the first tier
    kinds: ClassVar[frozenset[str]] = frozenset({"dense"})  # the group kinds it can run
    traces: ClassVar[bool] = False  # trace_step gives a timeline of its work items
    # the precisions its products offer (genlab.precision): fp32 only unless its items are the
    # tiles of forward.cu, backward.cu and wide.cu, built per precision
    precisions: ClassVar[frozenset[Precision]] = frozenset({FP32})
    split: ClassVar[int] = SPLIT  # in-edges a forward task of the output group (split-K) at most

    engine: "ExecutorContext"  # what it reads of the engine (context.py), held weakly

    def __init__(self, engine: "ExecutorContext"):
        if engine.precision not in self.precisions:
            offered = ", ".join(sorted(p.value for p in self.precisions))
            raise BackendError(f"the {self.name} executor computes in {offered}, not {engine.precision.value}; "
                               "executor='auto' picks among those that offer it")
        # a weak reference: the engine holds its executor, and an engine replaced (Trainer.reset)
        # must give its device memory back at once, not at the next cyclic garbage collection
        self.engine = weakref.proxy(engine)

    def tiers(self) -> tuple[Tier, ...]:
        """The tiers of widths, each with its own task lists (one tier unless a schedule splits)."""
        return (Tier("", "", 0, self.chunk),)

    def splits_output(self, layout: "Layout") -> bool:
        """Whether the output group's in-edges are cut over several forward tasks (output_parts.py)."""
        return layout.output_fan_in > self.split

    @classmethod
    def least_ms(cls, layout: "Layout", batch: int, engine: "ExecutorContext") -> float:
        """A lower bound of this executor's step on `layout` at `batch` rows, in ms, from what it
        cannot do faster whatever the network (0.0: none known). executor="auto"'s trial skips an
        executor whose bound already loses to an executor it has timed."""
        return 0.0

    def counter_words(self, n_slots: int, batch: int) -> int:
        """32-bit words of dependency counters the step needs (0: none)."""
        return 0

    def batch_scratch(self, layout: "Layout", cap: int) -> dict:
        """Buffers of its own that follow from the layout and the batch capacity (made with the
        activations; fields of records.Rows by name): the split-K scratch of an MT tier
        (split.py), where its tiers have one, and the output group's parts (output_parts.py),
        where its in-edges are cut."""
        return {**split.scratch(layout, self.tiers(), cap, self.engine.mem),
                **output_parts.scratch(self, layout, cap, self.engine.mem)}

    def topology_buffers(self, layout: "Layout") -> "Record | None":
        """Lists of its own that follow from the topology (built with the task lists), as a record
        of its module's (DeviceState.own), or None."""
        return None

    @abstractmethod
    def enqueue_step(self, batch: int) -> None:
        """Enqueue forward, loss, backward, gradients and update of one step on the engine's stream."""

    def enqueue_gradients(self, batch: int) -> None:
        """A step up to its gradients, without its own update (a data-parallel step sums the
        gradients over the replicas in between): the level passes, unless a schedule does better."""
        from . import passes

        passes.forward(self.engine, batch)
        passes.backward(self.engine, batch)

    def enqueue_update(self) -> None:
        """The update enqueue_gradients left out."""
        from . import passes

        passes.update(self.engine)

    def graph_key(self) -> tuple:
        """What, beyond the batch and optimizer, makes a captured step differ."""
        return ()

    def before_step(self) -> None:
        """Host work before a step's graph is replayed."""

    def after_step(self, finite: bool) -> None:
        """Host work after a step (finite: its loss and gradients were finite, so it was applied)."""

    def flush(self) -> None:
        """Apply whatever the schedule left pending, before anything reads or replaces parameters."""

    def trace_step(self, x: np.ndarray, y: np.ndarray) -> dict:
        raise BackendError(f"the {self.name} executor keeps no timeline of its items; trace_step follows "
                           "dataflow_rows")

    def check_kinds(self, kinds) -> None:
        """BackendError naming the group kinds of the network this executor cannot run."""
        missing = sorted(set(kinds) - self.kinds)
        if missing:
            raise BackendError(f"the {self.name} executor cannot run groups of kind {', '.join(missing)}; "
                               f"it runs {', '.join(sorted(self.kinds))}")
