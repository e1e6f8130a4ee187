"""Networks made whole (a traditional layered chain, layered random DAGs; cls: Network or a
subclass), their parameters drawn afresh, and their description as a table."""

from __future__ import annotations

import numpy as np

from .. import checks
from ..errors import ArgumentError, GraphError
from ..group_ids import INPUT, OUTPUT
from ..group_ids import ids_text as _ids
from ..shapes import edge_width


def mlp(cls, sizes, seed: int = 0, dtype=np.float32):
    """A traditional layered network as a chain of groups: [n_in, h1, ..., n_out]."""
    sizes = list(sizes)
    if len(sizes) < 2:
        raise GraphError(f"mlp needs at least an input and an output size, got {sizes}")
    net = cls(sizes[0], sizes[-1], seed=seed, dtype=dtype)
    prev = INPUT
    for width in sizes[1:-1]:
        prev = net.add_group(width, inputs=[prev])
    net.connect(prev, OUTPUT)
    net.init_params(seed)
    return net


def elman(cls, n_inputs: int, hidden, n_outputs: int, seed: int = 0, dtype=np.float32):
    """A stacked Elman RNN as groups: hidden group l reads group l-1 now and itself one step
    ago (connect(g, g, delay=1)); the output reads the last one."""
    hidden = list(hidden)
    if not hidden:
        raise GraphError("elman needs at least one hidden width")
    net = cls(n_inputs, n_outputs, seed=seed, dtype=dtype)
    prev = INPUT
    for width in hidden:
        g = net.add_group(width, inputs=[prev])
        net.connect(g, g, delay=1)
        prev = g
    net.connect(prev, OUTPUT)
    net.init_params(seed)
    return net


def random_dag(cls, levels: int, per_level: int, width, fan_in, seed: int = 0,
               n_inputs: int = 64, n_outputs: int = 10, dtype=np.float32):
    """A layered random DAG for tests and benchmarks.

    Each of the `levels` levels holds `per_level` groups. A group draws its inputs from the
    previous two levels (the input group counts as level 0), one of them at least from the
    previous level. `width` and `fan_in` are an int or an inclusive (low, high) range drawn
    per group. Groups that feed no later group feed the output group, so every group lies
    on a path from the input to the output.
    """
    levels, per_level = checks.integer(levels, "levels", 1), checks.integer(per_level, "per_level", 1)
    width, fan_in = _int_range(width, "width", checks.MAX_WIDTH), _int_range(fan_in, "fan_in", 2**20)
    rng = np.random.default_rng(checks.integer(seed, "seed", 0))
    draw = lambda v: int(rng.integers(v[0], v[1] + 1))
    net = cls(n_inputs, n_outputs, seed=seed, dtype=dtype)
    by_level = [[INPUT]]
    for _ in range(levels):
        level = []
        prev, prev2 = by_level[-1], (by_level[-2] if len(by_level) > 1 else [])
        for _ in range(per_level):
            k = max(1, draw(fan_in))
            first = int(rng.choice(prev))
            pool = [g for g in prev + prev2 if g != first]
            extra = rng.choice(pool, size=min(k - 1, len(pool)), replace=False) if pool else []
            level.append(net.add_group(draw(width), inputs=[first, *map(int, extra)]))
        by_level.append(level)
    for g in net.hidden_groups:
        if not net._out[g]:
            net.connect(g, OUTPUT)
    net.init_params(seed)
    return net


