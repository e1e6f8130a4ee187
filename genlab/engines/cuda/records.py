"""The CUDA engine's device state as typed records, each made by one module.

A record is a frozen set of device buffers (a PyCUDA allocation, or an address inside an arena
that the record's `held` keeps alive). The engine holds one `DeviceState` and swaps it whole, or a
record of it, only once everything new is made (a failure leaves the old one in place):

    record          made by                 what it holds
    Parameters      engine.load, growth     the flat parameters, their gradients, the optimizer state
    Groups          topology                per group slot: width, offsets, id, hidden, kind fields
    KindLists       topology (kind_lists)   the lists of the groups of other kinds, by level and kind
    Edges, Csr      topology                the edge list; in-edges and out-edges by group; levels
    Tasks           topology                each tier's forward, backward and weight task lists
    StepSums        topology (arena)        a step's per-group sums, weight-gradient sums, scalars
    GrowthScratch   topology (arena)        the growth rules' marks, ranks and constant groups
    Ranges          topology (arena)        each neuron's activation range (pruning)
    Scores          growth.group_state      the smoothed growth and Taylor scores per group
    Rows            engine.batch_buffers    activations, dz, labels and scratch for `cap` rows

An executor's own lists (`DeviceState.own`) are a record of its module's. Field names are the
names the kernels' parameters and argument structs (cuda/*.cu) give the same buffers:
`DeviceState.by_name` lists them once a state, and a launch by name (runtime.by_name) or a struct
filled by member name (runtime.pack) takes what it is not given from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from collections.abc import Mapping
from functools import cache, cached_property
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

Ptr = Any  # a device allocation (int() is its address) or an address


def addr(buf: Ptr, offset_bytes: int = 0) -> int:
    """The device address `offset_bytes` into `buf`."""
    return int(buf) + offset_bytes


NULL = np.intp(0)  # a kernel's pointer argument where a buffer is absent


@dataclass(frozen=True)
class Record:
    """A record of device buffers. `held`: the allocations its addresses point into."""

    held: tuple = field(default=(), repr=False, compare=False, kw_only=True)

    @classmethod
    @cache  # once a class (a growth event makes a dozen records; dataclasses.fields is not free)
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name != "held")

    @classmethod
    def take(cls, parts: dict, held: tuple = (), **given):
        """The record of the parts called by its field names (`given` named here)."""
        return cls(**{name: parts[name] for name in cls.names() if name not in given}, **given, held=held)

    def items(self):
        return ((name, getattr(self, name)) for name in self.names())


@dataclass(frozen=True)
class Parameters(Record):
    """The flat parameter buffer, its gradients and the optimizer's state in the same layout
    (state in optimizer.state_names order)."""

    params: Ptr
    grads: Ptr
    state: tuple[Ptr, ...]

    def state_args(self) -> list:
        """The three state pointers optim.cu's kernels take (null where an optimizer keeps fewer)."""
        return [*self.state, *[NULL] * (3 - len(self.state))]

    def kept(self) -> dict[str, Ptr]:
        """What a step changes, by name: the parameters and each state buffer."""
        return {"params": self.params, **{f"state{i}": s for i, s in enumerate(self.state)}}


@dataclass(frozen=True)
class Groups(Record):
    """Per group slot (topology.cu's inputs): width, first column, bias offset, group id, whether
    hidden, neurons a task, a kind's geometry and its attention-cache offset."""

    SLOT: ClassVar[tuple[str, ...]] = ("width", "col_off", "bias_off", "group_id", "hidden")

    width: Ptr
    col_off: Ptr
    bias_off: Ptr
    group_id: Ptr
    hidden: Ptr
    task_width: Ptr
    geo: Ptr
    cache_off: Ptr


@dataclass(frozen=True)
class KindLists(Record):
    """The lists of the groups of other kinds (kind_lists.py): the shared flat ones, by kind code
    the edges into its groups and their slots, and per (level, kind code) the slots a launch of
    that kind runs at that level."""

    LISTS: ClassVar[tuple[str, ...]] = ("zeroed", "norm_ranges")

    zeroed: Ptr
    norm_ranges: Ptr
    edges: dict
    slots: dict
    by_level: dict


@dataclass(frozen=True)
class Edges(Record):
    """The edge list: source and destination slot, weight offset, positions among the
    destination's in-edges and the source's out-edges."""

    e_src: Ptr
    e_dst: Ptr
    e_woff: Ptr
    e_inpos: Ptr
    e_outpos: Ptr


@dataclass(frozen=True)
class Csr(Record):
    """In-edges and out-edges by group (compressed rows), and each group's level."""

    in_ptr: Ptr
    in_src: Ptr
    in_dst: Ptr
    in_woff: Ptr
    out_ptr: Ptr
    out_dst: Ptr
    out_woff: Ptr
    level: Ptr


