"""The duplications of genlab.duplication, which write straight into the network, against the
same edits made through the checked methods (add_group, connect, reroute): the same topology,
edge order, parameters, operations and random state, on networks of every kind, with delays."""

import dataclasses
import json

import numpy as np
import pytest

from genlab import GraphError, Network
from genlab import operations as op
from genlab import shapes
from genlab.network.duplication import duplicate_depth, duplicate_width, he_uniform
from genlab.network.duplication import fan_in as _fan_in
from genlab.hashnoise import hash_uniform


# the duplications as they were written before genlab.duplication: through the checked methods
def checked_depth(net: Network, g: int, step: int, seed: int, preserve: bool = True,
                    log: list | None = None, values: bool = True) -> int:
    """Insert a group g' of g's width and kind between g and all its consumers; return g'.

    `log`, if given, receives the parameter operations (genlab.operations).
    values=False leaves the parameters' values to whoever replays the log (an engine that grows
    in place): new blocks are zeros on the host and changed ones keep their old values."""
    width, kind = net.widths[g], net.kind(g)
    new = net.add_group(width, kind=kind.name, **kind.depth_options(net.options.get(g, {})))
    consumers = net.outputs(g)
    spec = dataclasses.replace(net.spec(new), grid=shapes.out_grid(net, g) if kind.spatial else None)
    shape = kind.edge_shape(spec, width)
    bound = np.sqrt(6.0 / _fan_in(shape))
    weight = (kind.identity(spec) if preserve else he_uniform(seed, step, g, new, shape, _fan_in(shape))) if values \
        else np.zeros(shape, net.dtype)
    net.connect(g, new, weight=weight)
    if values and preserve:
        net.biases[new] = kind.identity_bias(spec, np.random.default_rng([seed, step, new])).astype(net.dtype)
    ops = [op.Identity(("W", g, new), width) if preserve else op.HeUniform(("W", g, new), bound, g, new),
           op.Zero(("b", new))]
    for d in consumers:
        net.reroute(g, d, new)
        ops.append(op.Move(("W", new, d), ("W", g, d)))
        if not preserve:
            fan_in = sum(_fan_in(net.weights[(s, d)].shape) for s in net.inputs(d))
            if values:
                net.weights[(new, d)] = he_uniform(seed, step, new, d, net.weights[(new, d)].shape,
                                                   fan_in).astype(net.dtype)
            ops.append(op.HeUniform(("W", new, d), np.sqrt(6.0 / fan_in), new, d))
    if log is not None:
        log.extend(ops)
    return new


def checked_width(net: Network, g: int, step: int, seed: int, preserve: bool = True,
                    noise: float = 1.0, log: list | None = None, values: bool = True, fresh: bool = False) -> int:
    """Add a sibling g'' of g (its width and kind) with g's inputs and consumers; return g''.
    `log` and `values` as in duplicate_depth. fresh (with preserve): g'' gets new He-uniform
    input weights and zero output weights instead of copies of g's and a split of its outputs."""
    inputs, consumers, kind = net.inputs(g), net.outputs(g), net.kind(g)
    new = net.add_group(net.widths[g], kind=kind.name, **net.options.get(g, {}))
    fan_in = sum(_fan_in(net.weights[(s, g)].shape) for s in inputs)
    copy_in = preserve and not fresh
    ops = []
    for s in inputs:
        w = net.weights[(s, g)]
        net.connect(s, new, weight=w if copy_in else he_uniform(seed, step, s, new, w.shape, fan_in) if values
                    else np.zeros(w.shape, net.dtype), delay=net.delay(s, g))
        ops.append(op.Copy(("W", s, new), ("W", s, g)) if copy_in else
                   op.HeUniform(("W", s, new), np.sqrt(6.0 / fan_in), s, new))
    if preserve:  # (else it keeps what add_group drew: zeros, or an attention group's projections)
        net.biases[new] = net.biases[g].copy()
    ops.append(op.Copy(("b", new), ("b", g)) if preserve else op.Zero(("b", new)))
    for d in consumers:
        if preserve and fresh:  # it adds nothing until its output weights learn
            net.connect(new, d, weight=np.zeros_like(net.weights[(g, d)]), delay=net.delay(g, d))
            ops.append(op.Zero(("W", new, d)))
        elif preserve:
            if values:
                v = net.weights[(g, d)].astype(np.float64)
                rms = np.sqrt(np.mean(v * v))
                e = noise * rms * hash_uniform(seed, step, g, d, np.arange(v.size)).reshape(v.shape)
                stay, moved = net.kind(d).split(v, e)
                net.weights[(g, d)] = stay.astype(net.dtype)
                net.connect(new, d, weight=moved, delay=net.delay(g, d))
            else:
                net.connect(new, d, weight=np.zeros_like(net.weights[(g, d)]), delay=net.delay(g, d))
            ops.append(op.Split(("W", g, d), ("W", new, d), noise, g, d))
        else:
            shape = net.weights[(g, d)].shape
            d_fan_in = sum(_fan_in(net.weights[(s, d)].shape) for s in net.inputs(d)) + _fan_in(shape)
            net.connect(new, d, weight=he_uniform(seed, step, new, d, shape, d_fan_in) if values else
                        np.zeros(shape, net.dtype), delay=net.delay(g, d))
            ops.append(op.HeUniform(("W", new, d), np.sqrt(6.0 / d_fan_in), new, d))
    if log is not None:
        log.extend(ops)
    return new



