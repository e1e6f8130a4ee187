"""What the kernels of kinds other than dense read, made on the host from a layout: each slot's
geometry, the slots of each kind level by level, the edges into each kind's groups, the
parameter ranges their kernels add into and those whose gradient norms they add, and the places
in the cache their forward keeps. The kind's own part comes from its CUDA side (kind_cuda.py);
the dense task lists skip these groups (their task width is 0); everything else is shared."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ... import shapes
from ...network import Network
from . import kind_cuda
from .constants import GEO_FIELDS


@dataclass
class KindLists:
    geo: np.ndarray  # GEO_INTS ints a slot (cuda/constants.cuh's GEO_*)
    task_width: np.ndarray  # the width the dense task lists see: 0 for groups of other kinds
    levels: dict  # level: {kind code: slots}, levels from 1
    edges: dict  # kind code: (src slot, dst slot, weight offset) of each edge into its groups
    slots: dict  # kind code: its groups' slots
    zeroed: np.ndarray  # (slot, first parameter, length) of the gradients kernels add into
    # (KindCuda.zero_edges: the blocks of edges into the kind's groups; zero_own: their own vectors)
    norm_ranges: np.ndarray  # ... of every parameter of the groups of other kinds
    tokens: int  # rows per sample
    cache_off: np.ndarray  # a slot's place in the cache: floats a sample before it (-1: none)
    cache_floats: int  # floats a sample the kinds' forward keeps for their backward (KindCuda.cache_floats)

    @property
    def any(self) -> bool:
        return bool(self.levels)


def build(net: Network, slot: dict, offsets: dict) -> KindLists:
    """The lists of a layout whose groups sit at `slot` and parameters at `offsets`."""
    n = len(slot)
    geo = np.zeros((n, len(GEO_FIELDS)), np.int32)
    task_width = np.zeros(n, np.int32)
    levels, edges, slots, zeroed, norms = {}, {}, {}, [], []
    cache_off, cached = np.full(n, -1, np.int32), 0
    kinds = {g: net.kind(g) for g in net.hidden_groups + [net.output]}
    level = net.levels() if any(kind.own_kernels for kind in kinds.values()) else {}
    for g, s in slot.items():
        kind = kinds.get(g)
        task_width[s] = _geometry(net, g, kind, geo[s])
        if kind is None or not kind.own_kernels:
            continue
        hooks = kind_cuda.of(kind)
        hooks.check(net, g)
        task_width[s] = 0
        levels.setdefault(level[g], {}).setdefault(kind.code, []).append(s)
        slots.setdefault(kind.code, []).append(s)
        hooks.geometry(net.options.get(g, {}), geo[s], _FIELD)
        for src in net.inputs(g):
            key = ("W", src, g)
            edges.setdefault(kind.code, []).append((slot[src], s, offsets[key]))
            norms.append((s, offsets[key], int(np.prod(net.weights[(src, g)].shape))))
            if hooks.zero_edges:
                zeroed.append(norms[-1])
        norms.append((s, offsets[("b", g)], net.biases[g].size))
        if hooks.zero_own:
            zeroed.append(norms[-1])
        floats = hooks.cache_floats(net, g)
        if floats:
            cache_off[s], cached = cached, cached + floats
    as_tasks = lambda rows: np.array(rows, np.int32).reshape(-1, 3)
    return KindLists(geo.ravel(), task_width, {lv: {k: np.array(v, np.int32) for k, v in by.items()}
                                               for lv, by in levels.items()},
                     {code: as_tasks(rows) for code, rows in edges.items()},
                     {code: np.array(rows, np.int32) for code, rows in slots.items()},
                     as_tasks(zeroed), as_tasks(norms), shapes.tokens(net), cache_off, cached)


def extended(lists: KindLists, net: Network, added: list[int]) -> KindLists:
    """The lists of a layout grown by the groups `added` (appended slots) when no group has kernels
    of its own (the only layouts the CUDA engine grows in place): their geometry appended."""
    geo, task_width = np.zeros((len(added), len(GEO_FIELDS)), np.int32), np.zeros(len(added), np.int32)
    for i, g in enumerate(added):
        kind = net.kind(g)
        if kind.own_kernels:
            raise ValueError(f"group {g} ({kind.name}) has kernels of its own: build the lists afresh")
        task_width[i] = _geometry(net, g, kind, geo[i])
    return dataclasses.replace(lists, geo=np.concatenate([lists.geo, geo.ravel()]),
                               task_width=np.concatenate([lists.task_width, task_width]),
                               cache_off=np.concatenate([lists.cache_off, np.full(len(added), -1, np.int32)]))


def _geometry(net: Network, g: int, kind, row: np.ndarray) -> int:
    """Write g's geometry into its row of geo (kind: None for the input); its task width."""
    field = _FIELD
    shape = net.sample_shape(g)
    row[field["KIND"]] = kind.code if kind else -1
    row[field["TOKENS"]] = shapes.tokens(net)
    if len(shape) == 3:
        row[field["C"]], row[field["H"]], row[field["W"]] = shape
    return shapes.columns(net, g)


_FIELD = {name: i for i, name in enumerate(GEO_FIELDS)}

