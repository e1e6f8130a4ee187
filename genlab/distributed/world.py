"""The processes of a run over several GPUs (or CPU processes), and the collectives genlab needs.

genlab talks to the other processes through torch.distributed: it is maintained, it speaks NCCL
between GPUs and gloo between CPU processes behind one API, torchrun launches it, and it takes the
CUDA engine's device buffers without a copy through the CUDA array interface (Buffer). A World is
one process's view: its rank, how many there are, its device, and sums, extremes, broadcasts and
point-to-point messages over host arrays, device buffers and torch tensors.
"""

from __future__ import annotations

import contextlib
import os
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from ..engines.base import Replicas
from ..errors import BackendError, PeerError

TIMEOUT = 120  # seconds a collective waits for the other processes (GENLAB_DIST_TIMEOUT) before it fails
BUCKET_MB = 25.0  # MiB of gradients a data-parallel step gathers before their sum starts (GENLAB_BUCKET_MB; DDP's default)

KEPT_TENSORS = 16  # torch tensors over an engine's device buffers kept between steps (World.tensor)

# NVLink multicast (NVLS) stays off: it needs a fabric manager set-up these machines do not have
SAFE_ENVIRONMENT = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"}


@dataclass(frozen=True)
class Buffer:
    """`count` values of `dtype` at device address `ptr`: a CUDA engine buffer, seen by torch as a
    tensor without a copy (the CUDA array interface)."""

    ptr: int
    count: int
    dtype: str = "float32"

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": (self.count,), "typestr": np.dtype(self.dtype).str, "data": (int(self.ptr), False),
                "version": 3, "strides": None}


def _torch():
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        raise BackendError("training over several processes needs PyTorch (torch.distributed): "
                           "pip install torch") from None
    return torch, dist


