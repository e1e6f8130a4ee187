"""The cluster executor's records (genlab/engines/cuda/executors/cluster_plan.py), on the host:
they cover every output, weight and bias exactly once, in an order where every record reads
only what earlier phases wrote."""

import numpy as np
import pytest

from genlab import INPUT, Network
from genlab.engines.cuda.constants import CLUSTER_RECORD as REC
from genlab.engines.cuda.constants import CLUSTER_WARP_FLOATS
from genlab.engines.cuda.constants import Phase
from genlab.engines.cuda.executors.cluster_plan import INLINE, build, levels
from genlab.engines.cuda.executors.cluster_plan import edges as edge_arrays
from genlab.engines.cuda.layout import Layout

NETS = [
    lambda: Network.mlp([64, 32, 10], seed=0),
    lambda: Network.random_dag(5, 10, 16, 4, seed=0),
    lambda: Network.random_dag(4, 12, (1, 40), (INLINE + 2, 30), seed=77, n_inputs=37, n_outputs=7),
    lambda: Network.random_dag(2, 40, 8, 2, seed=5, n_outputs=3),  # 40 sinks: many parts of the output
    lambda: Network.random_dag(2, 30, 12, 2, seed=6, n_outputs=90),  # too many classes to split the output
]


def records(plan, first, count):
    return [plan.records[r * REC:(r + 1) * REC] for r in range(first, first + count)]


def edges_of(plan, rec):
    n = int(rec[6])
    inline = [tuple(rec[8 + 3 * i:11 + 3 * i]) for i in range(min(n, INLINE))]
    at = int(rec[7])
    return inline + [tuple(plan.records[at + 3 * i:at + 3 * i + 3]) for i in range(n - len(inline))]


@pytest.mark.parametrize("make", NETS)
def test_records_cover_every_output_weight_and_bias_once_in_dependency_order(make):
    net = make()
    L = Layout(net)
    plan = build(L)
    src, dst, woff = edge_arrays(L)
    n = len(L.groups)
    ins, outs = [[] for _ in range(n)], [[] for _ in range(n)]
    for a, b, w in zip(src, dst, woff):
        ins[b].append((a, w))
        outs[a].append((b, w))
    level = levels(n, src, dst)
    col = {int(L.col_off[s]): s for s in range(len(L.groups))}
    kinds = [Phase(int(k)) for k in plan.phases[:, 0]]
    assert kinds[-1] is Phase.UPDATE and kinds[-2] is Phase.GRADIENTS and Phase.LOSS in kinds
    assert len(build(L, update=False).phases) == len(plan.phases) - 1
    written = {L.input_slot}  # slots whose h (forward) is complete
    forward_cover = {s: np.zeros(int(L.width[s]), int) for s in range(len(L.groups)) if s != L.input_slot}
    for kind, first, count, _ in plan.phases:
        if Phase(int(kind)) is not Phase.FORWARD:
            continue
        done = []
        seen = {}  # (slot, j0): the weight offsets of its records' edges, the parts' modes
        for rec in records(plan, first, count):
            s = col[int(rec[0])]
            edges = edges_of(plan, rec)
            assert {col[c] for c, _, _ in edges} <= written  # inputs complete in earlier phases
            weights, modes = seen.setdefault((s, int(rec[2])), ([], []))
            weights += [w for _, _, w in edges]
            modes.append(int(rec[5]))
            if s != L.output_slot:
                forward_cover[s][rec[2]:rec[2] + rec[3]] += 1
                assert rec[4] == L.bias_off[s] and rec[5] == 0
            elif rec[5] in (1, 2):  # the whole output group, or its first part: the bias added once
                forward_cover[s][rec[2]:rec[2] + rec[3]] += 1
                assert rec[4] == L.bias_off[s]
            else:
                assert rec[4] == -1
            done.append(s)
        for (s, _), (weights, modes) in seen.items():
            assert sorted(weights) == sorted(w for _, w in ins[s])  # every in-edge once over the parts
            assert modes == [0] or modes == [1] or modes == list(range(2, 2 + plan.parts))
        written |= set(done)
    assert all((c == 1).all() for c in forward_cover.values())
    if plan.parts > 1:  # the loss stages the parts and their sum
        assert (plan.parts + 1) * 32 * int(L.width[L.output_slot]) <= CLUSTER_WARP_FLOATS
    # backward: every hidden group's columns once, after all of its consumers
    ready = {L.output_slot}
    for kind, first, count, _ in plan.phases:
        if Phase(int(kind)) is not Phase.BACKWARD:
            continue
        done = []
        for rec in records(plan, first, count):
            s = int(rec[4])
            assert {col[c] for c, _, _ in edges_of(plan, rec)} == {d for d, _ in outs[s]} <= ready
            done.append(s)
        ready |= set(done)
    assert ready == set(range(len(L.groups))) - {L.input_slot}
    # gradients: every parameter exactly once
    cover = np.zeros(L.n_params, int)
    kind, first, count, n_weight = plan.phases[-2]
    for i, rec in enumerate(records(plan, first, count)):
        if i < n_weight:
            ws, woff, j0, nj, k0, nk = rec[1], rec[4], rec[6], rec[7], rec[8], rec[9]
            for j in range(j0, j0 + nj):
                cover[woff + j * ws + k0:woff + j * ws + k0 + nk] += 1
        else:
            cover[rec[4] + rec[2]:rec[4] + rec[2] + rec[3]] += 1
    assert (cover == 1).all()
    assert max(level) == level[L.output_slot] and level[L.input_slot] == 0
    assert all(level[d] > level[s] for s in range(len(L.groups)) for d, _ in outs[s])
    assert all(level[d] == max(level[s] + 1 for s, _ in ins[d]) for d in range(n) if ins[d])  # the longest path
    assert INPUT in net.groups
