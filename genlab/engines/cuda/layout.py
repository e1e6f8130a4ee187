"""The device layout of a network: where each group, parameter and edge lives on the GPU.

Structure of arrays indexed by a group's slot: width (its columns: a row holds a sample, or a
token of a sequence network), col_off (its first column among all neurons), bias_off; one flat parameter buffer (every weight block, then every bias) with its
gradients and optimizer state in the same layout. The topology itself (CSR both ways, levels,
task lists) is built on the GPU from `records` (topology.py).
"""

from __future__ import annotations

import copy
import math

import numpy as np

from ... import operations as op
from ... import shapes
from ...errors import BackendError
from ...network import INPUT, OUTPUT, Network
from . import kind_lists


class Layout:
    """The host's bookkeeping of the device layout: slots, parameter offsets, edge numbers.

    A fresh index puts the groups in topological order and the parameters in in-edge order.
    grown() extends it for a grown network without moving anything: old slots, parameters (and
    so their optimizer state) and edges stay where they were, a moved edge keeps its block, new
    groups, parameters and edges are appended. `records` lists the edges to write on the GPU
    (edge, src slot, dst slot, weight offset, input position, output position), from which the
    GPU builds the CSR, the levels and the task lists (cuda/topology.cu).
    """

    def __init__(self, net: Network):
        order = net.topological_order()
        self.groups, self.slot = list(order), {g: s for s, g in enumerate(order)}
        self.offsets, self.shapes, self.edges, self.fresh, self.records = {}, {}, {}, [], []
        self.n_params = 0
        self.width, self.group_id, self.hidden = (np.zeros(0, np.int32) for _ in range(3))
        self._add_groups(net, order)
        for g in order:
            for s in net.inputs(g):
                self._add_param(("W", s, g), net)
        for g in order[1:]:
            self._add_param(("b", g), net)
        for g in order:
            for s in net.inputs(g):
                self._add_edge(s, g, net)
        self._finish(net)

    @classmethod
    def placed(cls, net: Network, placement: dict) -> "Layout":
        """The layout `placement` describes (describe()): the same slots, parameter offsets and
        edge numbers, so that a network read back from a checkpoint runs exactly as before.
        ValueError if it does not fit the network."""
        groups = [int(g) for g in placement["groups"]]
        params = [tuple(k[:1]) + tuple(int(v) for v in k[1:]) for k in placement["params"]]
        edges = sorted((int(e), int(s), int(d)) for s, d, e in placement["edges"])
        keys = {("W", s, d) for (s, d) in net.weights} | {("b", g) for g in net.biases}
        if sorted(groups) != net.groups or set(params) != keys or len(params) != len(keys) \
                or sorted((s, d) for _, s, d in edges) != net.edges or [e for e, _, _ in edges] != list(range(len(edges))):
            raise ValueError("the placement does not describe this network")
        new = cls.__new__(cls)
        new.groups, new.slot = groups, {g: s for s, g in enumerate(groups)}
        new.offsets, new.shapes, new.edges, new.fresh, new.records = {}, {}, {}, [], []
        new.n_params = 0
        new.width, new.group_id, new.hidden = (np.zeros(0, np.int32) for _ in range(3))
        new._add_groups(net, groups)
        for key in params:
            new._add_param(key, net)
        for e, s, d in edges:
            new._add_edge(s, d, net, number=e)
        new._finish(net)
        return new

    def describe(self) -> dict:
        """Slots, parameter order and edge numbers, JSON-ready (placed() reads it)."""
        return {"groups": list(map(int, self.groups)), "params": [list(k) for k in sorted(self.offsets, key=self.offsets.get)],
                "edges": [[s, d, e] for (s, d), e in self.edges.items()]}

    def _add_groups(self, net: Network, groups) -> None:
        widths = np.array([shapes.columns(net, g) for g in groups], np.int32)
        self.width = np.concatenate([self.width, widths])
        self.group_id = np.concatenate([self.group_id, np.array(list(groups), np.int32)])
        self.hidden = np.concatenate([self.hidden, np.array([g not in (INPUT, OUTPUT) for g in groups], np.int32)])

    def _add_param(self, key: tuple, net: Network) -> None:
        shape = net.weights[key[1:]].shape if key[0] == "W" else net.biases[key[1]].shape
        self.offsets[key], self.shapes[key] = self.n_params, shape
        self.fresh.append(key)
        self.n_params += math.prod(shape)

    def _add_edge(self, s: int, d: int, net: Network, number: int | None = None, at=None) -> None:
        """at(s, d): the edge's (input position, output position), where the caller keeps them."""
        e = len(self.edges) if number is None else number
        self.edges[(s, d)] = e
        inpos, outpos = at(s, d) if at else (net.inputs(d).index(s), net.outputs(s).index(d))
        self.records.append((e, self.slot[s], self.slot[d], self.offsets[("W", s, d)], inpos, outpos))

    def _finish(self, net: Network, added: list | None = None) -> None:
        """What follows from the slots and offsets; `added`: the groups appended to a layout
        whose groups all have dense kernels, whose per-group arrays are extended, not remade."""
        if self.n_params >= 2**31:  # the kernels' offsets are 32-bit
            raise BackendError(f"{self.n_params} parameters exceed the CUDA engine's 2^31 limit")
        self.col_off = np.concatenate([[0], np.cumsum(self.width)[:-1]]).astype(np.int32)
        self.n_cols = int(self.width.sum())
        self.output_slot, self.input_slot = self.slot[OUTPUT], self.slot[INPUT]
        self.n_edges = len(self.edges)
        self.output_fan_in = len(net.inputs(OUTPUT))
        bias_off = lambda groups: np.array([self.offsets.get(("b", g), 0) for g in groups], np.int32)
        if added is not None and not self.kinds.any:  # new ids are the highest: grad_std's order holds
            self.bias_off = np.concatenate([self.bias_off, bias_off(added)])
            self.std_ids = self.std_ids + list(added)
            self.std_slots = np.concatenate([self.std_slots, np.array([self.slot[g] for g in added], np.intp)])
            self.kinds = kind_lists.extended(self.kinds, net, added)
            return
        self.bias_off = bias_off(self.groups)
        order = sorted((g, s) for s, g in enumerate(self.groups) if g != INPUT)  # grad_std's order
        self.std_ids, self.std_slots = [g for g, _ in order], np.array([s for _, s in order], np.intp)
        self.kinds = kind_lists.build(net, self.slot, self.offsets)

    def grown(self, net: Network, log: list) -> "Layout":
        """The index of `net`, grown from this one's network by the operations in `log`."""
        new = copy.copy(self)
        new.slot, new.groups = dict(self.slot), list(self.groups)
        new.offsets, new.shapes, new.edges = dict(self.offsets), dict(self.shapes), dict(self.edges)
        new.fresh, new.records = [], []
        added = sorted(set(net.widths).difference(self.slot))
        for g in added:
            new.slot[g] = len(new.groups)
            new.groups.append(g)
        new._add_groups(net, added)
        at = _Positions(net)
        moved = {o.new: o.old for o in log if isinstance(o, op.Move)}
        for key, old in moved.items():  # the block and the edge change owner; the state starts afresh
            new.offsets[key], new.shapes[key] = new.offsets.pop(old), new.shapes.pop(old)
            new.fresh.append(key)
            new._add_edge(key[1], key[2], net, number=new.edges.pop(old[1:]), at=at)
        for g in added:
            for key in [("W", s, g) for s in net.inputs(g)] + [("W", g, d) for d in net.outputs(g)] + [("b", g)]:
                if key not in new.offsets:
                    new._add_param(key, net)
            for s, d in [(s, g) for s in net.inputs(g)] + [(g, d) for d in net.outputs(g)]:
                if (s, d) not in new.edges:
                    new._add_edge(s, d, net, at=at)
        top = int(self.group_id.max())
        new._finish(net, added if all(g > top for g in added) else None)
        return new


class _Positions:
    """An edge's place among its destination's inputs and its source's outputs, each group's
    lists indexed once (a grown layout adds edges into groups of wide fan-in, the output above
    all: a list's index() per edge made a growth step O(new edges x fan-in))."""

    def __init__(self, net: Network):
        self.net, self.ins, self.outs = net, {}, {}

    def __call__(self, s: int, d: int) -> tuple[int, int]:
        if d not in self.ins:
            self.ins[d] = {x: i for i, x in enumerate(self.net.inputs(d))}
        if s not in self.outs:
            self.outs[s] = {x: i for i, x in enumerate(self.net.outputs(s))}
        return self.ins[d][s], self.outs[s][d]
