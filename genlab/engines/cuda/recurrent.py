"""Recurrent networks on the GPU: the network unrolled over its steps (genlab.unroll) runs on the
CUDA engine, its parameters shared through a master copy on the device.

Each step:
1. The inner engine (a CudaEngine over the unrolled DAG, with an update that changes nothing)
   runs forward and backward with its executor. The dependency-driven executors (dataflow,
   dataflow_rows) release each (group, t) cell when the cells it reads are done, which is the
   wavefront. The level executor runs it level by level: the unrolled DAG's levels are the
   wavefront's stages. time_major=True runs the steps one after another instead (sequencing
   edges of zeros in the unrolled DAG): the baseline the wavefront is measured against.
2. segment_sum folds each shared parameter's copies' gradients into the master gradient, in a
   fixed order.
3. The optimizer updates the master parameters (optim.cu, guarded like every update).
4. gather copies them back into the unrolled network.

Statistics for growth and pruning are pooled per group over its cells. Growth reloads (the host
edits the network, as on the serial engine).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ... import operations as op
from ...errors import BackendError, TrainingError
from ...growth import Scores, Tracker
from ...guard import StepGuard, careful, gradient_ok, max_abs
from ...network import INPUT, OUTPUT, Network
from ...optim import SGD
from ...precision import ALL, Precision, parse
from ...precision import DEFAULT as FP32
from ...unroll import flatten, unroll
from ..base import STATISTICS, EngineState, Stepwise
from ..host_scores import HostScores
from . import readback
from .state import Backup
from .executors import DEFAULT, passes
from .records import Parameters, Ptr


BY_EXECUTOR: dict[str, type] = {}  # executor -> the engine that runs a recurrent network itself with it (registered
# by its module: recurrent_wavefront.py, imported with this package)


@dataclass(frozen=True)
class CopyMaps:
    """Where each parameter of the unrolled network comes from in the master (bcast: its index),
    and each master parameter's copies (ptr, idx: compressed rows), for n_inner parameters."""

    bcast: Ptr
    ptr: Ptr
    idx: Ptr
    n_inner: int


