"""Growth's duplications of a group, depth-wise and width-wise, written straight into the network.

Network.add_group, connect and reroute check every argument and search the graph for a cycle at
every edge: right for a person's edit, and most of a growth event's time (45 us a new group on
a 34-group network, a search per edge). A duplication cannot make a bad network: the new group
takes g's width, kind and options, its edges are copies of g's (width-wise) or g's own edges
stretched through it (depth-wise), so shapes hold and no cycle closes. This module makes those
edits without the checks, inside the network package (no module outside it touches a Network's
private fields: tests/test_architecture.py), and tests/test_duplication.py checks that every
edit equals what the checked methods build (topology, edge order, parameters, the network's
random state).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .. import operations as op
from .. import shapes
from ..hashnoise import hash_uniform
from ..errors import GraphError
from ..group_ids import INPUT, OUTPUT

if TYPE_CHECKING:
    from .core import Network


def he_uniform(seed: int, step: int, src: int, dst: int, shape, fan_in: int) -> np.ndarray:
    """He-uniform weights for edge src -> dst from the counter-based hash (engine-independent)."""
    bound = np.sqrt(6.0 / fan_in)
    return bound * hash_uniform(seed, step, src, dst, np.arange(int(np.prod(shape)))).reshape(shape)


def fan_in(shape) -> int:
    """The inputs one output of a weight block reads (all but its first axis)."""
    return math.prod(shape[1:])


def duplicate_depth(net: Network, g: int, step: int, seed: int, preserve: bool = True,
                    log: list | None = None, values: bool = True) -> int:
    """Insert a group g' of g's width and kind between g and all its consumers; return g'.

    `log`, if given, receives the parameter operations (genlab.operations).
    values=False leaves the parameters' values to whoever replays the log (an engine that grows
    in place): new blocks are zeros on the host and changed ones keep their old values."""
    g = _hidden(net, g)
    kind, width = net.kind(g), net.widths[g]
    consumers = list(net._out[g])
    new = _new_group(net, g, kind, kind.depth_options(net.options.get(g, {})))
    grid = shapes.out_grid(net, g) if kind.spatial else None
    if grid is not None:
        net.grids[new] = grid
    spec = shapes.spec(net, new)
    weights, shape = net._weights, kind.edge_shape(spec, width)
    weight = (kind.identity(spec) if preserve else he_uniform(seed, step, g, new, shape, fan_in(shape))) if values \
        else np.zeros(shape, net.dtype)
    _edge(net, g, new, weight, 0)
    if values and preserve:
        net._biases[new] = kind.identity_bias(spec, np.random.default_rng([seed, step, new])).astype(net.dtype)
    ops = [op.Identity(("W", g, new), width) if preserve else op.HeUniform(("W", g, new), np.sqrt(6.0 / fan_in(shape)), g, new),
           op.Zero(("b", new))]
    for d in consumers:
        _reroute(net, g, d, new)
        ops.append(op.Move(("W", new, d), ("W", g, d)))
        if not preserve:
            d_fan_in = sum(fan_in(weights[(s, d)].shape) for s in net._in[d])
            if values:
                weights[(new, d)] = he_uniform(seed, step, new, d, weights[(new, d)].shape, d_fan_in).astype(net.dtype)
            ops.append(op.HeUniform(("W", new, d), np.sqrt(6.0 / d_fan_in), new, d))
    if log is not None:
        log.extend(ops)
    return new


def duplicate_width(net: Network, g: int, step: int, seed: int, preserve: bool = True,
                    noise: float = 1.0, log: list | None = None, values: bool = True, fresh: bool = False) -> int:
    """Add a sibling g'' of g (its width and kind) with g's inputs and consumers; return g''.
    `log` and `values` as in duplicate_depth. fresh (with preserve): g'' gets new He-uniform
    input weights and zero output weights instead of copies of g's and a split of its outputs."""
    g = _hidden(net, g)
    inputs, consumers, weights, delays = list(net._in[g]), list(net._out[g]), net._weights, net.delays
    new = _new_group(net, g, net.kind(g), net.options.get(g, {}))
    if g in net.grids:
        net.grids[new] = net.grids[g]
    g_fan_in = sum(fan_in(weights[(s, g)].shape) for s in inputs)
    copy_in = preserve and not fresh
    ops = []
    for s in inputs:
        w = weights[(s, g)]
        _edge(net, s, new, w if copy_in else he_uniform(seed, step, s, new, w.shape, g_fan_in) if values
              else np.zeros(w.shape, net.dtype), delays.get((s, g), 0))
        ops.append(op.Copy(("W", s, new), ("W", s, g)) if copy_in else
                   op.HeUniform(("W", s, new), np.sqrt(6.0 / g_fan_in), s, new))
    if preserve:  # (else it keeps what the kind drew: zeros, or an attention group's projections)
        net._biases[new] = net._biases[g].copy()
    ops.append(op.Copy(("b", new), ("b", g)) if preserve else op.Zero(("b", new)))
    for d in consumers:
        block, delay = weights[(g, d)], delays.get((g, d), 0)
        if preserve and fresh:  # it adds nothing until its output weights learn
            _edge(net, new, d, np.zeros_like(block), delay)
            ops.append(op.Zero(("W", new, d)))
        elif preserve:
            if values:
                v = block.astype(np.float64)
                rms = np.sqrt(np.mean(v * v))
                e = noise * rms * hash_uniform(seed, step, g, d, np.arange(v.size)).reshape(v.shape)
                stay, moved = net.kind(d).split(v, e)
                weights[(g, d)] = stay.astype(net.dtype)
                _edge(net, new, d, moved, delay)
            else:
                _edge(net, new, d, np.zeros_like(block), delay)
            ops.append(op.Split(("W", g, d), ("W", new, d), noise, g, d))
        else:
            d_fan_in = sum(fan_in(weights[(s, d)].shape) for s in net._in[d]) + fan_in(block.shape)
            _edge(net, new, d, he_uniform(seed, step, new, d, block.shape, d_fan_in) if values else
                  np.zeros(block.shape, net.dtype), delay)
            ops.append(op.HeUniform(("W", new, d), np.sqrt(6.0 / d_fan_in), new, d))
    if log is not None:
        log.extend(ops)
    return new