NETWORKS = {
    "mlp": lambda: Network.mlp([6, 5, 4, 3], seed=1),
    "random_dag": lambda: Network.random_dag(3, 3, (2, 6), (1, 3), seed=2, n_inputs=7, n_outputs=3),
    "elman (delays)": lambda: Network.elman(4, [5, 6], 3, seed=3),
    "conv": lambda: Network.conv_chain((2, 6, 6), [3, 4], 5, strides=[1, 2], seed=4),
    "attention": lambda: Network.attention_chain((4, 6), [6], 3, heads=2, seed=5),
    "float64": lambda: Network.mlp([5, 4, 4, 2], seed=6, dtype=np.float64),
}
MOVES = {  # name: (fast, checked, keyword arguments)
    "depth": (duplicate_depth, checked_depth, {}),
    "depth, not preserving": (duplicate_depth, checked_depth, {"preserve": False}),
    "width, split": (duplicate_width, checked_width, {"noise": 0.5}),
    "width, fresh": (duplicate_width, checked_width, {"fresh": True}),
    "width, not preserving": (duplicate_width, checked_width, {"preserve": False}),
}


def _state(net: Network) -> dict:
    """Everything a duplication may change, comparable with ==."""
    return {"widths": net.widths, "kinds": net.kinds, "options": net.options, "grids": net.grids,
            "in": net._in, "out": net._out, "delays": net.delays, "next": net._next_id,
            "rng": net._rng.bit_generator.state,
            "weights": {k: (v.dtype, v.shape, v.tobytes()) for k, v in net._weights.items()},
            "biases": {k: (v.dtype, v.shape, v.tobytes()) for k, v in net._biases.items()}}


@pytest.mark.parametrize("values", [True, False], ids=["values", "log only"])
@pytest.mark.parametrize("move", list(MOVES))
@pytest.mark.parametrize("name", list(NETWORKS))
def test_duplications_equal_the_checked_edits(name, move, values):
    fast, checked, options = MOVES[move]
    base = NETWORKS[name]()
    for step, g in enumerate(base.hidden_groups, start=1):  # every hidden group, one after another
        a, b = base.copy(), base.copy()
        log_a, log_b = [], []
        version = b.version
        new_a = checked(a, g, step, 11, log=log_a, values=values, **options)
        new_b = fast(b, g, step, 11, log=log_b, values=values, **options)
        assert new_a == new_b
        assert _state(a) == _state(b), (name, move, g)
        assert log_a == log_b
        assert b.version > version  # a trainer holding the network sees the edit
        b.validate()
        base = b


@pytest.mark.parametrize("fast", [duplicate_depth, duplicate_width])
@pytest.mark.parametrize("g", [0, 1, 99, True, 2.0, "2"])
def test_only_hidden_groups_are_duplicated(fast, g):
    net = Network.mlp([4, 3, 2], seed=0)
    before = _state(net)
    with pytest.raises(GraphError, match="not a hidden group"):
        fast(net, g, 1, 0)
    assert _state(net) == before  # nothing was changed


@pytest.mark.parametrize("fast", [duplicate_depth, duplicate_width])
def test_numpy_group_ids_leave_python_ints_in_the_network(fast):
    net = Network.mlp([4, 3, 3, 2], seed=0)
    new = fast(net, np.int64(net.hidden_groups[0]), 1, 0)
    ids = [*net.widths, *net._in, *net._out, *(g for v in [*net._in.values(), *net._out.values()] for g in v),
           *(g for e in net._weights for g in e), *net._biases, new]
    assert all(type(g) is int for g in ids)
    json.dumps(net.topology())  # a picture of it is JSON-ready