class World:
    """This process among the run's processes (rank of size). start() joins the group torchrun (or
    any launcher setting RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT) described, or makes a group
    of one when there is none."""

    def __init__(self, rank: int, size: int, local_rank: int, backend: str):
        torch, _ = _torch()
        self.rank, self.size, self.local_rank, self.backend = rank, size, local_rank, backend
        self.device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
        self.bucket_bytes = bucket_bytes()  # a data-parallel step's gradient buckets (genlab.engines.buckets)
        self._tensors: dict[Buffer, object] = {}  # torch tensors over device buffers (tensor())

    @classmethod
    def start(cls, backend: str | None = None) -> "World":
        """Join (or make) the process group: NCCL when this process has a GPU and torch sees it,
        else gloo. The environment's rank and size come from the launcher."""
        torch, dist = _torch()
        for name, value in SAFE_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if backend is None:
            backend = "nccl" if _gpu_here() and torch.cuda.is_available() else "gloo"
        if backend not in ("nccl", "gloo"):
            raise BackendError(f"unknown process-group backend {backend!r}; choose nccl or gloo")
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            kwargs = {"device_id": torch.device("cuda", local_rank)} if backend == "nccl" else {}
            if "RANK" not in os.environ:  # a single process: a group of one through an in-process store (a
                kwargs.update(store=dist.HashStore(), rank=0, world_size=1)  # port picked free could be taken)
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout()), **kwargs)
        world = cls(dist.get_rank(), dist.get_world_size(), local_rank, backend)
        import atexit

        atexit.register(world.close)  # a process group left open aborts the process at exit
        world.sum(np.zeros(1))  # every process takes part in the first collective (point-to-point needs it)
        return world

    @classmethod
    def alone(cls, device: str = "cpu") -> "World":
        """A world of this process only, without a process group (a baseline of one device)."""
        return cls(0, 1, 0, "nccl" if device == "cuda" else "gloo")

    def close(self) -> None:
        """Leave the process group (at the end of a run)."""
        _, dist = _torch()
        if dist.is_initialized():
            dist.destroy_process_group()

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size}, backend={self.backend!r}, device={self.device})"

    @contextlib.contextmanager
    def _peers(self, what: str):
        """torch.distributed's failures (a process died: its connection closed; or it hung past
        the timeout) as a PeerError that says so in genlab's words."""
        try:
            yield
        except RuntimeError as e:  # DistBackendError, DistNetworkError, gloo's and NCCL's own
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PeerError(f"process {self.rank} of {self.size}: {what} failed: another process died or stopped "
                            f"answering within {timeout():g} s ({first[:200]}); this process stops too (files "
                            "saved before are intact)") from None

    # ------------------------------------------------------------------ tensors
    def ordered(self, stream: int | None = None):
        """A context in which torch's work is queued on CUDA stream `stream` (an engine's handle),
        so that it follows the kernels already queued there and precedes those queued after;
        None: torch's current stream."""
        torch, _ = _torch()
        if stream is None or self.backend != "nccl":
            return nullcontext()
        return torch.cuda.stream(torch.cuda.ExternalStream(stream, device=self.device))

    def tensor(self, array):
        """A torch tensor over `array` (a Buffer or a torch tensor: the same memory; a NumPy
        array: the same memory on gloo, a device copy on NCCL) and whether it must be copied back."""
        torch, _ = _torch()
        if isinstance(array, np.ndarray):
            t = torch.from_numpy(array)
            return (t, False) if self.backend == "gloo" else (t.to(self.device), True)
        if isinstance(array, Buffer):  # the same buffers every step: their tensors are kept
            t = self._tensors.pop(array, None)
            if t is None:
                t = torch.as_tensor(array, device=self.device)
            self._tensors[array] = t  # (most recent last; buffers replaced by growth fall out)
            if len(self._tensors) > KEPT_TENSORS:
                del self._tensors[next(iter(self._tensors))]
            return t, False
        return array, False

    def _start(self, array, op, scale: float = 1.0, stream: int | None = None) -> "Summing":
        """The collective `op` over scale * array begun (asynchronous); Summing.wait() finishes it."""
        _, dist = _torch()
        if self.size == 1 and scale == 1.0:
            return Summing(self, None, None, None)
        with self.ordered(stream):
            t, back = self.tensor(array)
            if scale != 1.0:
                t.mul_(scale)
            work = None
            if self.size > 1:
                with self._peers("a sum over the processes"):
                    work = dist.all_reduce(t, op=op, async_op=True)
        return Summing(self, work, t, array if back else None)

    def _reduce(self, array, op, scale: float = 1.0, stream: int | None = None) -> None:
        self._start(array, op, scale, stream).wait()

    def start_sum(self, array, scale: float = 1.0, stream: int | None = None) -> "Summing":
        """sum() begun and left running (torch.distributed's asynchronous all-reduce): the array
        holds the sum once the returned Summing's wait() has returned."""
        return self._start(array, _torch()[1].ReduceOp.SUM, scale, stream)

    def sum(self, array, scale=1.0, stream: int | None = None) -> None:
        """array = the sum over every process of scale * its array, in place (the same bits on all)."""
        self._reduce(array, _torch()[1].ReduceOp.SUM, scale, stream)

    def min(self, array, stream: int | None = None) -> None:
        self._reduce(array, _torch()[1].ReduceOp.MIN, stream=stream)

    def max(self, array, stream: int | None = None) -> None:
        self._reduce(array, _torch()[1].ReduceOp.MAX, stream=stream)

    def broadcast(self, array, root: int) -> None:
        """array = root's array, in place."""
        _, dist = _torch()
        if self.size == 1:
            return
        with self.ordered():
            t, back = self.tensor(array)
            with self._peers("a broadcast"):
                dist.broadcast(t, root)
            if back:
                array[...] = t.cpu().numpy()

    def exchange(self, sends: list, receives: list) -> list:
        """Post sends [(tensor, process)] and receives [(tensor, process)] as one group (so that two
        processes sending to each other cannot wait on each other); returns the works to wait on
        before reading a received tensor. Between CPU processes (gloo) the group is waited for at
        once: gloo completes a send only while its sender waits on it."""
        _, dist = _torch()
        ops = [dist.P2POp(dist.isend, t, p) for t, p in sends] + [dist.P2POp(dist.irecv, t, p) for t, p in receives]
        if not ops:
            return []
        with self.ordered(), self._peers("an exchange of activations"):
            works = list(dist.batch_isend_irecv(ops))
            if self.backend == "gloo":
                for work in works:
                    work.wait()
                return []
        return works

    def wait(self, works) -> None:
        """Wait for posted messages (exchange's works); a process that died is a PeerError."""
        with self._peers("waiting for a message"):
            for work in works:
                work.wait()

    def share(self, rows: int, total: int) -> "Share":
        """This process's part of a step of `total` rows of which it holds `rows`."""
        return Share(self, rows, total)

    def slice(self, n: int) -> slice:
        """This process's rows of a batch of n: contiguous, the sizes within one of each other."""
        cuts = np.linspace(0, n, self.size + 1).round().astype(int)
        return slice(int(cuts[self.rank]), int(cuts[self.rank + 1]))


