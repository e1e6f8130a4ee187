"""The CUDA engine's device layout on the host (no GPU): a layout grown in place (Layout.grown)
keeps every old slot, offset and edge and holds what a layout made afresh for the same slots
and offsets holds."""

import copy

import numpy as np
import pytest

from genlab import Network
from genlab.network.duplication import duplicate_depth, duplicate_width
from genlab.engines.cuda.layout import Layout
from genlab.operations import Noise

DERIVED = ("col_off", "width", "group_id", "hidden", "bias_off", "std_slots")


def _afresh(grown: Layout, net: Network) -> Layout:
    """grown's slots, offsets and edges with everything that follows from them made in full."""
    again = copy.copy(grown)
    again._finish(net)
    return again


@pytest.mark.parametrize("seed", range(4))
def test_a_grown_layout_equals_one_finished_afresh(seed):
    rng = np.random.default_rng(seed)
    net = Network.random_dag(3, 4, (2, 9), (1, 3), seed=seed)
    L = Layout(net)
    for step in range(1, 5):
        before = copy.copy(L)
        log = [Noise(seed, step)]
        chosen = []
        for g in rng.permutation(net.hidden_groups):  # never a group and its direct input, as the rules
            if len(chosen) < 3 and not any(c in net.inputs(g) or g in net.inputs(c) for c in chosen):
                chosen.append(int(g))
        for g in chosen:
            grow = duplicate_depth if rng.random() < 0.4 else duplicate_width
            grow(net, g, step, seed, log=log, values=False)
        L = L.grown(net, log)
        assert L.groups[:len(before.groups)] == before.groups
        assert all(L.offsets[k] == off for k, off in before.offsets.items() if k in L.offsets)
        fresh = _afresh(L, net)
        for name in DERIVED:
            np.testing.assert_array_equal(getattr(L, name), getattr(fresh, name), err_msg=name)
        assert L.std_ids == fresh.std_ids == sorted(g for g in net.groups if g != net.input)
        for name in ("geo", "task_width", "cache_off"):
            np.testing.assert_array_equal(getattr(L.kinds, name), getattr(fresh.kinds, name), err_msg=name)
        assert (L.n_cols, L.n_edges, L.output_fan_in) == (fresh.n_cols, fresh.n_edges, fresh.output_fan_in)
        assert sorted(L.edges) == net.edges and set(L.offsets) == {("W", *e) for e in net.edges} | {("b", g) for g in net.groups if g}
        for e, s, d, woff, inpos, outpos in L.records:  # what the GPU writes into its edge list
            src, dst = L.groups[s], L.groups[d]
            assert L.edges[(src, dst)] == e and L.offsets[("W", src, dst)] == woff
            assert net.inputs(dst)[inpos] == src and net.outputs(src)[outpos] == dst


def test_the_optimizer_state_of_new_blocks_is_zeroed_in_merged_ranges():
    """replay's ranges of fresh parameters cover exactly the fresh blocks, adjacent ones merged."""
    from genlab.engines.cuda.growth import _ranges

    net = Network.random_dag(3, 4, (2, 9), (1, 3), seed=7)
    L = Layout(net)
    log = [Noise(7, 1)]
    for g in net.hidden_groups[:1] + net.hidden_groups[-1:]:
        duplicate_depth(net, g, 1, 7, log=log, values=False)
    L = L.grown(net, log)
    ranges = _ranges(L, L.fresh)
    covered = np.zeros(L.n_params, bool)
    for first, n in ranges:
        assert not covered[first:first + n].any() and n > 0
        covered[first:first + n] = True
    want = np.zeros(L.n_params, bool)
    for key in L.fresh:
        want[L.offsets[key]:L.offsets[key] + int(np.prod(L.shapes[key]))] = True
    np.testing.assert_array_equal(covered, want)
    assert len(ranges) < len(L.fresh)  # the appended blocks are one range
    assert all(a + n < b for (a, n), (b, _) in zip(ranges, ranges[1:]))  # merged where adjacent


def test_a_layout_past_32_bit_offsets_is_refused_with_a_clear_error():
    """The kernels' parameter offsets are 32-bit: a network of 2^31 parameters or more is a
    BackendError (not an OverflowError from NumPy). Zero-stride weights: no memory is taken."""
    import genlab
    from genlab.errors import BackendError

    net = genlab.Network.mlp([4, 3, 2], seed=0)
    a, n = net.hidden_groups[0], 50_000
    net.widths[genlab.INPUT] = net.widths[a] = n
    net.weights[(genlab.INPUT, a)] = np.broadcast_to(np.float32(0), (n, n))
    net.weights[(a, genlab.OUTPUT)] = np.broadcast_to(np.float32(0), (2, n))
    net.biases[a] = np.broadcast_to(np.float32(0), (n,))
    with pytest.raises(BackendError, match="2500150002 parameters exceed"):
        Layout(net)
