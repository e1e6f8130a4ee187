"""The geometry of a network: what its samples look like and what each group sees of its inputs.

A network's input_shape makes it one of three forms: flat samples (n,), images (C, H, W) or
sequences of tokens (T, F). Conv groups run in image networks over a grid of channels; attention
groups in sequence networks, where dense groups act on every token alike and the output group
averages over the tokens; dense groups run everywhere and read a conv group flattened.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import TYPE_CHECKING

from . import checks
from .errors import GraphError
from .group_ids import INPUT, OUTPUT
from .kinds import GroupKind, Spec, get_kind

if TYPE_CHECKING:
    from .network import Network


class Form(Enum):
    FLAT = 1  # (features,)
    SEQUENCE = 2  # (tokens, features)
    IMAGE = 3  # (channels, height, width)



def input_form(n_inputs, input_shape) -> tuple[Form, tuple[int, ...]]:
    """(form, input shape) from Network's arguments: exactly one of n_inputs and input_shape."""
    if (n_inputs is None) == (input_shape is None):
        raise GraphError("give the input as n_inputs (flat samples) or input_shape ((C, H, W) images, "
                         "(T, F) sequences), not both" if n_inputs is not None else
                         "give the input as n_inputs or input_shape")
    if n_inputs is not None:
        checks.width(n_inputs, "the input group")
        return Form.FLAT, (int(n_inputs),)
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise GraphError(f"input_shape is a tuple such as (1, 8, 8) or (8, 8), got {input_shape!r}") from None
    if len(shape) not in (1, 2, 3):
        raise GraphError(f"input_shape has 1 (flat), 2 (tokens, features) or 3 (channels, height, width) "
                         f"sizes, got {input_shape!r}")
    for n in shape:
        checks.width(n, "each size in input_shape")
    shape = tuple(int(n) for n in shape)
    return {1: Form.FLAT, 2: Form.SEQUENCE, 3: Form.IMAGE}[len(shape)], shape


def input_width(form: Form, shape: tuple) -> int:
    """The input group's width: the features of a flat sample or a token, an image's channels."""
    return shape[0] if form is not Form.SEQUENCE else shape[1]


def check_kind(net: "Network", kind: GroupKind) -> None:
    need = Form.IMAGE if kind.spatial else Form.SEQUENCE if kind.tokens_only else None
    if need is not None and net.form is not need:
        raise GraphError(f"a {kind.name} group runs in a network of {need.name.lower()} inputs "
                         f"(input_shape={'(C, H, W)' if need is Form.IMAGE else '(T, F)'}); this one reads "
                         f"{net.form.name.lower()} inputs of shape {net.input_shape}")


def spec(net: "Network", g: int) -> Spec:
    """Group g as its kind sees it."""
    return Spec(net.widths[g], net.options.get(g, {}), net.grids.get(g),
                net.input_shape[0] if net.form is Form.SEQUENCE else None, g == OUTPUT)


def spatial(net: "Network", g: int) -> bool:
    """Whether g's output is a grid of channels (the image input, a conv group)."""
    return net.form is Form.IMAGE and (g == INPUT or net.kind(g).spatial)


def out_grid(net: "Network", g: int) -> tuple[int, int] | None:
    """The grid of a spatial group's output (None for a conv group without inputs yet)."""
    if g == INPUT:
        return tuple(net.input_shape[1:])
    return net.kind(g).out_grid(spec(net, g)) if g in net.grids else None


def sample_shape(net: "Network", g: int) -> tuple[int, ...]:
    """The shape of one sample of g's output h."""
    if g == INPUT:
        return net.input_shape
    if spatial(net, g):
        return (net.widths[g], *out_grid(net, g))
    if net.form is Form.SEQUENCE and g != OUTPUT:
        return (net.input_shape[0], net.widths[g])
    return (net.widths[g],)


def edge_width(net: "Network", src: int, dst: int) -> int:
    """What dst sees of src at one position: channels into a conv group, a conv source's every
    value into a dense group, else src's width."""
    if spatial(net, dst) or not spatial(net, src):
        return net.widths[src]
    return math.prod(sample_shape(net, src))


def check_edge(net: "Network", src: int, dst: int) -> tuple[int, int] | None:
    """GraphError if dst cannot read src; the grid a conv dst takes from its first input."""
    if not spatial(net, dst):
        if spatial(net, src) and src != INPUT and src not in net.grids:
            raise GraphError(f"edge {src} -> {dst}: conv group {src} has no inputs yet, so its grid is unknown")
        return None
    if not spatial(net, src):
        raise GraphError(f"edge {src} -> {dst}: a conv group reads conv groups or the image input, and group "
                         f"{src} is {net.kinds[src]}")
    grid = out_grid(net, src)
    if grid is None:
        raise GraphError(f"edge {src} -> {dst}: conv group {src} has no inputs yet, so its grid is unknown")
    if dst in net.grids and net.grids[dst] != grid:
        raise GraphError(f"edge {src} -> {dst}: group {src}'s grid is {grid[0]}x{grid[1]} but conv group {dst} "
                         f"reads {net.grids[dst][0]}x{net.grids[dst][1]} maps")
    return grid


def columns(net: "Network", g: int) -> int:
    """The values of g in one row of an engine's activations: a row holds a whole sample (a conv
    group's C x H x W), or, in a sequence network, one token (the output: one sample's logits)."""
    shape = sample_shape(net, g)
    return shape[-1] if net.form is Form.SEQUENCE else math.prod(shape)


def tokens(net: "Network") -> int:
    """Rows of the engines' activations per sample (the tokens of a sequence network, else 1)."""
    return net.input_shape[0] if net.form is Form.SEQUENCE else 1


def drawing(net: "Network") -> dict:
    """How the lab draws the groups that are not dense: {"labels": {group: "conv 8ch 3x3", ...},
    "shapes": {group: Graphviz node shape}}, and the input's shape where it is not flat."""
    kinds = {g: get_kind(net.kinds[g]) for g in net.hidden_groups}  # every group's, once (read per growth step)
    drawn = {g: kind for g, kind in kinds.items() if not kind.sized_by_width}
    labels = {g: kind.label(spec(net, g)) for g, kind in drawn.items()}
    if len(net.input_shape) > 1:
        labels[INPUT] = "x".join(map(str, net.input_shape))
    return {"labels": labels, "shapes": {g: kind.node_shape for g, kind in drawn.items()}}
