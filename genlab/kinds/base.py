"""What a group kind is: everything genlab needs to know about one kind of neuron group."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np


class GroupKind(ABC):
    """One kind of group (dense today). A kind owns its parameter shapes and initialisation, its
    NumPy forward and backward (the reference every engine is tested against), the function-
    preserving edits growth makes with it (identity for a depth-wise copy, split for a width-wise
    one), the fold that prunes a constant group, and the names of its CUDA kernels.

    Parameters: an edge src -> g carries a weight block of edge_shape(width[g], width[src]); a
    group but the input carries a bias of bias_shape(width[g])."""

    name: ClassVar[str]
    cuda_kernels: ClassVar[tuple[str, ...]]  # the kernels an executor needs to run this kind

    @abstractmethod
    def edge_shape(self, width: int, src_width: int) -> tuple[int, ...]:
        """The shape of the weight block of an edge from a group of src_width into this one."""

    @abstractmethod
    def bias_shape(self, width: int) -> tuple[int, ...]:
        """The shape of the group's bias."""

    @abstractmethod
    def draw_edge(self, rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        """A random weight block for a new edge (fan_in: the group's total input width)."""

    @abstractmethod
    def forward(self, inputs: list[np.ndarray], weights: list[np.ndarray], bias: np.ndarray,
                linear: bool) -> np.ndarray:
        """h of the group from its inputs' h (batch x width each) and the edges' weight blocks;
        linear: the output group (no nonlinearity)."""

    @abstractmethod
    def backward(self, grad_out: np.ndarray, h: np.ndarray, linear: bool) -> np.ndarray:
        """dL/dz from dL/dh and the group's h."""

    @abstractmethod
    def edge_grads(self, dz: np.ndarray, h_src: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dL/dW of the edge, the edge's share of dL/dh of its source)."""

    @abstractmethod
    def bias_grad(self, dz: np.ndarray) -> np.ndarray:
        """dL/db."""

    @abstractmethod
    def torch_forward(self, inputs: list, weights: list, bias, linear: bool):
        """forward() on torch tensors, differentiable (genlab.to_torch builds modules from it)."""

    @abstractmethod
    def identity(self, width: int) -> np.ndarray:
        """The weight block of an edge g -> g' (both `width` wide) through which g' passes g's
        output on unchanged (a depth-wise copy), for the output of g (already past its ReLU)."""

    @abstractmethod
    def split(self, block: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A width-wise copy of the source of `block`: (what stays, what the sibling gets); their
        contributions add up to block's (noise breaks the symmetry)."""

    @abstractmethod
    def fold(self, block: np.ndarray, constant: np.ndarray) -> np.ndarray:
        """What an edge whose source always outputs `constant` adds to its consumer's bias."""
