"""Partitions of a network over several devices (genlab.partition): the plan, its costs, growth."""

import numpy as np
import pytest

import genlab
from genlab import ArgumentError, Network, partition
from genlab.growth import duplicate_depth


def two_chains(length=4, width=16):
    """Two chains from the input to the output that share nothing else: one cut, two halves."""
    net = Network(8, 3, seed=0)
    for _ in range(2):
        prev = net.input
        for _ in range(length):
            prev = net.add_group(width, inputs=[prev])
        net.connect(prev, net.output)
    return net


def test_metis_cuts_two_independent_chains_at_the_output_only():
    net = two_chains()
    p = partition.metis(net, 2)
    assert set(p.parts.values()) == {0, 1} and p.imbalance < 1.1  # (the output group sits on one side)
    assert all(d == net.output for _, d in p.cut_edges) and len(p.cut_edges) == 1
    assert p.cut_bytes == 8 * 16  # one group's h forward and dL/dh back, per sample


@pytest.mark.parametrize("n_parts", [2, 3, 4])
def test_a_pipeline_cut_follows_the_levels_and_balances_the_work(n_parts):
    net = Network.random_dag(8, 6, width=16, fan_in=2, seed=1)
    p = partition.pipeline(net, n_parts)
    assert set(p.parts) == set(net.groups) - {net.input} and set(p.parts.values()) == set(range(n_parts))
    assert all(p.parts[s] <= p.parts[d] for s, d in net.edges if s != net.input)  # forward only
    assert p.imbalance < 1.4
    work = sum(partition.group_work(net, g) for g in net.groups if g != net.input)
    assert sum(p.work) == pytest.approx(work)


def test_costs_count_each_source_once_per_remote_part():
    net = Network(4, 2, seed=0)
    a = net.add_group(5, inputs=[net.input])
    b, c = net.add_group(6, inputs=[a]), net.add_group(7, inputs=[a])
    net.connect(b, net.output)
    net.connect(c, net.output)
    p = partition._costed(net, {a: 0, b: 1, c: 1, net.output: 1}, 2, "by hand")
    assert set(p.cut_edges) == {(a, b), (a, c)} and p.cut_bytes == 8 * 5
    assert partition.group_work(net, b) == 2 * 6 * 5


def test_plan_takes_the_fewest_bytes_within_the_tolerance():
    net = Network.random_dag(6, 8, width=(4, 32), fan_in=(1, 3), seed=0)
    best = partition.plan(net, 2)
    for method in partition.METHODS:
        other = partition.METHODS[method](net, 2)
        assert other.imbalance > 1.1 or best.cut_bytes <= other.cut_bytes


def test_kinds_weigh_by_their_positions():
    net = Network.conv_chain((1, 8, 8), [4, 8], 10, strides=[1, 2])
    conv, strided = net.hidden_groups
    assert partition.group_work(net, conv) == 2 * 4 * 9 * 64
    assert partition.group_work(net, strided) == 2 * 8 * 4 * 9 * 16
    assert partition.edge_bytes(net, strided) == 8 * 8 * 4 * 4
    seq = Network.attention_chain((5, 3), [4], 2, heads=2, dense=False)
    (att,) = seq.hidden_groups
    assert partition.group_work(seq, att) == 2 * 4 * 3 * 5 + 2 * 4 * 16 * 5 + 4 * 25 * 4


def test_growth_extends_the_partition_and_says_when_to_plan_again():
    net = two_chains()
    p = partition.metis(net, 2)
    g = next(g for g in net.hidden_groups if p.parts[g] == 1)
    grown = net.copy()
    new = duplicate_depth(grown, g, step=0, seed=0)
    extended = partition.extend(p, grown)
    assert extended.parts[new] == 1 and set(extended.parts) == set(grown.groups) - {net.input}
    assert not partition.needs_repartition(p, grown, tolerance=1.5)
    for step in range(6):  # all growth on one side
        side = [h for h in grown.hidden_groups if extended.parts.get(h) == 1]
        duplicate_depth(grown, side[-1], step=step + 1, seed=0)
        extended = partition.extend(extended, grown)
    assert partition.needs_repartition(p, grown) and partition.plan(grown, 2).imbalance < extended.imbalance


def test_bad_requests_are_clear_errors(monkeypatch):
    net = Network.mlp([4, 3, 2])
    with pytest.raises(ArgumentError, match="3 parts for 2 groups"):
        partition.plan(net, 3)
    with pytest.raises(ArgumentError, match="unknown partition method 'spectral'"):
        partition.plan(net, 2, methods=("spectral",))
    import sys

    monkeypatch.setitem(sys.modules, "pymetis", None)  # as if it were not installed: importing it fails
    with pytest.raises(ArgumentError, match="pip install 'genlab\\[multi\\]'"):
        partition.plan(net, 2, methods=("metis",))
    assert partition.plan(net, 2).method == "pipeline"  # without pymetis: the pipeline cut


def test_the_partition_is_drawn_on_the_dag():
    net = two_chains()
    p = partition.metis(net, 2)
    source = genlab.viz.draw(net, partition=p).source
    assert "part 0" in source and "part 1" in source and "1 cut edges (red)" in source
    assert source.count(genlab.viz.CUT) == len(p.cut_edges)
    np.testing.assert_equal(sorted(set(p.parts.values())), [0, 1])
