"""The engine interface: what the trainer and the growth rules may ask of an engine.

Four engines implement it explicitly: SerialEngine (NumPy, the reference), CudaEngine (a DAG on
the GPU), RecurrentCudaEngine (a recurrent network on the GPU) and PartitionedEngine (a network
cut across processes, genlab.distributed); the rest subclass one of them (the decoupled and
pipelined engines of genlab.DNI, the wavefront engine). A new engine subclasses Engine and is
registered in genlab.backends. Capabilities are declared, never found out by a method that
raises: class attributes of fixed type (precisions, runs_recurrent, ...), and Stepwise, the
engines whose step can be taken in parts (forward, backward, update); callers read them instead of
probing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import numpy as np

from ..errors import BackendError
from ..network import Network
from ..operations import GrowthOp
from ..precision import DEFAULT as FP32
from ..precision import Precision

# Per-group statistics of the last backward, each {group: value} for every group but the input:
# grad_std: std of dL/dh over batch and neurons; weight_grad_norm: L2 norm of the gradients of the
# group's incoming weights and bias; taylor: |mean(h * dL/dh)| (first-order estimate of the loss
# change if the group's output were removed); h_min, h_max: per-neuron min and max of h over the batch.
STATISTICS = ("grad_std", "weight_grad_norm", "taylor", "h_min", "h_max")

Key = tuple  # ("W", src, dst): an edge's weight block; ("b", g): a group's bias


@dataclass
class EngineState:
    """What an engine keeps besides the parameters, in a form every engine reads (checkpoints).

    optimizer: {parameter key: {state name (optimizer.state_names): array of the parameter's
        shape}}; a parameter without an entry starts fresh.
    ema: {group: moving average of the growth criterion}; taylor: {group: moving average of the
        Taylor score}; ranges: {group: (per-neuron min, max) of its output since pruning last judged}.
    """

    optimizer: dict = field(default_factory=dict)
    ema: dict = field(default_factory=dict)
    taylor: dict = field(default_factory=dict)
    ranges: dict = field(default_factory=dict)
    placement: dict | None = None


class Pending(Protocol):
    """A sum over the replicas under way (Replicas.start_sum)."""

    def wait(self) -> None:
        """Return once the sum is in its array (a replica that died: genlab.errors.PeerError)."""


class Replicas(ABC):
    """The replicas of a data-parallel step as an engine sees them (genlab.distributed.Share): sums
    and extremes over every replica, in place, of host arrays or of device buffers (buffer()); the
    result has the same bits on every replica."""

    rows: int        # this replica's rows of the step
    total: int       # every replica's rows of the step
    fraction: float  # rows / total: the weight of this replica's mean gradient in the step's

    # gradient bytes a data-parallel step gathers before it starts their sum (engines that overlap
    # the sums with the backward: genlab.engines.buckets)
    bucket_bytes: int = 25 << 20

    @abstractmethod
    def sum(self, array, scale: float = 1.0) -> None:
        """array = the sum over the replicas of scale * their array."""

    @abstractmethod
    def start_sum(self, array, scale: float = 1.0) -> "Pending":
        """sum() begun and left running: array holds the sum once the returned Pending's wait()
        has returned, and must not be touched before."""

    @property
    def moment_scale(self) -> tuple[float, float, float]:
        """The factors that turn a replica's sums of dL/dh, its squares and h dL/dh into its share
        of the step's: its dL/dh is of its own mean loss, `fraction` of the step's per row."""
        f = self.fraction
        return (f, f * f, f)

    @abstractmethod
    def min(self, array) -> None:
        """array = the element-wise minimum over the replicas."""

    @abstractmethod
    def max(self, array) -> None:
        """array = the element-wise maximum over the replicas."""

    @abstractmethod
    def on_stream(self, handle: int) -> None:
        """The CUDA stream the engine queues its step on, for collectives on its device buffers
        (they must follow what is queued there and precede what is queued after)."""

    @abstractmethod
    def buffer(self, ptr: int, count: int, dtype: str = "float32"):
        """`count` values of `dtype` at a device address, as the collectives take them."""


class Engine(ABC):
    """Executes a Network: training steps, statistics for growth, growth applied in place.

    Set by genlab.growth.Grower.attach before training: growth_criterion ((statistic, alpha) to
    smooth at every step, or None) and pruning ((track activation ranges, Taylor alpha or None)).
    """

    name: ClassVar[str]                    # the backend's name ("serial", "cuda")
    grows_in_place: bool                   # growth's new parameter values are made by the engine from the
                                           # log (apply_growth), not by the host (may depend on the network)
    dtypes: ClassVar[tuple[str, ...]]      # the float types it computes in
    has_executors: ClassVar[bool] = False  # takes executor= (a schedule of its step)
    precisions: ClassVar[frozenset[Precision]] = frozenset({FP32})  # the products' arithmetic it offers
    precision: Precision = FP32  # the one it computes in (genlab.precision)
    runs_recurrent: ClassVar[bool] = False  # runs networks with delayed edges on sequences
    reads_every_step: ClassVar[bool] = False  # can read a recurrent network's output at every step
    dtype: np.dtype
    optimizer: object
    growth_criterion: tuple[str, float] | None = None
    every_step: bool = False  # a recurrent network's output is read (and its loss taken) at every step
    pruning: tuple[bool, float | None] = (False, None)
    pinned: frozenset[int] = frozenset()  # groups pruning must keep (a DNI engine's cut groups)
    scored: int | None = None  # the rows the last step's loss and count are of, where not its batch's
                               # (a pipelined DNI step scores an earlier batch)

    @classmethod
    def check_precision(cls, precision: Precision) -> None:
        """BackendError unless this engine offers `precision`."""
        if precision not in cls.precisions:
            offered = ", ".join(sorted(p.value for p in cls.precisions))
            raise BackendError(f"the {cls.name} engine computes in {offered} only, not {precision.value}")

    # ------------------------------------------------------------------ the network
    @abstractmethod
    def load(self, net: Network) -> None:
        """Take the network's topology and parameters; keep the optimizer state of unchanged
        parameters and the growth scores of remaining groups."""

    def write_back(self, net: Network) -> None:
        """Copy the trained parameters into the network (in the network's dtype)."""
        for key, value in self.params.items():
            if key[0] == "W":
                net.weights[key[1:]] = value.astype(net.dtype)
            else:
                net.biases[key[1]] = value.astype(net.dtype)

    @property
    @abstractmethod
    def params(self) -> dict[Key, np.ndarray]:
        """Every parameter, on the host, by key."""

    @property
    @abstractmethod
    def grads(self) -> dict[Key, np.ndarray]:
        """The gradients of the last backward, by key."""

    @abstractmethod
    def export_state(self) -> EngineState:
        """The optimizer state and the growth and pruning statistics, on the host."""

    @abstractmethod
    def import_state(self, state: EngineState, net: Network) -> None:
        """Take state exported by an engine (this kind or another) for `net`, the network loaded."""

    # ------------------------------------------------------------------ training
    @abstractmethod
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits for a batch x (batch x n_inputs); keeps what backward needs."""

    @abstractmethod
    def step(self, x: np.ndarray, y: np.ndarray, replicas: Replicas | None = None) -> tuple[float, int]:
        """Forward, backward and update on one batch: (loss, correct predictions). A non-finite
        loss or gradient raises TrainingError and changes no parameter. With replicas (a
        data-parallel step, x and y this replica's rows): the gradients, statistics, loss and
        correct count are the step's over every replica before the update, so every replica
        takes the same update and sees the same statistics."""

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        """Logits for a batch x, for prediction."""
        return self.forward(x)

    # ------------------------------------------------------------------ statistics
    @property
    @abstractmethod
    def stats(self) -> dict[str, dict]:
        """{statistic: {group: value}} of the last backward (STATISTICS)."""

    @property
    @abstractmethod
    def grad_std(self) -> dict[int, float]:
        """{group: std of dL/dh} of the last backward for every group but the input, in ascending
        group id (read at every training step)."""

    # ------------------------------------------------------------------ growth
    @abstractmethod
    def smoothed_scores(self) -> dict[int, float]:
        """{group: the growth criterion's moving average} of every hidden group observed so far."""

    @abstractmethod
    def choose_growth(self, eligible: set[int], threshold: float, relative: bool) -> list[tuple[int, float]]:
        """The groups to grow now, in budget order, with their smoothed scores (genlab.growth's rules)."""

    @abstractmethod
    def prune_report(self, judge: bool = True) -> tuple[dict[int, np.ndarray], dict[int, float]]:
        """({group: its constant output} since the last judgement, {group: smoothed Taylor score});
        judge=False judges no group and keeps the activation ranges growing."""

    @abstractmethod
    def apply_growth(self, net: Network, log: list[GrowthOp]) -> None:
        """Take the network as growth and pruning left it, with the log of what they did."""


class Stepwise(Engine):
    """The capability of taking a step in parts: forward(), then backward(), then update() (the
    gradient checks, the serial engine's comparisons, a step's pieces timed apart). An engine that
    runs whole steps only (the partitioned engine: the processes' passes interleave) is an Engine
    without it; ask with isinstance(engine, Stepwise)."""

    @abstractmethod
    def backward(self, y: np.ndarray) -> float:
        """Loss of the last forward against labels y; fills gradients and statistics."""

    @abstractmethod
    def update(self) -> None:
        """One optimizer step with the gradients of the last backward."""
