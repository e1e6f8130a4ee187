"""Whether a network can run: shapes, kinds, no cycle without a delay, every group on a path."""

from __future__ import annotations

from .. import checks, dag, shapes
from ..errors import GraphError
from ..group_ids import INPUT, OUTPUT
from ..group_ids import ids_text as _ids


def validate(net) -> None:
    """Raise GraphError naming the groups involved if the network cannot be run."""
    for g, w in net.widths.items():
        checks.width(w, f"group {g}")
    for (s, d), w in net.weights.items():
        for g in (s, d):
            if g not in net.widths:
                raise GraphError(f"edge {s} -> {d}: group {g} does not exist")
    if set(net.kinds) != set(net.widths) - {INPUT}:
        raise GraphError(f"groups without a kind: {_ids(sorted(set(net.widths) - {INPUT} - set(net.kinds)))}")
    _geometry(net)
    for (s, d), w in net.weights.items():
        expected = net.kind(d).edge_shape(net.spec(d), shapes.edge_width(net, s, d))
        if w.shape != expected:
            raise GraphError(
                f"width mismatch on edge {s} -> {d}: weight block is {w.shape}, "
                f"expected {expected} from the widths of {d} and {s}")
    for g, b in net.biases.items():
        expected = () if g == INPUT else net.kind(g).bias_shape(net.spec(g))
        if g == INPUT or b.shape != expected:
            raise GraphError(f"bias of group {g} has shape {b.shape}, expected {expected}")
    inputs0, outputs0 = net.forward_edges()
    order = dag.kahn(inputs0, outputs0)
    if len(order) < len(net.widths):
        cycle = dag.find_cycle(inputs0, set(net.widths) - set(order))
        raise GraphError(f"the network has a cycle without a delay: {' -> '.join(map(str, cycle))} "
                         "(connect(..., delay=1) makes an edge recurrent)")
    for (s, d), k in net.delays.items():
        if (s, d) not in net.weights or not isinstance(k, int) or k < 1:
            raise GraphError(f"delay {k!r} of edge {s} -> {d}: delays are positive integers on existing edges")
    forward = dag.reach(INPUT, net._out)
    backward = dag.reach(OUTPUT, net._in)
    if OUTPUT not in forward:
        raise GraphError(f"the output group {OUTPUT} is not reachable from the input group {INPUT}")
    cut_off = [g for g in net.hidden_groups if g not in forward]
    if cut_off:
        raise GraphError(f"hidden group(s) {_ids(cut_off)} not reachable from the input group {INPUT}")
    dead_end = [g for g in net.hidden_groups if g not in backward]
    if dead_end:
        raise GraphError(f"hidden group(s) {_ids(dead_end)} do not reach the output group {OUTPUT}")


def _geometry(net) -> None:
    """Each group's kind fits the network's form and its options are its kind's; each conv group
    has the grid of every one of its inputs."""
    for g in net.hidden_groups:
        kind = net.kind(g)
        shapes.check_kind(net, kind)
        given = net.options.get(g, {})
        if kind.options(dict(given)) != given:
            raise GraphError(f"group {g}'s options {given} are not those of a {kind.name} group")
        if not kind.spatial and g in net.grids:
            raise GraphError(f"group {g} is {kind.name}: it has no grid")
        for s in net._in[g]:
            if kind.spatial and (not shapes.spatial(net, s) or net.grids.get(g) != shapes.out_grid(net, s)):
                raise GraphError(f"conv group {g} reads {net.grids.get(g)} maps, but group {s} gives "
                                 f"{shapes.out_grid(net, s) if shapes.spatial(net, s) else 'no grid'}")
    if set(net.options) - set(net.hidden_groups) or set(net.grids) - set(net.hidden_groups):
        raise GraphError("options or grids of groups that are not hidden groups")
