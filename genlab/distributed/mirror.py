"""Replicas without other processes: `copies` replicas that all hold this process's rows, so that
a sum over them is `copies` times this replica's share. A data-parallel step over Mirror(c) on a
batch equals the plain step on that batch (every replica's mean gradient is the same), which
tests the replica path of an engine (its sums, scales and packing) in one process, and times that
path's cost without any network (genlab.bench)."""

from __future__ import annotations

import ctypes

import numpy as np

from ..engines.base import Replicas


class Done:
    """A sum that was over when it was started."""

    def wait(self) -> None:
        pass


class Mirror(Replicas):
    """`copies` identical replicas of `rows` rows each. Sums work on host arrays and on device
    buffers whose memory the host can address (the CPU stand-in for a GPU in the tests); on a
    real GPU only one copy works (its sums leave the memory as it is): the replica path's cost
    without any collective (benchmarks/replica_overhead.py)."""

    def __init__(self, rows: int, copies: int = 2, bucket_bytes: int | None = None):
        if copies < 1 or rows < 1:
            raise ValueError(f"a mirror needs at least one copy of at least one row, not {copies} of {rows}")
        self.rows, self.total, self.copies = rows, rows * copies, copies
        self.fraction = 1.0 / copies
        self.stream: int | None = None
        self.calls: list[tuple[str, int]] = []  # (collective, values) in order: what a step asked for
        if bucket_bytes is not None:
            self.bucket_bytes = bucket_bytes

    def _array(self, array) -> np.ndarray:
        return array.view if isinstance(array, _Device) else array

    def sum(self, array, scale=1.0) -> None:
        a = self._array(array)
        self.calls.append(("sum", a.size))
        if self.copies == 1 and scale == 1.0:
            return  # nothing to do: the memory is not touched (on a real GPU the host cannot read it)
        if scale != 1.0:
            a *= a.dtype.type(scale)
        a *= a.dtype.type(self.copies)

    def start_sum(self, array, scale=1.0) -> Done:
        self.sum(array, scale)
        return Done()

    def min(self, array) -> None:
        self.calls.append(("min", self._array(array).size))

    def max(self, array) -> None:
        self.calls.append(("max", self._array(array).size))

    def on_stream(self, handle: int) -> None:
        self.stream = handle

    def buffer(self, ptr: int, count: int, dtype: str = "float32") -> "_Device":
        return _Device(ptr, count, np.dtype(dtype))


class _Device:
    """Device memory the host can address (the stand-in GPU's), seen as a NumPy array."""

    def __init__(self, ptr: int, count: int, dtype: np.dtype):
        raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(int(ptr))
        self.view = np.frombuffer(raw, dtype, count)
