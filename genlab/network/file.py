"""The network file: one .npz holding a JSON metadata member (__meta__: format, version, dtype,
widths, edges in each group's input order, kinds, next id, growth history) and one array per
weight block (W_src_dst) and bias (b_g). No pickled code.

Reading validates everything and reads only the members the metadata names, each within the
size its shape allows: any failure is a FileFormatError naming the member and what is wrong.
A checkpoint (genlab.checkpoint) is a network file with more members, so Network.load reads one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import checks, shapes
from ..checks import FLOAT_DTYPES
from ..errors import FileFormatError, GraphError
from ..files import NpzReader, write_npz
from ..group_ids import INPUT, OUTPUT
from ..kinds import KINDS, DEFAULT, get_kind
from ..operations import Change

if TYPE_CHECKING:
    from .core import Network

FORMAT = "genlab.network"
FORMAT_VERSION = 1
MAX_META_BYTES = 64 * 2**20  # JSON of a 4000-group network with its history: about 2 MB
EVENT_KINDS = tuple(Change)  # what a saved history's events may be


def to_meta(net: Network) -> dict:
    return {
        "format": FORMAT, "version": FORMAT_VERSION, "dtype": net.dtype.name,
        "widths": {str(g): w for g, w in net.widths.items()},
        # edges in connection order per destination, so inputs() survives a round trip
        "edges": [[s, d] for d in net.groups for s in net.inputs(d)],
        "kinds": {str(g): k for g, k in net.kinds.items()},
        # each group's consumers in connection order too (sums over them keep their order)
        "outputs": {str(g): net.outputs(g) for g in net.groups if net.outputs(g)},
        "next_id": net._next_id, "history": net.history,
        "delays": [[s, d, k] for (s, d), k in sorted(net.delays.items())],  # recurrent edges
        "input_shape": list(net.input_shape),  # group kinds: the sample's shape, options, conv grids
        "options": {str(g): o for g, o in net.options.items()},
        "grids": {str(g): list(grid) for g, grid in net.grids.items()},
    }


def to_arrays(net: Network, prefix: str = "") -> dict[str, np.ndarray]:
    """Every member of the network's part of a file (metadata included), names prefixed."""
    arrays = {f"{prefix}__meta__": json_member(to_meta(net))}
    arrays.update({f"{prefix}W_{s}_{d}": np.asarray(w, net.dtype) for (s, d), w in net.weights.items()})
    arrays.update({f"{prefix}b_{g}": np.asarray(b, net.dtype) for g, b in net.biases.items()})
    return arrays


def json_member(value) -> np.ndarray:
    return np.frombuffer(json.dumps(value, allow_nan=False).encode(), dtype=np.uint8)


def write(net: Network, path) -> Path:
    """Write `net` to exactly `path`, atomically; return the path. A network that could not be
    loaded back (a group cut off, say) raises GraphError and writes nothing."""
    net.validate()
    checks.finite_parameters(net)
    return write_npz(path, to_arrays(net))


# a checkpoint's members beside its network's (genlab.checkpoint writes them): the starting
# network, the optimizer's state, the pruning tracker's ranges
START, OPT, RANGE = "start/", "opt/", "range/"
CHECKPOINT_PARTS = (START, OPT, RANGE)


def read(path, network_class) -> Network:
    """The network in a file written by write() (or a checkpoint), built as network_class
    (Network.load passes its class: this module stores networks and does not import them);
    FileFormatError when damaged."""
    with NpzReader(path) as reader:
        net = read_from(reader, network_class)
        if reader.has("__trainer__"):  # a checkpoint: its trainer's members are named by its format
            reader.refuse_unread(lambda name: name == "__trainer__.npy" or name.startswith(CHECKPOINT_PARTS))
        else:
            reader.refuse_unread()
        return net


