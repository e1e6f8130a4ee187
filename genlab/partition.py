"""Partitions of a network over several devices: which groups each one holds, what crosses.

A partition puts every group but the input on one of n parts (the input is on all of them: each
holds the batch). An edge between parts is a cut edge: its source's h goes forward across it and
dL/dh comes back, so a step moves 8 bytes per value of the source per sample, once per source and
remote part. Two candidates are made and the better one taken:

- "pipeline": the levels in order, cut where the work so far reaches 1/n, 2/n, ... of the total
  (layered networks: every cut edge points to a later part);
- "metis": METIS's k-way partition (pymetis) of the undirected graph, each group weighted by its
  work and each edge by its bytes: it minimises the bytes crossing for a given balance.

The better: the least bytes among those whose imbalance (the busiest part's work over the mean)
is within `tolerance`, else the best balanced. After growth, extend() gives each new group the
part most of its neighbours are on, and needs_repartition() says when the balance has drifted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import checks, shapes
from .errors import ArgumentError
from .network import INPUT, Network



@dataclass(frozen=True)
class Partition:
    """Which part each group is on (the input group: on every part), and what that costs."""

    parts: dict[int, int]
    n_parts: int
    method: str
    work: tuple[float, ...] = field(default=())  # FLOPs of a sample's forward pass, per part
    cut_edges: tuple[tuple[int, int], ...] = ()
    cut_bytes: int = 0  # bytes a step moves between parts, per sample (h forward, dL/dh back)

    @property
    def imbalance(self) -> float:
        """The busiest part's work over the mean part's (1.0: perfectly even)."""
        mean = sum(self.work) / self.n_parts
        return max(self.work) / mean if mean else 1.0


def group_work(net: Network, g: int) -> float:
    """FLOPs of one sample's forward pass through group g: its in-edges' blocks at each position
    (a conv group's output grid, a sequence network's tokens), plus an attention group's own."""
    positions = math.prod(net.sample_shape(g)[1:]) if shapes.spatial(net, g) else shapes.tokens(net)
    work = sum(2.0 * net.weights[(s, g)].size * positions for s in net.inputs(g))
    extra = net.biases[g].size - net.widths[g]  # an attention group's projections
    if extra:
        work += 2.0 * extra * positions + 4.0 * positions * positions * net.widths[g]
    return work


def edge_bytes(net: Network, src: int) -> int:
    """Bytes a step moves per sample when src's output crosses to another part: h, then dL/dh."""
    return 8 * math.prod(net.sample_shape(src))


def _costed(net: Network, parts: dict[int, int], n_parts: int, method: str) -> Partition:
    work = [0.0] * n_parts
    for g, p in parts.items():
        work[p] += group_work(net, g)
    cut = tuple((s, d) for s, d in net.edges if s != INPUT and parts[s] != parts[d])
    crossings = {(s, parts[d]) for s, d in cut}  # a source sends once to each remote part
    return Partition(dict(parts), n_parts, method, tuple(work), cut, sum(edge_bytes(net, s) for s, _ in crossings))


def pipeline(net: Network, n_parts: int) -> Partition:
    """Levels in order, cut where the cumulative work reaches k / n_parts of the total."""
    level = net.levels()
    groups = sorted((g for g in net.groups if g != INPUT), key=lambda g: (level[g], g))
    by_level: dict[int, float] = {}
    for g in groups:
        by_level[level[g]] = by_level.get(level[g], 0.0) + group_work(net, g)
    total, done, part, part_of_level = sum(by_level.values()), 0.0, 0, {}
    for lv in sorted(by_level):
        # a new part starts where this level's middle passes the next k / n boundary
        while part < n_parts - 1 and done + by_level[lv] / 2 > total * (part + 1) / n_parts and done > 0:
            part += 1
        part_of_level[lv] = part
        done += by_level[lv]
    return _costed(net, {g: part_of_level[level[g]] for g in groups}, n_parts, "pipeline")


def metis(net: Network, n_parts: int) -> Partition:
    """METIS's k-way partition (pymetis), groups weighted by work, edges by bytes."""
    try:
        import pymetis
    except ImportError:
        raise ArgumentError("the metis partition needs pymetis: pip install 'genlab[multi]' (or pymetis)") from None
    groups = [g for g in net.groups if g != INPUT]
    index = {g: i for i, g in enumerate(groups)}
    neighbours: list[dict[int, int]] = [{} for _ in groups]
    for s, d in net.edges:
        if s != INPUT:
            w = edge_bytes(net, s)
            for a, b in ((s, d), (d, s)):
                neighbours[index[a]][index[b]] = neighbours[index[a]].get(index[b], 0) + w
    work = np.array([group_work(net, g) for g in groups])
    scale = 1000.0 / max(work.max(), 1.0)  # METIS takes integers: a part in a thousand of the largest group
    adjacency = [sorted(n) for n in neighbours]
    _, membership = pymetis.part_graph(
        n_parts, adjacency=adjacency, vweights=[max(1, int(round(w * scale))) for w in work],
        eweights=[neighbours[i][j] for i, adj in enumerate(adjacency) for j in adj])
    return _costed(net, {g: int(membership[index[g]]) for g in groups}, n_parts, "metis")


def given(net: Network, parts: dict[int, int], n_parts: int) -> Partition:
    """A partition you choose ({group: part} for every group but the input), with its costs."""
    missing = set(net.groups) - {INPUT} - set(parts)
    if missing or any(not 0 <= p < n_parts for p in parts.values()):
        raise ArgumentError(f"a partition puts every group but the input on a part 0..{n_parts - 1}"
                            + (f"; groups {sorted(missing)} have none" if missing else ""))
    return _costed(net, parts, n_parts, "given")


METHODS = {"pipeline": pipeline, "metis": metis}


def plan(net: Network, n_parts: int, tolerance: float = 1.1, methods=tuple(METHODS)) -> Partition:
    """The better of the candidate partitions (module docstring); pymetis missing: the pipeline."""
    n_parts = checks.integer(n_parts, "n_parts", 1)
    groups = len(net.groups) - 1
    if n_parts > groups:
        raise ArgumentError(f"{n_parts} parts for {groups} groups: at most one part a group")
    tolerance = checks.real(tolerance, "tolerance", 1.0)
    candidates, missing = [], None
    for method in methods:
        if method not in METHODS:
            raise ArgumentError(f"unknown partition method {method!r}; choose from {', '.join(METHODS)}")
        try:
            candidates.append(METHODS[method](net, n_parts))
        except ArgumentError as e:  # pymetis is not installed
            missing = e
    if not candidates:
        raise missing
    return min(candidates, key=lambda p: (p.imbalance > tolerance, p.cut_bytes, p.imbalance))


def extend(partition: Partition, net: Network) -> Partition:
    """The partition of `net` grown from the partitioned one: each new group on the part most of
    its placed neighbours are on (the lowest on a tie), groups gone dropped."""
    parts = {g: p for g, p in partition.parts.items() if g in net.widths}
    for g in sorted(set(net.groups) - set(parts) - {INPUT}):
        votes = [parts[n] for n in net.inputs(g) + net.outputs(g) if n in parts]
        parts[g] = min(set(votes), key=lambda p: (-votes.count(p), p)) if votes else 0
    return _costed(net, parts, partition.n_parts, partition.method)


def needs_repartition(partition: Partition, net: Network, tolerance: float = 1.1) -> bool:
    """Whether the partition, extended to `net`, is out of balance: time to plan again."""
    return extend(partition, net).imbalance > tolerance
