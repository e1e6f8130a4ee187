"""What the step's passes and a kind's CUDA hooks may read of the engine, as interfaces.

The CUDA engine (engine.py) is both. A kind's hooks (kind_cuda.KindCuda, in the kind's folder)
see a `KindContext`: the layout, the device state, the launcher and where the blocks are. The
level passes (executors/passes.py, kinds.py, output_parts.py, split.py) see a `PassContext`: that,
and the row stride, the memory of the stream, the executor's schedule, pruning and the optimizer.
An executor (executors/level.py, rows.py, cluster.py, ...) sees an `ExecutorContext`: that, and
the driver, device and stream, the batch's upload, the step's scalars and growth's statistics.
None sees the rest of the engine (its graphs, guard, growth's rules, checkpoints): a hook, pass
or executor that reads more fails `tests/test_architecture.py`. Members are read-only properties:
a context reads the engine, it does not set it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from ...optim import Checked
    from ...precision import Precision
    from .executors.base import Executor
    from .layout import Layout
    from .memory import Memory
    from .records import DeviceState
    from .runtime import Launches


class KindContext(Protocol):
    """What a kind's CUDA hooks read: the network's layout, its device state (records.py) and the
    stream's launcher; `batch_cap` rows fit the buffers; `block(slot)` is where a group's
    activations start, in bytes."""

    @property
    def layout(self) -> Layout: ...

    @property
    def dev(self) -> DeviceState: ...

    @property
    def launch(self) -> Launches: ...

    @property
    def batch_cap(self) -> int: ...

    def block(self, slot: int) -> int: ...


class PassContext(KindContext, Protocol):
    """What the level passes read besides: the kernels' row stride `ld`, the stream's memory
    (fills), the executor (its tiers, pull or push, the output's split), pruning's switch
    (track ranges, Taylor alpha) and the optimizer (its update's arguments)."""

    @property
    def ld(self) -> int: ...

    @property
    def mem(self) -> Memory: ...

    @property
    def executor(self) -> Executor: ...

    @property
    def pruning(self) -> tuple[bool, float | None]: ...

    @property
    def optimizer(self) -> Checked: ...


class ExecutorContext(PassContext, Protocol):
    """What an executor reads besides: PyCUDA's driver, the device and the engine's stream, the
    precision it computes in, the batch's upload (`put_batch`: the rows it put), the step's
    scalars (`read_scalars`: loss, correct count, squared gradient norm; it synchronises) and
    growth's statistics of the step (`enqueue_growth_observe`)."""

    @property
    def drv(self): ...

    @property
    def device(self): ...

    @property
    def stream(self): ...

    @property
    def precision(self) -> Precision: ...

    def put_batch(self, x: np.ndarray, y: np.ndarray | None = None) -> int: ...

    def read_scalars(self) -> tuple[float, int, float]: ...

    def enqueue_growth_observe(self, batch: int) -> None: ...