class Summing:
    """An all-reduce under way (World.start_sum)."""

    def __init__(self, world: World, work, tensor, host):
        self.world, self.work, self.tensor, self.host = world, work, tensor, host

    def wait(self) -> None:
        if self.work is not None:
            with self.world._peers("a sum over the processes"):
                self.work.wait()
        if self.host is not None:  # a host array summed through a device copy (NCCL)
            self.host[...] = self.tensor.cpu().numpy()
        self.work = self.host = None


class Share(Replicas):
    """A World seen by one data-parallel step: the collectives, this process's rows and the step's."""

    def __init__(self, world: World, rows: int, total: int):
        self.world, self.rows, self.total = world, rows, total
        self.fraction = rows / total
        self.stream: int | None = None  # the engine's CUDA stream (on_stream): the collectives queue there
        self.bucket_bytes = world.bucket_bytes

    def sum(self, array, scale=1.0) -> None:
        self.world.sum(array, scale, self.stream)

    def start_sum(self, array, scale=1.0) -> Summing:
        return self.world.start_sum(array, scale, self.stream)

    def min(self, array) -> None:
        self.world.min(array, self.stream)

    def max(self, array) -> None:
        self.world.max(array, self.stream)

    def on_stream(self, handle: int) -> None:
        # The collectives are queued on the engine's stream itself (World.ordered), after the
        # step's gradients and before its update, rather than on the legacy default stream,
        # which orders the whole device.
        self.stream = handle

    def buffer(self, ptr: int, count: int, dtype: str = "float32") -> Buffer:
        return Buffer(ptr, count, dtype)


def _gpu_here() -> bool:
    from ..backends import cuda_status

    return cuda_status()[0]


def timeout() -> float:
    """Seconds a collective waits for the other processes: GENLAB_DIST_TIMEOUT, or TIMEOUT."""
    try:
        value = float(os.environ.get("GENLAB_DIST_TIMEOUT", TIMEOUT))
    except ValueError:
        raise BackendError(f"GENLAB_DIST_TIMEOUT must be a number of seconds, got "
                           f"{os.environ['GENLAB_DIST_TIMEOUT']!r}") from None
    if not value > 0:
        raise BackendError(f"GENLAB_DIST_TIMEOUT must be positive, got {value:g}")
    return value


def bucket_bytes() -> int:
    """Bytes of gradients a data-parallel step gathers before it starts their sum over the
    processes (genlab.engines.buckets): GENLAB_BUCKET_MB MiB, or BUCKET_MB."""
    try:
        value = float(os.environ.get("GENLAB_BUCKET_MB", BUCKET_MB))
    except ValueError:
        raise BackendError(f"GENLAB_BUCKET_MB must be a number of MiB, got {os.environ['GENLAB_BUCKET_MB']!r}") from None
    if not value > 0:
        raise BackendError(f"GENLAB_BUCKET_MB must be positive, got {value:g}")
    return max(1, int(value * 2**20))
