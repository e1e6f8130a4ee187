"""The network description: neuron groups, the edges between them and their parameters.

A network is a directed acyclic graph. Group 0 is the input (flat samples, (C, H, W) images or
(T, F) token sequences: genlab.shapes), group 1 the output (linear, one value per class), every
other group a hidden group of some kind (genlab.kinds: dense + ReLU by default, conv, attention).
An edge carries a weight block, every group but the input a vector of its own (its bias first).
Nothing here knows about devices: engines load a Network and write trained parameters back.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np

from .. import checks, dag, shapes
from ..errors import GraphError
from ..group_ids import INPUT, OUTPUT
from ..kinds import DEFAULT, GroupKind, get_kind
from . import constructors as _constructors  # they build Networks (the class methods below)
from . import file as network_file
from .blocks import Blocks
from .holding import Holding
from .validation import validate


class Network:
    """A DAG of neuron groups with one input group (id 0) and one output group (id 1).

    >>> net = Network(4, 3)
    >>> h = net.add_group(8, inputs=[net.input])
    >>> net.connect(h, net.output)
    >>> net.n_params
    67
    """

    input = INPUT
    output = OUTPUT

    def __init__(self, n_inputs: int | None = None, n_outputs: int | None = None, seed: int = 0,
                 dtype=np.float32, *, input_shape=None):
        self.form, self.input_shape = shapes.input_form(n_inputs, input_shape)
        checks.width(n_outputs, "the output group")
        seed = checks.integer(seed, "seed", 0)
        self.dtype = checks.float_dtype(dtype)
        self.widths: dict[int, int] = {INPUT: shapes.input_width(self.form, self.input_shape), OUTPUT: int(n_outputs)}
        self.version = 0  # counts the edits of topology and parameter blocks (a trainer reloads on a change)
        self._weights: dict[tuple[int, int], np.ndarray] = Blocks(self)
        self._biases: dict[int, np.ndarray] = Blocks(self, {OUTPUT: np.zeros(n_outputs, self.dtype)})
        self.kinds: dict[int, str] = {OUTPUT: DEFAULT}  # every group but the input: its kind's name
        self.options: dict[int, dict] = {}  # the kind's options of each group that has some (conv: kernel, stride)
        self.grids: dict[int, tuple[int, int]] = {}  # conv groups: the (H, W) grid their inputs share
        self.history: list[dict] = []  # growth events, JSON-ready (see genlab.growth)
        self.delays: dict[tuple[int, int], int] = {}  # recurrent edges: (src, dst) -> steps of delay
        self._in: dict[int, list[int]] = {INPUT: [], OUTPUT: []}
        self._out: dict[int, list[int]] = {INPUT: [], OUTPUT: []}
        self._next_id = 2
        self._rng = np.random.default_rng(seed)
        self.holding = Holding()  # the trainer holding newer parameters than these arrays, if any

    @property
    def weights(self) -> dict[tuple[int, int], np.ndarray]:
        """{(src, dst): weight block}. While a Trainer holds the network, reading this gives the
        trainer's latest parameters; replace a block (net.weights[e] = new) rather than editing
        it in place: the arrays a trainer wrote are read-only."""
        self.holding.settle()
        return self._weights

    @weights.setter
    def weights(self, value) -> None:
        self._weights = Blocks(self, value)
        self.version += 1

    @property
    def biases(self) -> dict[int, np.ndarray]:
        """{group: bias}, as weights."""
        self.holding.settle()
        return self._biases

    @biases.setter
    def biases(self, value) -> None:
        self._biases = Blocks(self, value)
        self.version += 1

    def freeze_arrays(self) -> None:
        """Make every parameter array read-only as it is, without asking a holder for newer ones
        (a trainer does this once it has copied its parameters in: replace a block to change it)."""
        for a in (*self._weights.values(), *self._biases.values()):
            a.flags.writeable = False

    @property
    def rng_state(self) -> dict:
        """The state of the random stream growth and init draw from (a checkpoint keeps it)."""
        return self._rng.bit_generator.state

    @rng_state.setter
    def rng_state(self, state: dict) -> None:
        self._rng.bit_generator.state = state

    @property
    def n_inputs(self) -> int:
        return self.widths[INPUT]

    @property
    def n_outputs(self) -> int:
        return self.widths[OUTPUT]

    def add_group(self, width: int, inputs=(), outputs=(), kind: str = DEFAULT, **options) -> int:
        """Add a hidden group of `kind` (genlab.kinds.KINDS) fed by `inputs` and feeding
        `outputs`; return its id. `options` are the kind's: conv takes kernel (odd, default 3) and
        stride (default 1), attention heads (default 1); a conv group's grid is its inputs'.

        Atomic: everything is checked first, and a failure part-way (a cycle through `outputs`,
        no memory) undoes what was done, so a bad call leaves the network exactly as it was.
        """
        checks.width(width, "a group")
        group_kind = get_kind(kind)
        shapes.check_kind(self, group_kind)
        options = group_kind.options(options)
        inputs = [self._check_endpoint(g, "inputs") for g in checks.id_list(inputs, "inputs")]
        outputs = [self._check_endpoint(g, "outputs") for g in checks.id_list(outputs, "outputs")]
        for src in inputs:
            if src == OUTPUT:
                raise GraphError(f"the output group {OUTPUT} cannot feed another group")
        for dst in outputs:
            if dst == INPUT:
                raise GraphError(f"the input group {INPUT} cannot have inputs")
        for ids, where in ((inputs, "inputs"), (outputs, "outputs")):
            if len(set(ids)) != len(ids):
                raise GraphError(f"duplicate group in {where}: {ids}")
        for dst in outputs:
            for src in inputs:
                path = dag.path(self.forward_edges()[1], dst, src) if dst != src else [dst]
                if path is not None:
                    cycle = " -> ".join(map(str, ["new", *path, "new"]))
                    raise GraphError(f"a group fed by {src} and feeding {dst} would close the cycle {cycle}")
        self.holding.settle()
        saved = (self._next_id, self.version, self._rng.bit_generator.state)
        g = self._next_id
        spec = shapes.Spec(int(width), options, tokens=shapes.spec(self, OUTPUT).tokens)
        bias = group_kind.init_bias(spec, self._rng).astype(self.dtype)  # a MemoryError changes nothing
        self._next_id += 1
        self.widths[g] = int(width)
        self._biases[g] = bias
        self.kinds[g] = group_kind.name
        if options:
            self.options[g] = options
        self._in[g], self._out[g] = [], []
        try:
            for src in inputs:
                self.connect(src, g)
            for dst in outputs:
                self.connect(g, dst)
        except BaseException:
            for e in [e for e in self._weights if g in e]:
                self._detach(*e)
            del self.widths[g], self._biases[g], self.kinds[g], self._in[g], self._out[g]
            self.options.pop(g, None)
            self.grids.pop(g, None)
            self._next_id, self.version = saved[0], saved[1]
            self._rng.bit_generator.state = saved[2]
            raise
        self.version += 1
        return g

    def connect(self, src: int, dst: int, weight=None, delay: int = 0) -> None:
        """Add the edge src -> dst with `weight` (width[dst] x width[src], finite real numbers) or
        a He-normal draw. delay=k > 0 makes it recurrent: dst at time t reads src at time t - k
        (zero before the sequence starts); such an edge may close a cycle, even a self-loop."""
        delay = checks.integer(delay, "delay", 0, 2**20)
        src = self._check_endpoint(src, "source")
        dst = self._check_endpoint(dst, "destination")
        if dst == INPUT:
            raise GraphError(f"edge {src} -> {dst}: the input group {INPUT} cannot have inputs")
        if src == OUTPUT:
            raise GraphError(f"edge {src} -> {dst}: the output group {OUTPUT} cannot feed another group")
        if (src, dst) in self._weights:
            raise GraphError(f"edge {src} -> {dst} already exists")
        if delay and self.form is not shapes.Form.FLAT:
            raise GraphError(f"edge {src} -> {dst}: recurrent edges (delay) run in networks of flat inputs")
        path = dag.path(self.forward_edges()[1], dst, src) if delay == 0 else None
        if path is not None:
            cycle = " -> ".join(map(str, [src] + path))
            raise GraphError(f"edge {src} -> {dst} would close the cycle {cycle}")
        grid = shapes.check_edge(self, src, dst)
        kind, spec = self.kind(dst), dataclasses.replace(shapes.spec(self, dst), grid=grid)
        src_width = shapes.edge_width(self, src, dst)
        shape = kind.edge_shape(spec, src_width)
        self.holding.settle()
        if weight is None:
            fan_in = sum(shapes.edge_width(self, s, dst) for s in self._in[dst]) + src_width
            weight = kind.draw_edge(spec, self._rng, shape, fan_in)
        weight = checks.parameter(weight, f"the weight of edge {src} -> {dst}", self.dtype)
        if weight.shape != shape:
            raise GraphError(
                f"width mismatch on edge {src} -> {dst}: weight block is {weight.shape}, "
                f"expected {shape} = (width of {dst}, width of {src})")
        self._weights[(src, dst)] = weight.astype(self.dtype, copy=True)
        if grid is not None:
            self.grids[dst] = grid
        if delay:
            self.delays[(src, dst)] = delay
        self._in[dst].append(src)
        self._out[src].append(dst)
        self.version += 1

    def _detach(self, src: int, dst: int) -> np.ndarray:
        self.delays.pop((src, dst), None)
        self._in[dst].remove(src)
        self._out[src].remove(dst)
        return self._weights.pop((src, dst))

    def disconnect(self, src: int, dst: int) -> np.ndarray:
        """Remove the edge src -> dst and return its weight block."""
        src, dst = checks.group_id(src, "source"), checks.group_id(dst, "destination")
        if (src, dst) not in self._weights:
            raise GraphError(f"there is no edge {src} -> {dst}")
        self.holding.settle()
        self.version += 1
        return self._detach(src, dst)

    def reroute(self, src: int, dst: int, new_src: int) -> None:
        """Move the edge src -> dst to new_src -> dst, keeping its weight block and its place
        among dst's inputs (so sums over inputs keep their order)."""
        src, dst, new_src = (checks.group_id(g, what) for g, what in
                             ((src, "source"), (dst, "destination"), (new_src, "new source")))
        if (src, dst) not in self._weights:
            raise GraphError(f"there is no edge {src} -> {dst}")
        weight = self.weights[(src, dst)]
        if new_src not in self.widths or self.sample_shape(new_src) != self.sample_shape(src):
            raise GraphError(f"cannot move edge {src} -> {dst} to group {new_src}: their outputs' shapes differ "
                             "or it does not exist")
        delay = self.delays.get((src, dst), 0)
        if (new_src, dst) in self.weights or (delay == 0 and dag.path(self.forward_edges()[1], dst, new_src) is not None):
            raise GraphError(f"cannot move edge {src} -> {dst} to {new_src} -> {dst}: duplicate edge or cycle")
        del self.weights[(src, dst)]
        self.delays.pop((src, dst), None)
        if delay:
            self.delays[(new_src, dst)] = delay
        self._out[src].remove(dst)
        self._in[dst][self._in[dst].index(src)] = new_src
        self._out[new_src].append(dst)
        self._weights[(new_src, dst)] = weight
        self.version += 1

    def remove_group(self, g: int) -> None:
        """Remove hidden group g and its edges (no validation: the caller rewires first)."""
        g = checks.group_id(g)
        if g in (INPUT, OUTPUT) or g not in self.widths:
            raise GraphError(f"group {g} is not a hidden group of this network")
        self.holding.settle()
        for src in list(self._in[g]):
            self._detach(src, g)
        for dst in list(self._out[g]):
            self._detach(g, dst)
        del self.widths[g], self._biases[g], self.kinds[g], self._in[g], self._out[g]
        self.options.pop(g, None)
        self.grids.pop(g, None)
        self.version += 1

    def kind(self, g: int) -> GroupKind:
        """The kind of group g (genlab.kinds); the input group has none."""
        g = checks.group_id(g)
        if g == INPUT:
            raise GraphError(f"the input group {INPUT} has no kind: it holds the features")
        if g not in self.kinds:
            raise GraphError(f"group {g} does not exist (groups: {self.groups})")
        return get_kind(self.kinds[g])

    def spec(self, g: int) -> "shapes.Spec":
        """Group g as its kind sees it: width, options, grid, tokens (genlab.kinds.Spec)."""
        return shapes.spec(self, self._check_endpoint(g, "group"))

    def sample_shape(self, g: int) -> tuple[int, ...]:
        """The shape of one sample of g's output: (width,), (channels, H, W) or (tokens, width)."""
        return shapes.sample_shape(self, g)

    def _check_endpoint(self, g, role: str) -> int:
        g = checks.group_id(g, role)
        if g not in self.widths:
            raise GraphError(f"{role}: group {g!r} does not exist (groups: {self.groups})")
        return g

    def assign(self, other: "Network") -> None:
        """Take over other's whole state (used to commit an edit made on a copy)."""
        holding, version = self.holding, self.version
        self.__dict__.update(other.__dict__)
        self._weights, self._biases = Blocks(self, other._weights), Blocks(self, other._biases)
        self.holding, self.version = holding, max(version, other.version) + 1

    def copy(self, deep: bool = True, pull: bool = True) -> "Network":
        """A copy, not held by any trainer. deep=False copies the topology and shares the parameter
        arrays: enough for edits that replace arrays rather than change them in place, as growth
        and pruning do. pull=False copies the parameters as they are here, without asking a
        trainer holding the network for newer ones."""
        if pull:
            self.holding.settle()
        net = Network.__new__(Network)
        net.__dict__.update(self.__dict__)
        net.holding = Holding()
        net.widths, net.kinds = dict(self.widths), dict(self.kinds)
        net.options, net.grids = {g: dict(o) for g, o in self.options.items()}, dict(self.grids)
        net._in, net._out = ({g: list(v) for g, v in d.items()} for d in (self._in, self._out))
        net.history = copy.deepcopy(self.history) if deep else list(self.history)
        net.delays = dict(self.delays)
        blocks = (lambda d: {k: v.copy() for k, v in d.items()}) if deep else dict
        net._weights, net._biases = Blocks(net, blocks(self._weights)), Blocks(net, blocks(self._biases))
        net._rng = np.random.Generator(type(self._rng.bit_generator)())  # (a third of deepcopy's time)
        net._rng.bit_generator.state = self._rng.bit_generator.state
        return net

    def __getstate__(self) -> dict:
        """For pickle and copy.deepcopy: everything but the link to a trainer holding the network."""
        self.holding.settle()
        state = {**self.__dict__, "_weights": dict(self._weights), "_biases": dict(self._biases)}
        del state["holding"]
        return state

    def __setstate__(self, state: dict) -> None:
        state.pop("_source", None)  # the link to a trainer, as genlab 0.x pickled it (always None)
        self.__dict__.update(state)
        self.holding = Holding()
        self._weights, self._biases = Blocks(self, state["_weights"]), Blocks(self, state["_biases"])

    def astype(self, dtype) -> None:
        """Hold every parameter in `dtype` (float32 or float64), in place."""
        dtype = checks.float_dtype(dtype)
        if dtype != self.dtype:
            self.holding.settle()
            self.dtype = dtype
            self._weights = Blocks(self, {k: v.astype(dtype) for k, v in self._weights.items()})
            self._biases = Blocks(self, {k: v.astype(dtype) for k, v in self._biases.items()})
            self.version += 1

    @property
    def groups(self) -> list[int]:
        """All group ids in ascending order (input 0, output 1, then hidden groups)."""
        return sorted(self.widths)

    @property
    def hidden_groups(self) -> list[int]:
        return [g for g in self.groups if g not in (INPUT, OUTPUT)]

    @property
    def edges(self) -> list[tuple[int, int]]:
        """All edges (src, dst), sorted."""
        return sorted(self.weights)

    def inputs(self, g: int) -> list[int]:
        """The groups feeding g, in the order they were connected."""
        return list(self._in[g])

    def outputs(self, g: int) -> list[int]:
        """The groups g feeds, in the order they were connected."""
        return list(self._out[g])

    @property
    def n_params(self) -> int:
        return sum(w.size for w in self.weights.values()) + sum(b.size for b in self.biases.values())

    def topological_order(self) -> list[int]:
        """Groups in an order where every edge points forward (Kahn, smallest id first)."""
        self.validate()
        return dag.kahn(*self.forward_edges())

    def levels(self) -> dict[int, int]:
        """Level of each group: the longest path (in edges) from the input group (dag.levels)."""
        level = dag.levels(*self.forward_edges())
        if level is None:
            self.validate()  # raises, naming the cycle
        return level

    def forward_edges(self) -> tuple[dict, dict]:
        """({group: its inputs}, {group: its consumers}) over the edges without a delay: the DAG
        one time step runs (all edges when the network has no recurrent edge)."""
        if not self.delays:
            return self._in, self._out
        inputs = {g: [s for s in v if (s, g) not in self.delays] for g, v in self._in.items()}
        outputs = {g: [d for d in v if (g, d) not in self.delays] for g, v in self._out.items()}
        return inputs, outputs

    def delay(self, src: int, dst: int) -> int:
        """The delay of edge src -> dst (0: within a time step)."""
        return self.delays.get((src, dst), 0)

    @property
    def recurrent(self) -> bool:
        """Whether the network has a recurrent edge (it then runs on sequences)."""
        return bool(self.delays)

    def validate(self) -> None:
        """Raise GraphError naming the groups involved if the network cannot be run."""
        validate(self)

    def topology(self) -> dict:
        """A JSON-ready picture of the topology: widths, edges ((src, dst) pairs), levels, delays,
        and the labels and node shapes of groups that are not dense (no parameters)."""
        return {"widths": dict(self.widths), "edges": self.edges, "levels": self.levels(),
                "delays": [[s, d, k] for (s, d), k in sorted(self.delays.items())], **shapes.drawing(self)}

    def summary(self) -> str:
        """A text table: one row per group (level, width, inputs, outputs, parameters)."""
        return _constructors.summary(self)

    def __repr__(self) -> str:
        return (f"Network(groups={len(self.widths)}, edges={len(self.weights)}, "
                f"params={self.n_params}, inputs={self.input_shape if len(self.input_shape) > 1 else self.n_inputs}, "
                f"outputs={self.n_outputs})")

    def save(self, path) -> Path:
        """Write topology, parameters and growth history to exactly `path` (an .npz archive,
        whatever the suffix; no pickled code; genlab.network.file holds the format). Atomic: a
        failure raises SaveError and leaves the file that was there before intact."""
        return network_file.write(self, path)

    @classmethod
    def load(cls, path) -> "Network":
        """Read a network written by save() (or a checkpoint: Trainer.save) from exactly `path`,
        validated in full; a damaged or foreign file raises FileFormatError naming what is wrong."""
        return network_file.read(path, cls)


# Network.mlp, .elman, .random_dag, .conv_chain, .attention_chain, init_params: genlab.constructors

for _name in ("mlp", "elman", "random_dag", "conv_chain", "attention_chain"):
    setattr(Network, _name, classmethod(getattr(_constructors, _name)))
Network.init_params = _constructors.init_params
