"""What the kernels of kinds other than dense read (cuda/conv.cu, cuda/attention.cu), made on the
host from a layout: each slot's geometry, the slots of each kind level by level, the weight-
gradient tasks of the edges into them, and the parameter ranges whose gradient norms they add.
The dense task lists skip these groups (their task width is 0); everything else is shared."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ... import shapes
from ...errors import BackendError
from ...network import Network
from .constants import ATT_SHARED, GEO_FIELDS


@dataclass
class KindLists:
    geo: np.ndarray  # GEO_INTS ints a slot (cuda/constants.cuh's GEO_*)
    task_width: np.ndarray  # the width the dense task lists see: 0 for groups of other kinds
    levels: dict  # level: {kind code: slots}, levels from 1
    conv_edges: np.ndarray  # (src slot, dst slot, weight offset) of the edges into conv groups
    token_edges: np.ndarray  # ... into attention groups
    conv_slots: np.ndarray
    zeroed: np.ndarray  # (slot, first parameter, length) of the gradients kernels add into: the
    # attention groups' own vectors, the blocks of edges into conv groups
    norm_ranges: np.ndarray  # ... of every parameter of the groups of other kinds
    tokens: int  # rows per sample
    cache_off: np.ndarray  # a slot's place in the attention cache: floats a sample before it (-1: none)
    cache_floats: int  # floats a sample the attention groups keep from their forward (5 T d + heads T^2 each)

    @property
    def any(self) -> bool:
        return bool(self.levels)


def build(net: Network, slot: dict, offsets: dict) -> KindLists:
    """The lists of a layout whose groups sit at `slot` and parameters at `offsets`."""
    n = len(slot)
    geo = np.zeros((n, len(GEO_FIELDS)), np.int32)
    task_width = np.zeros(n, np.int32)
    field = _FIELD
    levels, conv_edges, token_edges, conv_slots, zeroed, norms = {}, [], [], [], [], []
    cache_off, cached = np.full(n, -1, np.int32), 0
    kinds = {g: net.kind(g) for g in net.hidden_groups + [net.output]}
    level = net.levels() if any(kind.own_kernels for kind in kinds.values()) else {}
    for g, s in slot.items():
        kind = kinds.get(g)
        task_width[s] = _geometry(net, g, kind, geo[s])
        row = geo[s]
        if kind is None or not kind.own_kernels:
            continue
        task_width[s] = 0
        levels.setdefault(level[g], {}).setdefault(kind.code, []).append(s)
        options = net.options.get(g, {})
        row[field["K"]], row[field["STRIDE"]] = options.get("kernel", 0), options.get("stride", 0)
        row[field["HEADS"]], row[field["POSITIONS"]] = options.get("heads", 0), bool(options.get("positions"))
        edges = conv_edges if kind.spatial else token_edges
        for src in net.inputs(g):
            key = ("W", src, g)
            edges.append((slot[src], s, offsets[key]))
            norms.append((s, offsets[key], int(np.prod(net.weights[(src, g)].shape))))
            if kind.spatial:
                zeroed.append(norms[-1])
        norms.append((s, offsets[("b", g)], net.biases[g].size))
        if kind.spatial:
            conv_slots.append(s)
        else:
            zeroed.append((s, offsets[("b", g)], net.biases[g].size))
            _check_shared(net, g)
            cache_off[s] = cached
            T, d = shapes.tokens(net), net.widths[g]
            cached += 5 * T * d + options["heads"] * T * T
    as_tasks = lambda rows: np.array(rows, np.int32).reshape(-1, 3)
    return KindLists(geo.ravel(), task_width, {lv: {k: np.array(v, np.int32) for k, v in by.items()}
                                               for lv, by in levels.items()},
                     as_tasks(conv_edges), as_tasks(token_edges), np.array(conv_slots, np.int32), as_tasks(zeroed),
                     as_tasks(norms), shapes.tokens(net), cache_off, cached)


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


def _check_shared(net: Network, g: int) -> None:
    tokens, d, heads = shapes.tokens(net), net.widths[g], net.options[g]["heads"]
    need = 10 * tokens * d + 2 * heads * tokens * tokens
    if need > ATT_SHARED:
        raise BackendError(f"attention group {g} ({tokens} tokens x width {d}, {heads} heads) needs {need} floats "
                           f"of shared memory; the CUDA kernels hold {ATT_SHARED}: use the serial engine or a "
                           "smaller group")
