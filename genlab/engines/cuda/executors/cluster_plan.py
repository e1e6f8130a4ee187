"""The cluster executor's work records (cuda/cluster.cu), written on the host from the layout.

A record holds everything its warp reads and writes, so that the device follows no chain of
lookups through the topology: column offsets (times the batch capacity: group-major
activations), widths, weight and bias offsets, and a forward or backward record's edges inline
(the rest of a wide fan-in after the records). Phases, in order: each forward level, the loss,
each hidden level deepest first, the gradients (weight records, then bias records), the update.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..constants import CLUSTER_CHUNK as CQ
from ..constants import CLUSTER_RECORD as REC
from ..constants import CLUSTER_WARP_FLOATS
from ..constants import Phase
from ....errors import BackendError
from ..layout import Layout

INLINE = (REC - 8) // 3  # edges a forward or backward record holds itself
WEIGHT_ROWS, WEIGHT_COLUMNS = 16, 32  # a weight record's block of dW (a lane per column)
BIAS = 32  # neurons a bias record sums


@dataclass
class Plan:
    phases: np.ndarray  # (n, 4): kind, first record, records, weight records among them
    records: np.ndarray  # REC ints a record, then the edges that overflow them
    parts: int  # the output group's in-edges are summed in this many parts (the loss adds them)


def staged_floats(width: int) -> int:
    """Floats of a warp's buffer one in-edge of `width` takes in a forward round (cluster.cu)."""
    stride = width if (width // 4) % 2 else width + 4
    return 32 * stride + CQ * width


def output_parts(edges: list, width: np.ndarray, classes: int, room: int = CLUSTER_WARP_FLOATS) -> list[list]:
    """The output group's in-edges in parts, each as much as a warp stages in one round, so that
    its records run side by side; at most as many parts as the loss can stage with their sum
    (32 rows of `classes` each), one part when that is fewer than two."""
    most = room // (32 * classes) - 1
    parts: list[list] = [[]]
    used = 0
    for edge in edges:
        need = staged_floats(int(width[edge[0]]))
        if parts[-1] and used + need > room:
            parts.append([])
            used = 0
        parts[-1].append(edge)
        used += need
    if len(parts) > most:  # fewer, larger parts: deal the edges in turn
        parts = [edges[i::most] for i in range(most)] if most >= 2 else [edges]
    return parts


def edges(layout: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source slot, destination slot and weight offset of every edge, in edge-number order."""
    items = sorted(layout.edges.items(), key=lambda item: item[1])
    src = np.array([layout.slot[s] for (s, _), _ in items], np.int64)
    dst = np.array([layout.slot[d] for (_, d), _ in items], np.int64)
    woff = np.array([layout.offsets[("W", s, d)] for (s, d), _ in items], np.int64)
    return src, dst, woff


def levels(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Each slot's level: the longest path to it from a group without inputs."""
    level = np.zeros(n, np.int64)
    for _ in range(n):
        new = level.copy()
        np.maximum.at(new, dst, level[src] + 1)
        if np.array_equal(new, level):
            break
        level = new
    return level


class _Records:
    """The records of a plan as they are made: blocks of rows, the overflowing edges after them."""

    def __init__(self):
        self.blocks: list[np.ndarray] = []
        self.count = 0
        self.overflow: list[np.ndarray] = []
        self.overflow_size = 0
        self.spilled: list[np.ndarray] = []  # rows whose overflow offset counts from the records' end

    def add(self, rows: np.ndarray) -> None:
        self.blocks.append(rows)
        self.count += len(rows)

    def edges(self, head: np.ndarray, size: int, triples: np.ndarray) -> None:
        """A record per chunk of `size` neurons of one owner: head (6 ints; chunk start and
        length filled in), its edges (triples (other col, other width, weight offset)) inline
        and the rest in the overflow (shared by the owner's records)."""
        width = int(head[1])
        starts = np.arange(0, width, size)
        rows = np.zeros((len(starts), REC), np.int64)
        rows[:, :6] = head
        rows[:, 2], rows[:, 3] = starts, np.minimum(size, width - starts)
        rows[:, 6] = len(triples)
        inline = triples[:INLINE].reshape(-1)
        rows[:, 8:8 + len(inline)] = inline
        if len(triples) > INLINE:
            rows[:, 7] = self.overflow_size
            self.spilled.append(np.arange(self.count, self.count + len(rows)))
            rest = triples[INLINE:].reshape(-1)
            self.overflow.append(rest)
            self.overflow_size += len(rest)
        self.add(rows)

    def array(self) -> np.ndarray:
        flat = np.concatenate(self.blocks).reshape(-1) if self.blocks else np.zeros(0, np.int64)
        data = np.concatenate([flat, *self.overflow])
        for rows in self.spilled:  # overflow offsets count from the end of the records
            data[rows * REC + 7] += flat.size
        return data


def _tiles(n: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """For items of n[i] elements cut in pieces of `size`: each piece's item and start."""
    pieces = -(-n // size)
    item = np.repeat(np.arange(len(n)), pieces)
    first = np.repeat(np.cumsum(pieces) - pieces, pieces)
    return item, (np.arange(len(item)) - first) * size


def build(layout: Layout, update: bool = True) -> Plan:
    """The phases and records of a step of `layout`'s network (without the update phase when
    `update` is False: a data-parallel step updates after the replicas' sum)."""
    L = layout
    n, out = len(L.groups), L.output_slot
    src, dst, woff = edges(L)
    level = levels(n, src, dst)
    col, width = L.col_off.astype(np.int64), L.width.astype(np.int64)
    by_dst, by_src = np.argsort(dst, kind="stable"), np.argsort(src, kind="stable")
    in_ptr = np.concatenate([[0], np.cumsum(np.bincount(dst, minlength=n))])
    out_ptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))])
    triple = lambda other, e: np.stack([col[other[e]], width[other[e]], woff[e]], axis=1)
    recs = _Records()
    phases: list[tuple[int, int, int, int]] = []

    def phase(kind: Phase, first: int, n_weight: int = 0) -> None:
        if recs.count > first:
            phases.append((int(kind), first, recs.count - first, n_weight))

    depth = int(level[out])
    order = np.lexsort((np.arange(n), level))  # by level, then slot
    starts = np.searchsorted(level[order], np.arange(depth + 2))
    hidden = lambda lv: [int(s) for s in order[starts[lv]:starts[lv + 1]] if s not in (L.input_slot, out)]
    in_edges = [by_dst[in_ptr[s]:in_ptr[s + 1]] for s in range(n)]
    parts = output_parts([(int(src[e]), e) for e in in_edges[out]], width, int(width[out]))
    for lv in range(1, depth + 1):
        first = recs.count
        for s in hidden(lv):
            recs.edges(np.array([col[s], width[s], 0, 0, L.bias_off[s], 0]), CQ, triple(src, in_edges[s]))
        if lv == depth:  # the output group, whole (mode 1) or in parts (2 + p), the bias in the first
            for p, part in enumerate(parts):
                mode = 1 if len(parts) == 1 else 2 + p
                e = np.array([edge for _, edge in part], np.int64)
                recs.edges(np.array([col[out], width[out], 0, 0, L.bias_off[out] if p == 0 else -1, mode]), CQ,
                           triple(src, e))
        phase(Phase.FORWARD, first)
    phases.append((int(Phase.LOSS), 0, 0, 0))
    for lv in range(depth - 1, 0, -1):
        first = recs.count
        for s in hidden(lv):
            recs.edges(np.array([col[s], width[s], 0, 0, s, 0]), CQ, triple(dst, by_src[out_ptr[s]:out_ptr[s + 1]]))
        phase(Phase.BACKWARD, first)
    first = recs.count
    e_in = by_dst  # weight records edge by edge, in-edges of each slot in turn
    ws, wd = width[src[e_in]], width[dst[e_in]]
    rows_of, j0 = _tiles(wd, WEIGHT_ROWS)  # per (edge, j0): then every k0
    k_edge, k0 = _tiles(ws[rows_of], WEIGHT_COLUMNS)
    e, j0 = e_in[rows_of][k_edge], j0[k_edge]
    weight = np.zeros((len(e), REC), np.int64)
    weight[:, :10] = np.stack([col[src[e]], width[src[e]], col[dst[e]], width[dst[e]], woff[e], dst[e], j0,
                               np.minimum(WEIGHT_ROWS, width[dst[e]] - j0), k0,
                               np.minimum(WEIGHT_COLUMNS, width[src[e]] - k0)], axis=1)
    recs.add(weight)
    groups = np.array([s for s in range(n) if s != L.input_slot], np.int64)
    slot_of, b0 = _tiles(width[groups], BIAS)
    s_b = groups[slot_of]
    bias = np.zeros((len(s_b), REC), np.int64)
    bias[:, :6] = np.stack([col[s_b], width[s_b], b0, np.minimum(BIAS, width[s_b] - b0),
                            L.bias_off[s_b].astype(np.int64), s_b], axis=1)
    recs.add(bias)
    phase(Phase.GRADIENTS, first, len(weight))
    if update:
        phases.append((int(Phase.UPDATE), 0, 0, 0))
    data = recs.array()
    if data.max(initial=0) >= 2**31:
        raise BackendError("the network is too large for the cluster executor's records (offsets past 2^31)")
    return Plan(np.array(phases, np.int32).reshape(-1, 4), data.astype(np.int32), len(parts))