def read_json(reader: NpzReader, name: str, max_bytes: int = MAX_META_BYTES):
    raw = reader.array(name, max_bytes)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise FileFormatError(f"{reader.path}: member {name!r} is not JSON text")
    try:
        return json.loads(raw.tobytes().decode(), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise FileFormatError(f"{reader.path}: damaged metadata in member {name!r} ({e})") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def read_from(reader: NpzReader, network_class, prefix: str = "") -> Network:
    """The network stored under `prefix` in an open file, built as network_class, validated in full."""
    name = f"{prefix}__meta__"
    if not reader.has(name):
        raise FileFormatError(f"{reader.path} is an .npz file but not a genlab network (no metadata): member {name!r} is missing")
    meta = read_json(reader, name)
    m = _Meta(reader.path, name, meta)
    dtype = m.dtype()
    widths = m.widths()
    kinds = m.kinds(widths)
    edges = m.edges(widths)
    next_id = m.next_id(widths)
    history = m.history()
    try:
        net = network_class(n_outputs=widths[OUTPUT], input_shape=m.input_shape(widths), dtype=dtype)
    except GraphError as e:  # a width beyond genlab's limits, say
        raise FileFormatError(f"{reader.path}: member {name!r} describes an invalid network: {e}") from None
    net.widths, net.kinds, net._next_id, net.history = widths, kinds, next_id, history
    net.options, net.grids = m.options(kinds), m.grids(kinds)
    net._in = {g: [] for g in widths}
    net._out = {g: [] for g in widths}
    weights, biases = {}, {}
    for s, d in edges:
        shape = _edge_shape(m, net, s, d)
        weights[(s, d)] = _param(reader, f"{prefix}W_{s}_{d}", shape, dtype)
        net._in[d].append(s)
        net._out[s].append(d)
    net.delays = m.delays(set(edges))
    for g, order in m.outputs(net._out).items():
        net._out[g] = order
    for g in widths:
        if g != INPUT:
            biases[g] = _param(reader, f"{prefix}b_{g}", get_kind(kinds[g]).bias_shape(net.spec(g)), dtype)
    net._weights.update(weights)
    net._biases = biases
    try:
        net.validate()
    except GraphError as e:
        raise FileFormatError(f"{reader.path}: member {name!r} describes an invalid network: {e}") from None
    return net


def _edge_shape(m: "_Meta", net: Network, s: int, d: int) -> tuple:
    """The shape of edge s -> d's block from the widths, kinds, options and grids read so far."""
    try:
        return net.kind(d).edge_shape(net.spec(d), shapes.edge_width(net, s, d))
    except (GraphError, TypeError) as e:
        raise m.bad("edges", f"edge {s} -> {d} does not fit its groups: {e}") from None


def _param(reader: NpzReader, name: str, shape: tuple, dtype: np.dtype) -> np.ndarray:
    value = reader.array(name, dtype.itemsize * math.prod(shape))
    if value.dtype != dtype:
        raise FileFormatError(f"{reader.path}: member {name!r} has dtype {value.dtype}, the file's dtype is {dtype}")
    if value.shape != tuple(shape):
        raise FileFormatError(f"{reader.path}: member {name!r} has shape {value.shape}, its groups' widths "
                              f"need {tuple(shape)}")
    if not np.isfinite(value).all():
        raise FileFormatError(f"{reader.path}: member {name!r} holds non-finite values")
    return np.ascontiguousarray(value)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Meta:
    """The metadata's fields, each checked with an error naming the member and the field."""

    def __init__(self, path, member: str, meta):
        self.path, self.member, self.meta = path, member, meta
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise FileFormatError(f"{path} is not a genlab network file (member {member!r} has no genlab format)")
        if meta.get("version") != FORMAT_VERSION:
            raise FileFormatError(f"{path} has format version {meta.get('version')!r}; this genlab reads "
                                  f"version {FORMAT_VERSION}")

    def bad(self, field: str, what: str) -> FileFormatError:
        return FileFormatError(f"{self.path}: member {self.member!r}, field {field!r}: {what}")

    def field(self, name: str, kind, default=None):
        value = self.meta.get(name, default)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise self.bad(name, f"expected {getattr(kind, '__name__', kind)}, got {type(value).__name__}")
        return value

    def _group(self, text, field: str) -> int:
        if not isinstance(text, str) or not (text.isascii() and text.isdigit()) or str(int(text)) != text:
            raise self.bad(field, f"group id {text!r} is not a non-negative integer")
        return int(text)

    def dtype(self) -> np.dtype:
        dtype = self.meta.get("dtype")
        if dtype not in FLOAT_DTYPES:
            raise self.bad("dtype", f"{dtype!r} is not one of {', '.join(FLOAT_DTYPES)}")
        return np.dtype(dtype)

    def widths(self) -> dict[int, int]:
        widths = {}
        for key, w in self.field("widths", dict).items():
            g = self._group(key, "widths")
            if not _is_int(w) or w <= 0:
                raise self.bad("widths", f"group {g} has width {w!r}; widths are positive integers")
            widths[g] = w
        for g, role in ((INPUT, "input"), (OUTPUT, "output")):
            if g not in widths:
                raise self.bad("widths", f"no {role} group {g}")
        return dict(sorted(widths.items()))

    def kinds(self, widths: dict) -> dict[int, str]:
        stored = {self._group(k, "kinds"): v for k, v in self.field("kinds", dict, {}).items()}
        extra = set(stored) - (set(widths) - {INPUT})
        if extra:
            raise self.bad("kinds", f"kinds for groups that are not hidden or output groups: {sorted(extra)}")
        kinds = {}
        for g in widths:
            if g != INPUT:
                kind = stored.get(g, DEFAULT)  # files written before group kinds hold dense groups only
                if not isinstance(kind, str) or kind not in KINDS:
                    raise self.bad("kinds", f"group {g} has unknown group kind {kind!r} (known: {', '.join(KINDS)})")
                kinds[g] = kind
        return kinds

    def edges(self, widths: dict) -> list[tuple[int, int]]:
        edges, seen = [], set()
        for item in self.field("edges", list):
            if not (isinstance(item, list) and len(item) == 2 and all(_is_int(v) for v in item)):
                raise self.bad("edges", f"{item!r} is not a pair of group ids")
            s, d = item
            if s not in widths or d not in widths:
                raise self.bad("edges", f"edge {s} -> {d} names a group that does not exist")
            if (s, d) in seen:
                raise self.bad("edges", f"edge {s} -> {d} appears twice")
            if d == INPUT or s == OUTPUT:
                raise self.bad("edges", f"edge {s} -> {d} is not allowed (into the input or out of the output)")
            seen.add((s, d))
            edges.append((s, d))
        return edges

    def outputs(self, out: dict) -> dict[int, list[int]]:
        """Each group's consumers in their stored order (files without the field: edge order)."""
        stored = self.meta.get("outputs")
        if stored is None:
            return {}
        if not isinstance(stored, dict):
            raise self.bad("outputs", f"expected dict, got {type(stored).__name__}")
        orders = {}
        for key, order in stored.items():
            g = self._group(key, "outputs")
            if g not in out or not isinstance(order, list) or not all(_is_int(v) for v in order) \
                    or sorted(order) != sorted(out[g]) or len(set(order)) != len(order):
                raise self.bad("outputs", f"the consumers of group {key} are not those its edges give")
            orders[g] = list(order)
        if any(out[g] and g not in orders for g in out):
            raise self.bad("outputs", "a group with consumers has no order")
        return orders

    def delays(self, edges: set) -> dict[tuple[int, int], int]:
        """Recurrent edges and their delays (files from before recurrence have none)."""
        delays = {}
        for item in self.field("delays", list, []):
            if not (isinstance(item, list) and len(item) == 3 and all(_is_int(v) for v in item)):
                raise self.bad("delays", f"{item!r} is not [src, dst, delay]")
            s, d, k = item
            if (s, d) not in edges or k < 1 or (s, d) in delays:
                raise self.bad("delays", f"{item!r}: not an edge of the network, a delay below 1, or twice")
            delays[(s, d)] = k
        return delays

    def input_shape(self, widths: dict) -> tuple:
        """The sample's shape (files from before group kinds: flat samples of the input width)."""
        shape = self.meta.get("input_shape", [widths[INPUT]])
        if not isinstance(shape, list) or not 1 <= len(shape) <= 3 or not all(_is_int(n) and n > 0 for n in shape):
            raise self.bad("input_shape", f"{shape!r} is not a list of 1 to 3 positive sizes")
        if shapes.input_width(shapes.input_form(None, shape)[0], tuple(shape)) != widths[INPUT]:
            raise self.bad("input_shape", f"{shape} does not give the input group's width {widths[INPUT]}")
        return tuple(shape)

    def options(self, kinds: dict) -> dict[int, dict]:
        options = {}
        for key, given in self.field("options", dict, {}).items():
            g = self._group(key, "options")
            if g not in kinds or not isinstance(given, dict) or not given:
                raise self.bad("options", f"options {given!r} of group {key}: not a hidden group's options")
            try:
                if get_kind(kinds[g]).options(dict(given)) != given:
                    raise GraphError(f"{given} are not complete")
            except GraphError as e:
                raise self.bad("options", f"group {g}: {e}") from None
            options[g] = given
        for g, kind in kinds.items():
            if g not in options and get_kind(kind).options({}):
                raise self.bad("options", f"{kind} group {g} has no options")
        return options

    def grids(self, kinds: dict) -> dict[int, tuple[int, int]]:
        grids = {}
        for key, grid in self.field("grids", dict, {}).items():
            g = self._group(key, "grids")
            if g not in kinds or not get_kind(kinds[g]).spatial or not isinstance(grid, list) or len(grid) != 2 \
                    or not all(_is_int(n) and n > 0 for n in grid):
                raise self.bad("grids", f"grid {grid!r} of group {key}: not a conv group's (rows, columns)")
            grids[g] = tuple(grid)
        return grids

    def next_id(self, widths: dict) -> int:
        next_id = self.field("next_id", int)
        if next_id <= max(widths):
            raise self.bad("next_id", f"{next_id} is not above every group id (largest {max(widths)})")
        return next_id

    def history(self) -> list[dict]:
        history = self.field("history", list)
        for i, event in enumerate(history):
            ok = (isinstance(event, dict) and _is_int(event.get("step")) and event["step"] >= 0
                  and event.get("kind") in EVENT_KINDS and _is_int(event.get("source")) and event["source"] >= 0
                  and (event.get("new") is None or (_is_int(event["new"]) and event["new"] >= 0))
                  and isinstance(event.get("statistic"), (int, float)) and not isinstance(event.get("statistic"), bool))
            if not ok:
                raise self.bad("history", f"event {i} is not a growth event "
                               "({step, kind: depth|width|prune, source, new, statistic}): {event!r}")
        return history
