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


def levels(layout: Layout) -> tuple[list[list[int]], list[list[int]], np.ndarray]:
    """Per slot its in-edges and out-edges as (other slot, weight offset), and its level (the
    longest path from the input group)."""
    n = len(layout.groups)
    ins: list[list] = [[] for _ in range(n)]
    outs: list[list] = [[] for _ in range(n)]
    for (s, d), _number in sorted(layout.edges.items(), key=lambda item: item[1]):
        a, b = layout.slot[s], layout.slot[d]
        w = layout.offsets[("W", s, d)]
        ins[b].append((a, w))
        outs[a].append((b, w))
    level = np.zeros(n, np.int64)
    pending = [len(i) for i in ins]
    ready = [s for s in range(n) if not pending[s]]
    while ready:
        s = ready.pop()
        for d, _ in outs[s]:
            level[d] = max(level[d], level[s] + 1)
            pending[d] -= 1
            if not pending[d]:
                ready.append(d)
    return ins, outs, level


def build(layout: Layout, update: bool = True) -> Plan:
    """The phases and records of a step of `layout`'s network (without the update phase when
    `update` is False: a data-parallel step updates after the replicas' sum)."""
    L = layout
    ins, outs, level = levels(L)
    col, width = L.col_off.astype(np.int64), L.width.astype(np.int64)
    records: list[list[int]] = []
    overflow: list[int] = []
    spilled: list[int] = []  # records whose edges go on past INLINE
    phases: list[tuple[int, int, int, int]] = []

    def edges_record(head: list[int], edges: list[tuple[int, int]]) -> None:
        triples = [(int(col[o]), int(width[o]), int(w)) for o, w in edges]
        at = len(overflow)
        if len(triples) > INLINE:
            spilled.append(len(records))
        for t in triples[INLINE:]:
            overflow.extend(t)
        rec = head + [len(triples), at] + [v for t in triples[:INLINE] for v in t]
        records.append(rec + [0] * (REC - len(rec)))

    def phase(kind: Phase, first: int, n_weight: int = 0) -> None:
        phases.append((int(kind), first, len(records) - first, n_weight))

    depth = int(level[L.output_slot])
    by_level = [[s for s in range(len(L.groups)) if level[s] == lv and s != L.input_slot] for lv in range(depth + 1)]
    out = L.output_slot
    parts = output_parts(ins[out], width, int(width[out]))
    for lv in range(1, depth + 1):
        first = len(records)
        for s in by_level[lv]:
            w = int(width[s])
            # mode: 0 a hidden group (ReLU), 1 the output group whole, 2 + p its part p (the loss sums them)
            for p, edges in enumerate(parts if s == out else [ins[s]]):
                mode = 0 if s != out else 1 if len(parts) == 1 else 2 + p
                for j0 in range(0, w, CQ):
                    edges_record([int(col[s]), w, j0, min(CQ, w - j0), int(L.bias_off[s]) if p == 0 else -1, mode],
                                 edges)
        if len(records) > first:
            phase(Phase.FORWARD, first)
    phases.append((int(Phase.LOSS), 0, 0, 0))
    for lv in range(depth - 1, 0, -1):
        first = len(records)
        for s in by_level[lv]:
            if s == L.output_slot:
                continue
            for k0 in range(0, int(width[s]), CQ):
                edges_record([int(col[s]), int(width[s]), k0, min(CQ, int(width[s]) - k0), s, 0], outs[s])
        if len(records) > first:
            phase(Phase.BACKWARD, first)
    first = len(records)
    for d in range(len(L.groups)):
        for s, w in ins[d]:
            ws, wd = int(width[s]), int(width[d])
            for j0 in range(0, wd, WEIGHT_ROWS):
                for k0 in range(0, ws, WEIGHT_COLUMNS):
                    rec = [int(col[s]), ws, int(col[d]), wd, int(w), d, j0, min(WEIGHT_ROWS, wd - j0), k0,
                           min(WEIGHT_COLUMNS, ws - k0)]
                    records.append(rec + [0] * (REC - len(rec)))
    n_weight = len(records) - first
    for s in range(len(L.groups)):
        if s != L.input_slot:
            for j0 in range(0, int(width[s]), BIAS):
                rec = [int(col[s]), int(width[s]), j0, min(BIAS, int(width[s]) - j0), int(L.bias_off[s]), s]
                records.append(rec + [0] * (REC - len(rec)))
    phase(Phase.GRADIENTS, first, n_weight)
    if update:
        phases.append((int(Phase.UPDATE), 0, 0, 0))
    flat = np.array(records, np.int64).reshape(-1)
    data = np.concatenate([flat, np.array(overflow, np.int64)])
    for r in spilled:  # overflow offsets count from the end of the records
        data[r * REC + 7] += flat.size
    if data.max(initial=0) >= 2**31:
        raise ValueError("the network is too large for the cluster executor's records")
    return Plan(np.array(phases, np.int32).reshape(-1, 4), data.astype(np.int32), len(parts))
