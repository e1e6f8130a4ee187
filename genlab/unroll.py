"""A recurrent network unrolled over a number of steps: one feed-forward DAG of (group, step)
cells that shares its parameters with the recurrent network.

Any engine that runs DAGs can run a recurrent network through it. Its dependency-driven
executors then run the wavefront by themselves: a cell starts as soon as the cells it reads are
done (genlab.wavefront).
- The unrolled input group holds every step's features side by side (steps x n_inputs).
- A cell reading the input reads it through a block that is zero outside its step's columns.
- An edge of delay k from (s, t - k) exists only where t >= k: before that the source reads zeros.
- A cell left with no input at all (fed only by delayed edges, at the first steps) reads the
  input through an all-zero block, so that it still gives relu(bias), as through time.
- Cells that do not reach the output (the output group is read at the last step) are left out:
  they do not change the loss.

The parameters are shared: `shared` maps each parameter of the unrolled network to the recurrent
network's parameter it copies (with the columns an input block takes, or None for a zero block).
unrolled_params() makes the unrolled parameters, and summed_grads() folds the unrolled
gradients back: a shared parameter's gradient is the sum over its copies, as backpropagation
through time gives it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import checks
from .dag import reach
from .network import INPUT, OUTPUT, Network


@dataclass
class Unrolled:
    net: Network                     # the feed-forward network of cells
    steps: int
    cells: dict[tuple[int, int], int]  # (group, step) -> its group in `net`
    shared: dict[tuple, tuple | None]  # unrolled parameter key -> (recurrent key, column slice | None) or None


def unroll(net: Network, steps: int, time_major: bool = False) -> Unrolled:
    """The network `net` over `steps` steps as one DAG (see the module's docstring).

    time_major=True adds sequencing edges with all-zero blocks (no parameter behind them: they
    change no value and no shared gradient): from the last cell of each step to the first cells
    of the next, so that every schedule runs the steps one after another, each step's DAG level
    by level (the time-major baseline of the wavefront)."""
    steps = checks.integer(steps, "steps", 1)
    n_in = net.n_inputs
    order = [g for g in net.topological_order()[1:] if g != OUTPUT]
    live = live_cells(net, steps) - {(OUTPUT, steps - 1)}
    dag = Network(steps * n_in, net.n_outputs, dtype=net.dtype)
    cells = {(OUTPUT, steps - 1): OUTPUT}
    for t in range(steps):
        for g in order:
            if (g, t) in live:
                cells[(g, t)] = dag.add_group(net.widths[g], kind=net.kinds[g])
    shared: dict[tuple, tuple | None] = {}
    for (g, t), cell in sorted(cells.items(), key=lambda item: (item[0][1], item[1])):
        for s in net.inputs(g):
            k = net.delay(s, g)
            if t < k or (s != INPUT and (s, t - k) not in cells):
                continue  # reads zeros
            block = net.weights[(s, g)]
            if s == INPUT:
                columns = slice((t - k) * n_in, (t - k + 1) * n_in)
                weight = np.zeros((block.shape[0], steps * n_in), net.dtype)
                weight[:, columns] = block
                dag.connect(INPUT, cell, weight=weight)
                shared[("W", INPUT, cell)] = (("W", s, g), columns)
            else:
                dag.connect(cells[(s, t - k)], cell, weight=block)
                shared[("W", cells[(s, t - k)], cell)] = (("W", s, g), None)
        if not dag.inputs(cell):
            dag.connect(INPUT, cell, weight=np.zeros((net.widths[g], steps * n_in), net.dtype))
            shared[("W", INPUT, cell)] = None  # an all-zero block: no parameter behind it
        dag.biases[cell] = net.biases[g].copy()
        shared[("b", cell)] = (("b", g), None)
    if time_major:
        _sequence(dag, cells, steps, order, shared)
    dag.validate()
    return Unrolled(dag, steps, cells, shared)


def _sequence(dag: Network, cells: dict, steps: int, order: list[int], shared: dict) -> None:
    """Zero edges from step t's deepest cell to step t + 1's cells that read no other cell of
    their own step: step t + 1 then starts after all of step t."""
    level = dag.levels()
    for t in range(steps - 1):
        now = [cells[(g, t)] for g in order if (g, t) in cells]
        later = [cells[(g, t + 1)] for g in order if (g, t + 1) in cells]
        if not now or not later:
            continue
        last = max(now, key=lambda c: (level[c], c))
        same_step = set(later)
        for cell in later:
            if not any(s in same_step for s in dag.inputs(cell)) and last not in dag.inputs(cell):
                dag.connect(last, cell, weight=np.zeros((dag.widths[cell], dag.widths[last]), dag.dtype))
                shared[("W", last, cell)] = None


def live_cells(net: Network, steps: int, every_step: bool = False) -> set[tuple[int, int]]:
    """The (group, step) cells on a path to a cell where the output is read (the last step's, or
    with every_step each step's), those included."""
    order = [g for g in net.topological_order()[1:] if g != OUTPUT]
    reads = {}
    for t in range(steps):
        for g in order + [OUTPUT]:
            reads[(g, t)] = [(s, t - net.delay(s, g)) for s in net.inputs(g)
                             if s != INPUT and t >= net.delay(s, g)]
    live: set[tuple[int, int]] = set()
    for t in range(steps) if every_step else [steps - 1]:
        live |= reach((OUTPUT, t), reads)
    return live


def flatten(x: np.ndarray) -> np.ndarray:
    """Sequences (batch, steps, features) as the unrolled input: (batch, steps * features)."""
    x = np.asarray(x)
    return x.reshape(x.shape[0], -1)


def unrolled_params(u: Unrolled, params: dict) -> dict:
    """The unrolled network's parameters from the recurrent network's (keys as engines key them)."""
    out = {}
    for key, source in u.shared.items():
        if source is None:
            out[key] = np.zeros_like(u.net.weights[key[1:]])
            continue
        original, columns = source
        if columns is None:
            out[key] = params[original].copy()
        else:
            block = np.zeros_like(u.net.weights[key[1:]])
            block[:, columns] = params[original]
            out[key] = block
    return out


def summed_grads(u: Unrolled, grads: dict, like: dict) -> dict:
    """The recurrent network's gradients (keys of `like`) from the unrolled network's: each shared
    parameter's gradient summed over its copies (zero where no copy reached the output)."""
    out = {key: np.zeros_like(value) for key, value in like.items()}
    for key, source in u.shared.items():
        if source is not None:
            original, columns = source
            out[original] += grads[key] if columns is None else grads[key][:, columns]
    return out
