"""The wavefront (loop-skew) schedule of a recurrent network: which (group, step) cells can run
together.

A cell (g, t) needs the cells it reads: (s, t) over an edge without a delay, (s, t - k) over an
edge of delay k. Run as soon as those are done, cell (g, t) lands in stage 1 + the latest of
them (the input's cells are there from the start, stage 0). For L stacked recurrent layers over
T steps that is L + T - 1 stages where running step after step (time-major) takes L * T: the
cells on one anti-diagonal, "L0T0 -> (L1T0 || L0T1) -> (L2T0 || L1T1 || L0T2) -> ...", run
together. The serial engine runs its cells in either order with identical results (a test
checks it); the CUDA engine's schedules follow this plan.
"""

from __future__ import annotations

from .network import INPUT, OUTPUT, Network


def cells(net: Network, steps: int, every_step: bool = False) -> list[tuple[int, int]]:
    """The (group, t) cells of a run over `steps` steps, time-major (step after step, each in
    the order of its edges without a delay); the output group's only where it is read."""
    order = net.topological_order()[1:]
    return [(g, t) for t in range(steps) for g in order
            if g != OUTPUT or every_step or t == steps - 1]


def stages(net: Network, steps: int, every_step: bool = False) -> list[list[tuple[int, int]]]:
    """The wavefront schedule: stages of cells that can run together, in order."""
    stage: dict[tuple[int, int], int] = {}
    for g, t in cells(net, steps, every_step):
        needs = [stage.get((s, t - net.delay(s, g)), 0) for s in net.inputs(g)
                 if s != INPUT and t - net.delay(s, g) >= 0]
        stage[(g, t)] = 1 + max(needs, default=0)
    plan: list[list[tuple[int, int]]] = [[] for _ in range(max(stage.values(), default=0))]
    for cell, k in stage.items():
        plan[k - 1].append(cell)
    return plan


def time_major_stages(net: Network, steps: int, every_step: bool = False) -> int:
    """Dependent stages step after step: each step runs its DAG level by level."""
    levels = net.levels()
    depth = max(levels[g] for g in net.hidden_groups) if net.hidden_groups else 0
    return steps * depth + (steps if every_step else 1)


def ideal_speedup(net: Network, steps: int) -> float:
    """Time-major stages over wavefront stages of the hidden cells (L T / (L + T - 1) for L
    stacked layers): the most the wavefront can gain when a stage's cells run side by side in
    the time one cell takes."""
    hidden = [stage for stage in stages(net, steps) if any(g != OUTPUT for g, _ in stage)]
    return (time_major_stages(net, steps) - 1) / len(hidden)