def _hidden(net: Network, g) -> int:
    """g as a Python int (keys and lists hold no NumPy integers); GraphError unless it names a
    hidden group of net."""
    if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or g in (INPUT, OUTPUT) or g not in net.widths:
        raise GraphError(f"group {g!r} is not a hidden group of the network: only hidden groups are duplicated")
    return int(g)


def _new_group(net: Network, g: int, kind, options: dict) -> int:
    """A group of g's width and `kind` (g's) with `options` and no edges, its own parameters drawn
    from the network's generator as Network.add_group draws them."""
    options = kind.options(dict(options))
    new = net._next_id
    spec = shapes.Spec(net.widths[g], options, tokens=shapes.spec(net, OUTPUT).tokens)
    bias = kind.init_bias(spec, net._rng).astype(net.dtype)
    net._next_id += 1
    net.widths[new], net.kinds[new] = net.widths[g], kind.name
    if options:
        net.options[new] = options
    net._biases[new] = bias
    net._in[new], net._out[new] = [], []
    return new


def _edge(net: Network, src: int, dst: int, weight: np.ndarray, delay: int) -> None:
    """Network.connect without its checks: the block (copied, in the network's dtype) and the
    adjacency, src appended to dst's inputs."""
    net._weights[(src, dst)] = np.array(weight, dtype=net.dtype)
    if delay:
        net.delays[(src, dst)] = delay
    net._in[dst].append(src)
    net._out[src].append(dst)


def _reroute(net: Network, src: int, dst: int, new_src: int) -> None:
    """Network.reroute without its checks: the block and the delay move to new_src -> dst, which
    takes src's place among dst's inputs."""
    net._weights[(new_src, dst)] = net._weights.pop((src, dst))
    delay = net.delays.pop((src, dst), 0)
    if delay:
        net.delays[(new_src, dst)] = delay
    net._out[src].remove(dst)
    net._in[dst][net._in[dst].index(src)] = new_src
    net._out[new_src].append(dst)