@dataclass(frozen=True)
class TierTasks(Record):
    """One tier's task lists (topology.cu's topo_tasks and topo_weight_tasks)."""

    forward_tasks: Ptr
    backward_tasks: Ptr
    weight_tasks: Ptr


@dataclass(frozen=True)
class Tasks(Record):
    """Every tier's lists (by list prefix, "" the first tier's) and the bias tasks."""

    tiers: dict
    bias_tasks: Ptr

    @property
    def first(self) -> TierTasks:
        return self.tiers[""]


@dataclass(frozen=True)
class StepSums(Record):
    """What a step sums: per group (sum, sum of squares, sum of h dL/dh of dL/dh, as doubles),
    per group weight-gradient sums, the scalars (loss: double at 0, correct: int at 8, squared
    gradient: double at 16) and a data-parallel step's packed sums."""

    CORRECT: ClassVar[int] = 8
    GRADSQ: ClassVar[int] = 16

    stats: Ptr
    wstats: Ptr
    scalars: Ptr
    replica_sums: Ptr

    @property
    def correct(self) -> int:
        return addr(self.scalars, self.CORRECT)

    @property
    def gradsq(self) -> int:
        return addr(self.scalars, self.GRADSQ)


@dataclass(frozen=True)
class GrowthScratch(Record):
    """The growth rules' scratch (growth.cu): the population's statistics, which groups may grow,
    which are marked, kept and in which rank, and which are constant (pruning)."""

    population: Ptr
    eligible: Ptr
    marked: Ptr
    keep: Ptr
    rank: Ptr
    constant: Ptr


@dataclass(frozen=True)
class Ranges(Record):
    """Per neuron: this batch's activation range, the running range since pruning last judged,
    and the range at that judgement (the folds' constants)."""

    range_min: Ptr
    range_max: Ptr
    run_lo: Ptr
    run_hi: Ptr
    run_const: Ptr


@dataclass(frozen=True)
class Scores(Record):
    """Per group, carried by group id through re-layouts: the growth criterion's moving average,
    the Taylor score's, and whether each was seen."""

    TYPES: ClassVar[dict] = {"ema": np.float64, "seen": np.int32, "taylor": np.float64, "taylor_seen": np.int32}

    ema: Ptr
    seen: Ptr
    taylor: Ptr
    taylor_seen: Ptr


@dataclass(frozen=True)
class Rows(Record):
    """What follows from the batch capacity: activations and their gradients (in the executor's
    layout, each group's block at act_off), the labels, what the kinds' forward keeps for their
    backward (the cache: attention), a sequence network's pooled logits, the split-K scratch, the
    output group's parts and the dependency counters (NULL where the network or executor has none)."""

    act: Ptr
    dz: Ptr
    labels: Ptr
    act_off: Ptr
    cache: Ptr = NULL
    pooled: Ptr = NULL
    dpooled: Ptr = NULL
    split_partials: Ptr = NULL
    split_tickets: Ptr = NULL
    output_parts: Ptr = NULL
    counters: Ptr = NULL


@dataclass(frozen=True)
class Topology:
    """Everything topology.build makes for a layout (all but parameters and scores)."""

    groups: Groups
    kinds: KindLists
    edges: Edges
    csr: Csr
    tasks: Tasks
    sums: StepSums
    growth: GrowthScratch
    ranges: Ranges
    rows: Rows
    own: Any  # the executor's own lists (Executor.topology_buffers), or None


@dataclass(frozen=True)
class DeviceState(Topology):
    """The engine's whole device state."""

    parameters: Parameters
    scores: Scores

    @classmethod
    def of(cls, topology: Topology, parameters: Parameters, scores: Scores) -> "DeviceState":
        return cls(**{f.name: getattr(topology, f.name) for f in fields(Topology)}, parameters=parameters,
                   scores=scores)

    def with_topology(self, topology: Topology) -> "DeviceState":
        return replace(self, **{f.name: getattr(topology, f.name) for f in fields(Topology)})

    @cached_property
    def by_name(self) -> Mapping[str, int]:
        """Every buffer's address by its field name (the kernels' parameter and struct member
        names: a launch by name, runtime.by_name, and a struct filled by name, runtime.pack, take
        what they are not given from here), worked out once a state and read-only (the struct
        Net a launch fills from it is worked out once too). Lists of buffers (a dict or tuple
        field) have no one address and are left out."""
        records = [getattr(self, f.name) for f in fields(DeviceState)]
        return MappingProxyType({name: int(buf) for rec in records if isinstance(rec, Record)
                                 for name, buf in rec.items() if not isinstance(buf, (dict, tuple))})
