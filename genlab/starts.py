"""The networks `genlab train` and `genlab demo` start from: by the data's form and the kind of
group asked for (the natural one by default: conv for images, recurrent dense groups for
sequences, dense otherwise)."""

from __future__ import annotations

from enum import StrEnum

from .datasets import Dataset
from .errors import DataError
from .network import Network

class Start(StrEnum):
    """What a run starts from (`genlab train --start`)."""

    MLP = "mlp"        # a chain of hidden groups
    SINGLE = "single"  # one hidden group, to grow


STARTS = tuple(Start)
# the kinds each form of data can start from; the first is the natural one
CHOICES = {"image": ("conv", "dense"), "sequence": ("recurrent", "attention"), "flat": ("dense",)}
# hidden widths when not told: (start "single", start "chain")
WIDTHS = {"conv": ([8], [8, 16]), "dense": ([8], [64, 32]), "recurrent": ([8], [64]), "attention": ([16], [32])}


def form(data: Dataset) -> str:
    return "image" if data.image else "sequence" if data.sequence else "flat"


def kind_for(data: Dataset, kind: str | None) -> str:
    """The kind to start from: `kind` if the data's form can run it (DataError if not), else the natural one."""
    choices = CHOICES[form(data)]
    if kind is None:
        return choices[0]
    if kind not in choices:
        raise DataError(f"{data.name} holds {form(data)} samples: start from {' or '.join(choices)} groups, not {kind}")
    return kind


def policy(max_groups: int):
    """The growth policy of the command line: the default rule (the highest group every 50 steps,
    which needs no threshold tuned to a kind or a dataset) up to max_groups."""
    from .policy import GrowthPolicy

    return GrowthPolicy(max_groups=max_groups)


def build(data: Dataset, kind: str, hidden: list[int] | None, single: bool, seed: int) -> Network:
    """A chain of `hidden` groups of `kind` (default widths by WIDTHS) for `data`: conv groups
    (stride 2 from the second on), dense groups (over flattened images too), stacked Elman
    groups, or attention groups each followed by a dense one (a single start: one group)."""
    hidden = hidden or WIDTHS[kind][0 if single else 1]
    return BUILDERS[kind](data, hidden, single, seed)


def _conv(data: Dataset, hidden: list[int], single: bool, seed: int) -> Network:
    return Network.conv_chain(data.sample_shape, hidden, data.n_classes, strides=[1] + [2] * (len(hidden) - 1),
                              seed=seed)


def _attention(data: Dataset, hidden: list[int], single: bool, seed: int) -> Network:
    return Network.attention_chain(data.sample_shape, hidden, data.n_classes, dense=not single, seed=seed)


def _recurrent(data: Dataset, hidden: list[int], single: bool, seed: int) -> Network:
    return Network.elman(data.n_features, hidden, data.n_classes, seed=seed)


def _dense(data: Dataset, hidden: list[int], single: bool, seed: int) -> Network:
    if not data.image:
        return Network.mlp([data.n_features, *hidden, data.n_classes], seed=seed)
    net = Network(n_outputs=data.n_classes, input_shape=data.sample_shape, seed=seed)  # reading the image flattened
    prev = net.input
    for width in hidden:
        prev = net.add_group(width, inputs=[prev])
    net.connect(prev, net.output)
    net.init_params(seed)
    return net


BUILDERS = {"conv": _conv, "attention": _attention, "recurrent": _recurrent, "dense": _dense}  # by --kind


def one_layer_like(data: Dataset, kind: str, n_params: int, seed: int) -> tuple[int, Network]:
    """The traditional network to compare a grown one with: one hidden group of `kind` whose
    width gives about n_params parameters (parameters grow with the width: a bisection)."""
    lo, hi = 1, 4096
    while lo < hi:
        mid = (lo + hi) // 2
        if build(data, kind, [mid], True, seed).n_params < n_params:
            lo = mid + 1
        else:
            hi = mid
    best = min((w for w in (lo - 1, lo) if w >= 1),
               key=lambda w: abs(build(data, kind, [w], True, seed).n_params - n_params))
    return best, build(data, kind, [best], True, seed)
