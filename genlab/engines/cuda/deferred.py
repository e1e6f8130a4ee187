"""Work an executor leaves pending after a step, and the one rule that keeps it out of sight.

The row executors (executors/rows.py) leave each step's update pending: the next step's first
items apply it as they stage the weights, which saves a pass over the parameters. Anything else
that reads or replaces the parameters or the optimizer state, runs launches outside a step, or
changes what a step is must see them updated first. That is settled here, in one way:

- `@settled` marks such an entry point (a method of the engine, or a function whose first
  argument is the engine): the engine's pending work is applied (`engine.flush()`) before it
  runs. The executor says what is pending and how to apply it (`Executor.flush`).
- What does not settle is declared by the engine (`keeps_pending`): the step's own path and what
  reads only the step's sums. tests/test_deferred.py fails on a public method or property of a
  CUDA engine that is in neither, so a new entry point is one or the other by decision.
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


def settled(fn: F) -> F:
    """fn, run once its engine (first argument) has applied what its executor left pending."""
    @functools.wraps(fn)
    def run(engine, *args, **kwargs):
        engine.flush()
        return fn(engine, *args, **kwargs)

    run.settles = True
    return run  # type: ignore[return-value]


def settles(member) -> bool:
    """Whether a class member (a function or a property) is marked @settled."""
    fn = member.fget if isinstance(member, property) else member
    return bool(getattr(fn, "settles", False))
