"""What each process of a partitioned network computes, level by level, and what it exchanges.

A process (a part of genlab.partition's Partition) computes its groups of a level together: one
gather of their inputs from the tensors it holds, one batched matmul (zero-padded to the level's
widest group and largest fan-in), one ReLU. The tensors it holds are keyed:

    ("in",)          the batch
    ("own", l)       its level l's output, a row of len(groups) * w_max columns per sample
    ("from", p, l)   the columns of process p's level l that its groups read, received after p
                     computed level l

Every process builds the plan of every process (plan()), so sender and receiver agree on the
columns of each message without a word. Messages between two processes go in level order both
ways (forward: h; backward: dL/dh), which keeps them matched and free of deadlock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..network import INPUT, OUTPUT, Network
from ..partition import Partition

Key = tuple


@dataclass
class LevelPlan:
    """One process's work at one level."""

    groups: list[int]                # its groups at this level, in order (column blocks of w_max)
    w_max: int
    k_max: int
    sources: list[Key]               # the tensors its inputs come from, concatenated in this order
    index: np.ndarray                # (len(groups) * k_max,) columns of that concatenation (+ a zero column)
    blocks: list[tuple] = field(default_factory=list)  # (("W", s, g), i, first row, rows, cols)
    sends: dict[int, np.ndarray] = field(default_factory=dict)  # process -> columns of the output it reads

    @property
    def output(self) -> bool:
        return self.groups == [OUTPUT]


@dataclass
class Plan:
    """A process's levels, the messages it receives, and where each group's output lives."""

    rank: int
    levels: dict[int, LevelPlan]                   # level -> its work there (levels it has groups on)
    receives: dict[int, dict[int, int]]            # level -> {process: columns received after that level}
    depth: int

    def keys(self) -> list[Key]:
        """The parameter keys this process holds and updates (its groups' in-edges and biases)."""
        return [key for lp in self.levels.values() for key, *_ in lp.blocks] + \
               [("b", g) for lp in self.levels.values() for g in lp.groups]


def plan(net: Network, partition: Partition, rank: int) -> Plan:
    """The plan of process `rank` under `partition` (every process computes the same plans)."""
    level, parts = net.levels(), partition.parts
    depth = level[OUTPUT]
    own = {}  # (process, level) -> its groups there
    for g in sorted(parts, key=lambda g: (level[g], g)):
        own.setdefault((parts[g], level[g]), []).append(g)
    w_max = {key: max(net.widths[g] for g in groups) for key, groups in own.items()}
    at = {g: (p, lv, i * w_max[(p, lv)]) for (p, lv), groups in own.items() for i, g in enumerate(groups)}
    # what each (sender, level) sends to each process: its groups read there, in order
    readers: dict[tuple, dict[int, list[int]]] = {}
    for (p, lv), groups in own.items():
        for g in groups:
            for d in net.outputs(g):
                if parts[d] != p:
                    readers.setdefault((p, lv), {}).setdefault(parts[d], [])
                    if g not in readers[(p, lv)][parts[d]]:
                        readers[(p, lv)][parts[d]].append(g)
    received = {}  # (receiver, sender, level) -> {group: first column in the message}
    for (p, lv), by_reader in readers.items():
        for q, groups in by_reader.items():
            starts = np.cumsum([0] + [net.widths[g] for g in groups[:-1]])
            received[(q, p, lv)] = dict(zip(groups, starts.tolist()))
    def columns(key):  # the columns of a tensor this process holds
        if key[0] == "in":
            return net.n_inputs
        if key[0] == "own":
            return len(own[(rank, key[1])]) * w_max[(rank, key[1])]
        return sum(net.widths[g] for g in received[(rank, key[1], key[2])])

    levels = {}
    for (p, lv), groups in own.items():
        if p == rank:
            levels[lv] = _level(net, groups, w_max[(p, lv)], rank, at, received, columns)
            levels[lv].sends = {q: np.concatenate([np.arange(at[g][2], at[g][2] + net.widths[g]) for g in gs])
                                for q, gs in readers.get((p, lv), {}).items()}
    receives: dict[int, dict[int, int]] = {}
    for (q, p, lv), columns in received.items():
        if q == rank:
            receives.setdefault(lv, {})[p] = sum(net.widths[g] for g in columns)
    return Plan(rank, dict(sorted(levels.items())), dict(sorted(receives.items())), depth)


def _level(net: Network, groups: list[int], w_max: int, rank: int, at, received, columns) -> LevelPlan:
    """The gather index and the parameter blocks of one process's groups at one level."""
    def where(s):  # (tensor key, first column) of source s as this process sees it
        if s == INPUT:
            return ("in",), 0
        p, slv, col = at[s]
        return (("own", slv), col) if p == rank else (("from", p, slv), received[(rank, p, slv)][s])

    located = {s: where(s) for g in groups for s in net.inputs(g)}
    sources = sorted({key for key, _ in located.values()}, key=_order)
    sizes = {key: columns(key) for key in sources}
    base = dict(zip(sources, np.cumsum([0] + [sizes[k] for k in sources[:-1]]).tolist()))
    zero = sum(sizes.values())
    k_max = max(sum(net.widths[s] for s in net.inputs(g)) for g in groups)
    index = np.full((len(groups), k_max), zero, np.int64)
    blocks = []
    for i, g in enumerate(groups):
        k = 0
        for s in net.inputs(g):
            key, col = located[s]
            index[i, k:k + net.widths[s]] = base[key] + col + np.arange(net.widths[s])
            blocks.append((("W", s, g), i, k, net.widths[s], net.widths[g]))
            k += net.widths[s]
    return LevelPlan(groups, w_max, k_max, sources, index.ravel(), blocks)


def _order(key: Key) -> tuple:
    return (key[0], *key[1:])