def _int_range(value, name: str, high: int) -> tuple[int, int]:
    """An int n, or an inclusive (low, high) range, as (low, high) with 1 <= low <= high <= `high`."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ArgumentError(f"{name} must be an int or a (low, high) pair, got {value!r}")
        low, top = (checks.integer(v, f"{name}'s bounds", 1, high) for v in value)
        if low > top:
            raise ArgumentError(f"{name}'s range ({low}, {top}) is empty: give (low, high) with low <= high")
        return low, top
    n = checks.integer(value, name, 1, high)
    return n, n


def init_params(net, seed: int = 0) -> None:
    """Draw every weight block of `net` as its group's kind draws a new edge (He-normal over the group's
    total fan-in for dense groups), and every group's own parameters as a new group's. A group's
    edge to itself with a delay starts as the identity (Le, Jaitly and Hinton's IRNN: a ReLU group's
    state carries over the steps; He-normal recurrent weights leave a 40-step Elman group of 16 on
    MNIST-1D at chance, the identity learns)."""
    rng = np.random.default_rng(checks.integer(seed, "seed", 0))
    weights, biases = {}, {}
    for g in net.groups[1:]:
        kind, spec = net.kind(g), net.spec(g)
        seen = {s: edge_width(net, s, g) for s in net._in[g]}
        for s in net._in[g]:
            shape = kind.edge_shape(spec, seen[s])
            weights[(s, g)] = kind.draw_edge(spec, rng, shape, sum(seen.values())).astype(net.dtype)
            if s == g and net.delays.get((s, g)):
                weights[(s, g)] = kind.identity(spec).astype(net.dtype)
        biases[g] = kind.init_bias(spec, rng).astype(net.dtype)
    net.holding.settle()
    net._weights.update(weights)
    net._biases.update(biases)


def summary(net) -> str:
    """A text table: one row per group (level, width, inputs, outputs, parameters)."""
    level = net.levels()
    rows = [f"{'group':>6} {'role':<7} {'kind':<9} {'level':>5} {'width':>6} {'params':>8}  inputs -> outputs"]
    for g in sorted(net.widths, key=lambda g: (level[g], g)):
        role = "input" if g == INPUT else "output" if g == OUTPUT else "hidden"
        params = sum(net.weights[(s, g)].size for s in net._in[g]) + (net.biases[g].size if g != INPUT else 0)
        rows.append(f"{g:>6} {role:<7} {net.kinds.get(g, '-'):<9} {level[g]:>5} {net.widths[g]:>6} {params:>8}  "
                    f"{_ids(net._in[g]) or '-'} -> {_ids(net._out[g]) or '-'}")
    rows.append(f"{len(net.widths)} groups, {len(net.weights)} edges, {net.n_params} parameters, "
                f"depth {level[OUTPUT]}")
    return "\n".join(rows)


def conv_chain(cls, input_shape, channels, n_outputs: int, kernel: int = 3, strides=None, seed: int = 0,
               dtype=np.float32):
    """A traditional small CNN over (C, H, W) images as a chain of conv groups of `channels`
    channels each (strides: one per group, default 1), the output reading the last flattened."""
    channels = list(channels)
    strides = [1] * len(channels) if strides is None else list(strides)
    if not channels or len(strides) != len(channels):
        raise GraphError(f"conv_chain needs at least one group and a stride for each, got {channels} and {strides}")
    net = cls(n_outputs=n_outputs, input_shape=input_shape, seed=seed, dtype=dtype)
    prev = INPUT
    for width, stride in zip(channels, strides):
        prev = net.add_group(width, inputs=[prev], kind="conv", kernel=kernel, stride=stride)
    net.connect(prev, OUTPUT)
    net.init_params(seed)
    return net


def attention_chain(cls, input_shape, widths, n_outputs: int, heads: int = 2, dense: bool = True,
                    seed: int = 0, dtype=np.float32, positions: bool = True):
    """Attention groups over (T, F) token sequences, one per entry of `widths`, each followed by a
    dense group of its width acting on every token (with dense=True: a transformer's block
    without its normalisation); the output averages over the tokens. positions: the first
    attention group adds each token's sinusoidal position encoding (without it, attention and
    the average cannot tell the order of the tokens)."""
    widths = list(widths)
    if not widths:
        raise GraphError("attention_chain needs at least one width")
    net = cls(n_outputs=n_outputs, input_shape=input_shape, seed=seed, dtype=dtype)
    prev = INPUT
    for i, width in enumerate(widths):
        prev = net.add_group(width, inputs=[prev], kind="attention", heads=heads if width % heads == 0 else 1,
                             positions=positions and i == 0)
        if dense:
            prev = net.add_group(width, inputs=[prev])
    net.connect(prev, OUTPUT)
    net.init_params(seed)
    return net
