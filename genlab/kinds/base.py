"""What a group kind is: everything genlab needs to know about one kind of neuron group."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..errors import GraphError


class InexactFold(GraphError):
    """A constant source cannot be folded into this consumer's bias exactly (pruning refuses)."""


@dataclass(frozen=True)
class Spec:
    """One group as its kind sees it: width (units, channels or model width), the options given
    to add_group (conv: kernel, stride; attention: heads), the (H, W) grid its inputs share (conv),
    the tokens of each sample (sequence networks; None where samples are flat), and whether it is
    the output group (linear; in a sequence network it pools over tokens first)."""

    width: int
    options: dict = field(default_factory=dict)
    grid: tuple[int, int] | None = None
    tokens: int | None = None
    output: bool = False


class GroupKind(ABC):
    """One kind of group. A kind owns its options, parameter shapes and initialisation, its NumPy
    forward and backward (the reference every engine is tested against), the function-preserving
    edits growth makes with it (identity for a depth-wise copy, split for a width-wise one), the
    fold that prunes a constant source, and the names of its CUDA kernels.

    Parameters: an edge src -> g carries a weight block of edge_shape(spec, width seen from src);
    every group but the input carries one vector of its own, of bias_shape(spec): its bias first,
    then whatever else the kind owns (attention: its projections).

    Activations: h of a group holds (batch, *shape) where shape is (width,) for a flat sample,
    (width, H, W) for a conv group and (tokens, width) in a sequence network."""

    name: ClassVar[str]
    cuda_kernels: ClassVar[tuple[str, ...]]  # the kernels an executor needs to run this kind
    code: ClassVar[int]  # its number in the kernels' geometry arrays (KIND_<NAME> in cuda/constants.cuh)
    node_shape: ClassVar[str]  # how the lab draws it (a Graphviz node shape)
    sized_by_width: ClassVar[bool] = False  # the lab draws it as a circle sized by its width (else labelled)
    own_kernels: ClassVar[bool] = True  # the CUDA engine runs it with its own kernels, not the dense task lists
    spatial: ClassVar[bool] = False  # its output is a grid of channels (it runs in image networks)
    tokens_only: ClassVar[bool] = False  # it mixes tokens (it runs in sequence networks)

    # ------------------------------------------------------------------ description
    def options(self, given: dict) -> dict:
        """The options of a new group: `given` (add_group's keyword arguments) checked and
        completed with defaults; GraphError naming what is wrong."""
        if given:
            raise GraphError(f"a {self.name} group takes no options; got {', '.join(sorted(given))}")
        return {}

    def depth_options(self, options: dict) -> dict:
        """The options of a depth-wise copy inserted right after a group with `options`."""
        return dict(options)

    def out_grid(self, spec: Spec) -> tuple[int, int] | None:
        """The grid of the group's output (spatial kinds)."""
        return None

    def label(self, spec: Spec) -> str:
        """A short description for drawings and tables ("conv 8ch 3x3")."""
        return str(spec.width)

    @abstractmethod
    def edge_shape(self, spec: Spec, src_width: int) -> tuple[int, ...]:
        """The shape of the weight block of an edge into this group from one that shows it
        src_width values a position (a conv source seen by a dense group: all of its values)."""

    def bias_shape(self, spec: Spec) -> tuple[int, ...]:
        """The shape of the group's own parameter vector."""
        return (spec.width,)

    def init_bias(self, spec: Spec, rng: np.random.Generator) -> np.ndarray:
        """The own parameters of a new group (zeros, unless the kind owns more than a bias)."""
        return np.zeros(self.bias_shape(spec))

    @abstractmethod
    def draw_edge(self, spec: Spec, rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        """A random weight block for a new edge (fan_in: the group's total input width)."""

    # ------------------------------------------------------------------ the reference
    @abstractmethod
    def forward(self, spec: Spec, inputs: list[np.ndarray], weights: list[np.ndarray],
                bias: np.ndarray) -> tuple[np.ndarray, object]:
        """(h, what backward needs) from the inputs' h and the edges' weight blocks."""

    @abstractmethod
    def backward(self, spec: Spec, grad_out: np.ndarray, h: np.ndarray, cache, bias: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """(dL/dz, dL/d own parameters) from dL/dh, z being the sum the in-edges make."""

    @abstractmethod
    def edge_grads(self, spec: Spec, dz: np.ndarray, h_src: np.ndarray, weight: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """(dL/dW of the edge, the edge's share of dL/dh of its source, shaped as h_src)."""

    @abstractmethod
    def torch_forward(self, spec: Spec, inputs: list, weights: list, bias):
        """forward()'s h on torch tensors, differentiable (genlab.to_torch builds modules from it)."""

    # ------------------------------------------------------------------ growth and pruning
    @abstractmethod
    def identity(self, spec: Spec) -> np.ndarray:
        """The weight block of an edge g -> g' (g' a depth-wise copy of g, `spec` its spec)
        through which g' passes g's output on unchanged."""

    def identity_bias(self, spec: Spec, rng: np.random.Generator) -> np.ndarray:
        """The own parameters of a depth-wise copy, with which it passes its input on unchanged."""
        return np.zeros(self.bias_shape(spec))

    def split(self, block: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A width-wise copy of the source of `block`: (what stays, what the sibling gets); their
        contributions add up to block's (noise breaks the symmetry)."""
        return block / 2 + noise, block / 2 - noise

    def constant_without_inputs(self, spec: Spec, own: np.ndarray) -> np.ndarray:
        """What the group outputs once pruning took all its inputs (folded then in turn), or
        InexactFold where that is not one constant."""
        raise InexactFold(f"a {self.name} group left without inputs is not folded; only a dense group's "
                          "constant output (relu of its bias) is")

    @abstractmethod
    def fold(self, spec: Spec, block: np.ndarray, constant: np.ndarray) -> np.ndarray:
        """What an edge whose source always outputs `constant` (its h of one sample, flattened)
        adds to this group's own parameters; InexactFold where no such change is exact."""
