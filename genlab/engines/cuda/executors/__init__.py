"""The executors of a training step on the CUDA engine, by name. Every one computes the same step
(tested against the serial engine); they differ in how it is scheduled.

Adding an executor: a module here with an Executor subclass, and one line in EXECUTORS.
"""

from __future__ import annotations

from ....errors import BackendError
from .base import Activations, Executor, Tier
from .cluster import Cluster
from .dataflow import Dataflow, DataflowBatch
from .level import Level, LevelBatch, LevelPush
from .rows import Rows

EXECUTORS: dict[str, type[Executor]] = {cls.name: cls for cls in (
    Level,          # one launch per level and tier of widths, pull backward
    LevelPush,      # the same, backward pushed into the sources (atomics)
    LevelBatch,     # the level executor over batch-major activations
    Dataflow,       # one persistent launch, TILE x batch-tile tasks on dependency counters
    DataflowBatch,  # the same over batch-major activations
    Rows,           # one persistent launch, items of CH neurons over the whole batch
    Cluster,        # one launch of one thread-block cluster, level by level with its barrier
)}
AUTO = "auto"  # not an executor: the engine picks one per shape of network (engines/cuda/choice.py)
# not an executor of DAGs either: recurrent networks of dense groups through cuda/wavefront.cu
# (engines/cuda/recurrent_wavefront.py); the DAG engine refuses it
WAVEFRONT = "wavefront"
DEFAULT = AUTO
NAMES = (AUTO, *EXECUTORS, WAVEFRONT)  # what executor= takes (the command line's choices)


def executor_class(name: str) -> type[Executor]:
    """The executor called `name`; BackendError naming the known ones if there is none."""
    if name == WAVEFRONT:
        raise BackendError(f"executor {WAVEFRONT!r} runs recurrent networks (edges with a delay) only; this network "
                           f"has none: choose {AUTO!r} or one of {', '.join(EXECUTORS)}")
    try:
        return EXECUTORS[name]
    except (KeyError, TypeError):
        raise BackendError(f"unknown executor {name!r}; choose {AUTO!r}, {WAVEFRONT!r} (recurrent networks) or one "
                           f"of {', '.join(EXECUTORS)}") from None


def check_name(name: str) -> str:
    """`name` if it names an executor or is "auto"; BackendError otherwise."""
    if name not in (AUTO, WAVEFRONT):
        executor_class(name)
    return name


__all__ = ["EXECUTORS", "AUTO", "DEFAULT", "NAMES", "WAVEFRONT", "check_name", "Activations", "Executor", "Tier",
           "executor_class"]
