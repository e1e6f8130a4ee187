"""The recurrent CUDA engine on its "wavefront" executor: a network of dense groups runs its
sequences through cuda/wavefront.cu (engines/cuda/wavefront.py) over the master parameters
themselves. What the unrolled engine does through its copies (broadcast before a step, fold the
copies' gradients after it, pool the statistics over the cells) the kernels do in place; the
optimizer, the guard, checkpoints and growth are the recurrent engine's own.
"""

from __future__ import annotations

import numpy as np

from ...errors import BackendError, TrainingError
from ...network import Network
from ...precision import DEFAULT as FP32
from ...precision import Precision, parse
from .executors import WAVEFRONT
from .recurrent import BY_EXECUTOR, RecurrentCudaEngine
from .wavefront import Wavefront, resident
from .wavefront_plan import refusal


class WavefrontCudaEngine(RecurrentCudaEngine):
    """RecurrentCudaEngine(..., executor="wavefront") (fp32)."""

    precisions = (FP32,)
    reads_every_step = True
    updates_with_gradients = True

    def __init__(self, net: Network, optimizer, dtype="float32", executor: str = "wavefront",
                 time_major: bool = False, precision: Precision = FP32, rows: int | None = None,
                 stage: bool | None = None, chunk: int | None = None,
                 release_every: int | None = None):
        self.check_precision(parse(precision))
        if time_major:
            raise BackendError("the wavefront executor runs every cell as soon as its inputs are done; time_major "
                               "is a schedule of the unrolled executors")
        reason = refusal(net)
        if reason is not None:
            raise BackendError(f"{reason}; leave the executor to 'auto' or pick one of the unrolled executors")
        import pycuda.driver as drv

        from . import runtime

        runtime.kernels()
        self.stream = drv.Stream()
        self.runner: Wavefront | None = None
        # None: chosen per shape (the harness tries others)
        self.rows, self.stage, self.chunk, self.release_every = rows, stage, chunk, release_every
        self.every_step = False
        self._x: np.ndarray | None = None
        super().__init__(net, optimizer, dtype, executor, False, precision)

    def load(self, net: Network) -> None:
        """As the recurrent engine's, refused first (the engine unchanged) where the kernel cannot
        run the network: a kind or width it does not take, or more groups than blocks at once."""
        reason = refusal(net)
        slots, room = len(net.widths) - 1, resident(0)
        if reason is None and slots > room:
            reason = (f"it holds a block per group at once, and {slots} groups are more than "
                      f"the {room} blocks this GPU holds")
        if reason is not None:
            raise BackendError(f"the wavefront executor cannot run this network: {reason}; keep fewer groups "
                               "(GrowthPolicy max_groups) or use an unrolled executor (level, dataflow)")
        super().load(net)
        self.runner = Wavefront(self.stream, self.master.params, self.master.grads, self.offsets, self.rows,
                                self.stage, self.chunk, self.release_every)
        self.launch = self.runner.launch
        self.runner.load(self.net)

    # ------------------------------------------------------------------ the recurrent engine's hooks
    def _unrolled(self, steps: int) -> None:
        self.steps = steps  # nothing to unroll: the kernel loops over the steps

    def _broadcast(self) -> None:
        pass  # the kernels read the master parameters themselves

    def _fold_grads(self) -> None:
        pass  # wavefront_reduce writes the master gradients

    def _guard_scalars(self):
        return self.runner.scalars

    @property
    def batch(self) -> int:
        return self.runner.shape[1]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits of sequences x (at the last step, or at each with every_step), in passes of at
        most the batch the grid holds."""
        x = np.asarray(x, np.float32)
        self._unrolled(x.shape[1])
        most = self.runner.largest_batch()
        parts = []
        for start in range(0, len(x), most):
            self.runner.put(x[start:start + most], None)
            self.runner.enqueue(train=False, every_step=self.every_step)
            parts.append(self.runner.logits(self.every_step))
        self._x = x
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def backward(self, y: np.ndarray) -> float:
        if self._x is None:
            raise TrainingError("backward needs a forward pass first")
        self.runner.put(self._x, y)
        self.runner.enqueue(train=True, every_step=self.every_step)
        loss = self.runner.read_scalars()[0]
        self._pool_stats()
        return loss

    def _gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int, float]:
        """The whole step on the GPU, one CUDA graph: forward, loss, backward through time, the
        master gradients and the update, which the device refuses unless the pass's loss and
        gradient are fine (optim.cu's guard); the host waits once, for the scalars and the
        statistics together."""
        opt = self.optimizer
        self.runner.put(np.asarray(x, np.float32), y)
        self.runner.train_step(self.every_step, self._update_master, (opt.code, opt.lr, *opt.hyper))
        loss, correct, gradsq = self.runner.read_scalars()
        return loss, correct, gradsq  # the gradients are summed already: the bound is exact

    def _sums(self) -> dict[int, np.ndarray]:
        return self.runner.sums()

    def _ranges(self) -> tuple[dict, dict]:
        return self.runner.ranges()


BY_EXECUTOR[WAVEFRONT] = WavefrontCudaEngine