class RecurrentCudaEngine(HostScores, Stepwise):
    """Runs a recurrent Network on an NVIDIA GPU (float32) through its unrolled DAG."""

    name = "cuda"
    grows_in_place = False
    dtypes = ("float32",)
    has_executors = True
    precisions = ALL  # its unrolled network's (the inner CudaEngine's)
    runs_recurrent = True
    updates_with_gradients = False  # whether _gradients enqueues the (device-guarded) update itself

    def __new__(cls, net: Network, optimizer, dtype="float32", executor: str = DEFAULT, *args, **options):
        """An executor of BY_EXECUTOR ("wavefront") gives its own engine (recurrent_wavefront.py),
        which runs the recurrent network itself instead of its unrolled DAG."""
        own = BY_EXECUTOR.get(executor) if cls is RecurrentCudaEngine else None
        return super().__new__(own or cls)

    def __init__(self, net: Network, optimizer, dtype="float32", executor: str = DEFAULT, time_major: bool = False,
                 precision: Precision = FP32):
        if np.dtype(dtype).name not in self.dtypes:
            raise BackendError(f"the CUDA engine runs in float32, not {np.dtype(dtype)}; use the serial "
                               "engine for float64")
        self.dtype, self.optimizer, self.executor_name = np.dtype(np.float32), optimizer, executor
        self.precision = parse(precision)
        self.time_major = time_major  # the steps one after another (the wavefront's baseline; genlab.unroll)
        self.growth_scores, self.tracker = Scores(), Tracker()
        self.guard = StepGuard(np.float32)
        self.inner = None
        self._pruning = (False, None)
        self.master: Parameters | None = None  # the shared parameters, their gradients and optimizer state
        self._state_host: dict = {}
        self.load(net)

    # ------------------------------------------------------------------ the network
    def load(self, net: Network) -> None:
        carried = self._host_state() if self.master is not None else {}
        self.net = net.copy()
        self.keys = [("W", s, d) for (s, d) in net.weights] + [("b", g) for g in net.biases]
        self.shapes = {k: (net.weights[k[1:]] if k[0] == "W" else net.biases[k[1]]).shape for k in self.keys}
        sizes = [math.prod(self.shapes[k]) for k in self.keys]
        self.offsets = dict(zip(self.keys, np.cumsum([0] + sizes[:-1]).tolist()))
        self.n = int(sum(sizes))
        host = np.concatenate([np.asarray(net.weights[k[1:]] if k[0] == "W" else net.biases[k[1]], np.float32).ravel()
                               for k in self.keys]) if self.keys else np.zeros(0, np.float32)
        self._upload_master(host, {k: v for k, v in carried.items() if k in self.shapes})
        self.growth_scores.ema = {g: v for g, v in self.growth_scores.ema.items() if g in net.widths}
        self.tracker.keep_only(net.widths)
        self.inner, self.steps = None, None  # unrolled at the next batch (its number of steps)
        self.guard.measured(max_abs([host]), max_abs(a[self.optimizer.state_names[0]] for a in carried.values()))

    def _upload_master(self, host: np.ndarray, state: dict) -> None:
        from . import runtime

        runtime.kernels()  # the context and the kernels
        import pycuda.driver as drv

        self.drv = drv
        states = []
        for name in self.optimizer.state_names:
            flat = np.zeros(self.n, np.float32)
            for key, arrays in state.items():
                flat[self.offsets[key]:self.offsets[key] + arrays[name].size] = arrays[name].ravel()
            states.append(drv.to_device(flat))
        self.master = Parameters(drv.to_device(np.ascontiguousarray(host)), drv.mem_alloc(max(4 * self.n, 4)),
                                 tuple(states))

    def _host(self, buf) -> dict:
        """A master buffer (parameters, gradients, a state) on the host, by key."""
        flat = np.empty(self.n, np.float32)
        if self.n:
            self.drv.memcpy_dtoh(flat, buf)
        return {k: flat[o:o + math.prod(self.shapes[k])].reshape(self.shapes[k]).copy() for k, o in self.offsets.items()}

    def _host_state(self) -> dict:
        per_name = {n: self._host(buf) for n, buf in zip(self.optimizer.state_names, self.master.state)}
        return {k: {n: per_name[n][k] for n in per_name} for k in self.keys}

    def _unrolled(self, steps: int) -> None:
        """The inner engine for sequences of `steps` steps, and the maps between the copies."""
        if self.steps == steps:
            return
        from .engine import CudaEngine

        u = unroll(self.net, steps, time_major=self.time_major)
        inner = CudaEngine(u.net, SGD(lr=0.0, momentum=0.0), executor=self.executor_name, precision=self.precision)
        L = inner.layout
        copy_of = np.full(L.n_params, -1, np.int64)
        for key, source in u.shared.items():
            if source is None:
                continue
            original, columns = source
            off, shape = L.offsets[key], L.shapes[key]
            master = self.offsets[original] + np.arange(math.prod(self.shapes[original])).reshape(self.shapes[original])
            if columns is None:
                copy_of[off:off + master.size] = master.ravel()
            else:
                block = np.full(shape, -1, np.int64)
                block[:, columns] = master
                copy_of[off:off + block.size] = block.ravel()
        used = np.nonzero(copy_of >= 0)[0]
        order = used[np.argsort(copy_of[used], kind="stable")]
        ptr = np.concatenate([[0], np.cumsum(np.bincount(copy_of[used], minlength=self.n))]).astype(np.int32)
        self.maps = CopyMaps(inner.mem.upload(copy_of.astype(np.int32)), inner.mem.upload(ptr),
                             inner.mem.upload(order.astype(np.int32)), L.n_params)
        self.copies = int(np.bincount(copy_of[used], minlength=self.n).max()) if used.size else 1
        self.inner, self.steps, self.u = inner, steps, u
        self.stream, self.launch = inner.stream, inner.launch  # one stream: the master's work follows the step's
        inner.pruning = (self.pruning[0], None)  # ranges per cell; Taylor scores are pooled here
        self._broadcast()

    @property
    def pruning(self) -> tuple[bool, float | None]:
        return self._pruning

    @pruning.setter
    def pruning(self, value: tuple[bool, float | None]) -> None:
        """Set by the trainer at any time: the unrolled engine tracks the ranges of its cells."""
        self._pruning = value
        if self.inner is not None:
            self.inner.pruning = (value[0], None)

    def _broadcast(self) -> None:
        n = self.maps.n_inner
        self.launch.flat("gather", n, dict(dst=self.inner.dev.parameters.params, src=self.master.params,
                                           map=self.maps.bcast, n=np.int32(n)))
        self.stream.synchronize()

    # ------------------------------------------------------------------ training
    def forward(self, x: np.ndarray) -> np.ndarray:
        self._unrolled(np.asarray(x).shape[1])
        return self.inner.forward(flatten(x))

    def backward(self, y: np.ndarray) -> float:
        loss = self.inner.backward(y)
        self._fold_grads()
        self._pool_stats()
        return loss

    def _fold_grads(self) -> None:
        self.launch.flat("segment_sum", self.n, dict(dst=self.master.grads, src=self.inner.dev.parameters.grads,
                                                     ptr=self.maps.ptr, idx=self.maps.idx, n=np.int32(self.n)))

    def update(self) -> None:
        self._update_master()
        self.stream.synchronize()

    def _update_master(self) -> None:
        m = self.master
        passes.launch_update(self.launch, m, passes.update_arguments(self.optimizer, m, self.n), self._guard_scalars())
        self._broadcast()

    def step(self, x: np.ndarray, y: np.ndarray, replicas=None) -> tuple[float, int]:
        """One step as described in the module's docstring; all or nothing (genlab.guard)."""
        if replicas is not None:
            raise BackendError("data-parallel training of a recurrent network runs on the serial engine "
                               "(backend='serial'); the CUDA engine replicates DAGs")
        self._unrolled(np.asarray(x).shape[1])
        if not self.guard.safe(self.optimizer):
            return careful(self, lambda: self._take(x, y))[:2]
        loss, correct, bound = self._take(x, y)
        self.guard.advance(self.optimizer, bound)
        return loss, correct

    def _take(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int, float]:
        """The step itself: (loss, correct, bound on the squared gradient norm); TrainingError
        where the gradients diverged (an update enqueued with them was refused on the device)."""
        loss, correct, bound = self._gradients(x, y)
        if not gradient_ok(loss, bound):
            raise TrainingError("the gradients summed over time diverged on this batch; the step was not applied")
        if not self.updates_with_gradients:
            self._update_master()
        self._pool_stats()
        return loss, correct, bound

    # ------------------------------------------------------------------ the careful update (guard.careful)
    def backup_state(self) -> Backup:
        return Backup(self.master, self.n, self.inner.mem)  # on the step's stream, after its work

    def restore_state(self, saved: Backup) -> None:
        saved.put_back(self.master)
        self._broadcast()

    def exact_bounds(self) -> tuple[float, float]:
        return max_abs(self._host(self.master.params).values()), max_abs(self._host(self.master.state[0]).values())

    def _gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int, float]:
        """The step's loss, correct count and a bound on the squared norm of the master gradient,
        which this puts in master.grads: the unrolled engine's step, its copies' gradients folded."""
        loss, correct = self.inner.step(flatten(x), y)  # refuses non-finite losses and gradients itself
        self._fold_grads()
        return loss, correct, self.inner.read_scalars()[2] * self.copies  # |sum of copies|^2 <= copies * sum of squares

    def _guard_scalars(self):
        """The device scalars (loss, correct, squared gradient norm) the update is guarded by."""
        return self.inner.dev.sums.scalars

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    # ------------------------------------------------------------------ statistics
    def _pool_stats(self) -> None:
        """Per group, pooled over its cells: the std of dL/dh, |mean h dL/dh|; the ranges; and
        the smoothing the growth rules read."""
        pooled = self._sums()
        stats = {name: {} for name in STATISTICS}
        for g, (s1, s2, s3) in pooled.items():
            n = self.steps * self.batch * self.net.widths[g]  # cells left out count as zeros, as through time
            mean = s1 / n
            stats["grad_std"][g] = float(np.sqrt(max(s2 / n - mean * mean, 0.0)))
            stats["taylor"][g] = float(abs(s3 / n))
        if self.growth_criterion is not None and \
                op.Criterion[self.growth_criterion[0].upper()] is op.Criterion.WEIGHT_GRAD_NORM:
            grads = self._host(self.master.grads)
            for g in pooled:
                stats["weight_grad_norm"][g] = float(np.sqrt(sum(np.sum(grads[k] ** 2) for k in self.keys
                                                                 if k[-1] == g)))
        if self.pruning[0]:
            stats["h_min"], stats["h_max"] = self._ranges()
        self._stats = stats
        self.observe_scores(stats)

    @property
    def batch(self) -> int:
        return self.inner.batch

    def _sums(self) -> dict[int, np.ndarray]:
        """Per group but the input: the sums of dL/dh, its squares and h dL/dh over its cells."""
        inner = self.inner
        sums, _, _ = readback.sums_and_std(inner)
        pooled: dict[int, np.ndarray] = {g: np.zeros(3) for g in self.net.groups if g != INPUT}
        for (g, _t), cell in self.u.cells.items():
            pooled[g] += sums[inner.layout.slot[cell]]
        return pooled

    def _ranges(self) -> tuple[dict, dict]:
        """Per hidden group: each neuron's output range over its cells, this step."""
        lows, highs = readback.ranges(self.inner)
        lo: dict[int, np.ndarray] = {}
        hi: dict[int, np.ndarray] = {}
        for (g, _t), cell in self.u.cells.items():
            if g != OUTPUT:
                lo[g] = np.minimum(lo[g], lows[cell]) if g in lo else lows[cell]
                hi[g] = np.maximum(hi[g], highs[cell]) if g in hi else highs[cell]
        return lo, hi

    # ------------------------------------------------------------------ parameters and state
    @property
    def params(self) -> dict:
        return self._host(self.master.params)

    @property
    def grads(self) -> dict:
        return self._host(self.master.grads)

    def export_state(self) -> EngineState:
        return self.state_with(self._host_state())

    def import_state(self, state: EngineState, net: Network) -> None:
        for name, buf in zip(self.optimizer.state_names, self.master.state):
            flat = np.zeros(self.n, np.float32)
            for key, arrays in state.optimizer.items():
                flat[self.offsets[key]:self.offsets[key] + math.prod(self.shapes[key])] = \
                    np.asarray(arrays[name], np.float32).ravel()
            self.drv.memcpy_htod(buf, flat)
        self.take_scores(state)
        self.guard.measured(max_abs(self._host(self.master.params).values()),
                            max_abs(self._host(self.master.state[0]).values()))

    # ------------------------------------------------------------------ growth
    def choose_growth(self, eligible: set[int], threshold: float, relative: bool) -> list[tuple[int, float]]:
        inputs0 = self.net.forward_edges()[0]
        hidden = set(self.net.hidden_groups)
        return self.growth_scores.choose(inputs0.__getitem__, hidden, eligible, threshold, relative)


