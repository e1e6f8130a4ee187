"""Growth operations: what a growth or pruning check did to the parameters, as typed records.

The growth rules (genlab.growth) edit a Network and log these; an engine that keeps its own copy
of the parameters replays the log (the CUDA engine in one launch of cuda/growth.cu's growth_init,
one block per parameter operation). A parameter is named by its key: ("W", src, dst) for an
edge's weight block, ("b", g) for a group's bias.

The numbers the kernels read (OpCode, Criterion, OP_INTS) are defined here and nowhere else:
cuda/constants.cuh is generated from them (genlab.engines.cuda.constants), and a test checks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import ClassVar

Key = tuple  # ("W", src, dst) or ("b", g)


class Change(StrEnum):
    """What a growth event did to the topology (GrowthEvent.kind; saved by its value)."""

    DEPTH = "depth"  # a group after g (the identity at first): the network is one group deeper there
    WIDTH = "width"  # a sibling of g, reading and feeding what g does
    PRUNE = "prune"  # g removed


class OpCode(IntEnum):
    """What growth_init does with one parameter operation (cuda/growth.cu)."""

    COPY = 0        # dst[i] = src[i]
    IDENTITY = 1    # dst = the identity (rows x rows)
    SPLIT = 2       # src = V/2 + E, dst = V/2 - E, E = noise * rms(V) * hash noise
    HE_UNIFORM = 3  # dst = bound * hash noise
    ZERO_STATE = 4  # the optimizer state of dst starts afresh
    ZERO = 5        # dst = 0


class Criterion(IntEnum):
    """The growth statistic the engines smooth at every step (GrowthPolicy.criterion)."""

    GRAD_STD = 0          # std of dL/dh over batch and neurons
    WEIGHT_GRAD_NORM = 1  # L2 norm of the gradients of the group's incoming weights and bias
    TAYLOR = 2            # |mean(h dL/dh)|


OP_INTS = 7  # ints of one record: code, dst, src, n, rows, hash group, hash consumer (+ one double)


class FoldSource(IntEnum):
    """Where the constant output of a removed group comes from."""

    RANGE = 0      # the value every neuron kept since the last check
    RELU_BIAS = 1  # relu(bias): a group left without inputs


@dataclass(frozen=True)
class Noise:
    """The counter-based noise of the operations that follow: hash(seed, step, ...)."""

    seed: int
    step: int


@dataclass(frozen=True)
class ParamOp:
    """An operation on parameter values; `record` gives growth_init's row for it."""

    code: ClassVar[OpCode]

    def record(self, offset, size) -> tuple[tuple[int, ...], float]:
        """(the OP_INTS ints, the double) for a layout: offset(key) and size(key) of parameters."""
        raise NotImplementedError


@dataclass(frozen=True)
class Identity(ParamOp):
    """Weight block `key` (width x width) becomes the identity: a depth-wise copy passes h on."""

    key: Key
    width: int
    code: ClassVar[OpCode] = OpCode.IDENTITY

    def record(self, offset, size):
        return (self.code, offset(self.key), 0, size(self.key), self.width, 0, 0), 0.0


@dataclass(frozen=True)
class Copy(ParamOp):
    """Parameter `dst` takes the values of `src` (same shape)."""

    dst: Key
    src: Key
    code: ClassVar[OpCode] = OpCode.COPY

    def record(self, offset, size):
        return (self.code, offset(self.dst), offset(self.src), size(self.dst), 0, 0, 0), 0.0


@dataclass(frozen=True)
class Split(ParamOp):
    """Width-wise split of the out-block V = `key` of group g to consumer d: V/2 + E stays,
    V/2 - E goes to the sibling's block `new`; E = noise * rms(V) * hash(seed, step, g, d, i)."""

    key: Key
    new: Key
    noise: float
    group: int
    consumer: int
    code: ClassVar[OpCode] = OpCode.SPLIT

    def record(self, offset, size):
        return (self.code, offset(self.new), offset(self.key), size(self.key), 0, self.group, self.consumer), \
            float(self.noise)


@dataclass(frozen=True)
class HeUniform(ParamOp):
    """Weight block `key` drawn He-uniform: bound * hash(seed, step, src, dst, i)."""

    key: Key
    bound: float
    src: int
    dst: int
    code: ClassVar[OpCode] = OpCode.HE_UNIFORM

    def record(self, offset, size):
        return (self.code, offset(self.key), 0, size(self.key), 0, self.src, self.dst), float(self.bound)


@dataclass(frozen=True)
class Zero(ParamOp):
    """Parameter `key` becomes zeros."""

    key: Key
    code: ClassVar[OpCode] = OpCode.ZERO

    def record(self, offset, size):
        return (self.code, offset(self.key), 0, size(self.key), 0, 0, 0), 0.0


@dataclass(frozen=True)
class ZeroState(ParamOp):
    """The optimizer state of `length` parameters from `first` (a layout's offsets, not keys: new
    and re-owned blocks, adjacent ones merged into one range) starts afresh."""

    first: int
    length: int
    code: ClassVar[OpCode] = OpCode.ZERO_STATE

    def record(self, offset, size):
        return (self.code, self.first, 0, self.length, 0, 0, 0), 0.0


@dataclass(frozen=True)
class Move:
    """The block of edge `old` now belongs to edge `new` (a rerouted edge keeps its values)."""

    new: Key
    old: Key


@dataclass(frozen=True)
class Inherit:
    """New group `new` starts with the smoothed growth score of `source`."""

    new: int
    source: int


@dataclass(frozen=True)
class Fold:
    """b_consumer += W_(group, consumer) c, c the constant output of removed group `group`."""

    group: int
    consumer: int
    source: FoldSource


GrowthOp = Noise | ParamOp | Move | Inherit | Fold
