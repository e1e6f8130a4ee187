"""Device memory for one engine: every allocation names what it is for, and running out is a
clear BackendError that leaves the engine (and the network on the host) as it was."""

from __future__ import annotations

import numpy as np

from ...errors import BackendError

POOLED = 1 << 20  # buffers up to this many bytes come from the engine's memory pool
ALIGN = 256  # bytes: where upload_all places each array (as cudaMalloc aligns a buffer)


class Memory:
    def __init__(self, stream):
        import pycuda.driver as drv
        from pycuda.tools import DeviceMemoryPool

        self.drv, self.stream = drv, stream
        # small buffers (topology, task lists, scores: dozens at every growth step) come from a
        # pool, so that a growth step neither allocates from nor frees to the driver (a free waits
        # for the whole device)
        self._pool = DeviceMemoryPool()

    def new(self, nbytes: int, what: str, pooled: bool = False):
        """A buffer of at least nbytes (4 at least); pooled: from the pool whatever its size (the
        arenas of a growth step, replaced at every step)."""
        drv, nbytes = self.drv, max(int(nbytes), 4)
        try:
            return self._pool.allocate(nbytes) if pooled or nbytes <= POOLED else drv.mem_alloc(nbytes)
        except drv.MemoryError:
            free, total = drv.mem_get_info()
            raise BackendError(f"out of GPU memory allocating {nbytes / 2**20:.1f} MiB for {what} "
                               f"({free / 2**20:.0f} of {total / 2**20:.0f} MiB free); the network on the "
                               "host is unchanged") from None

    def check_room(self, nbytes: int, what: str) -> None:
        """BackendError now, before anything is allocated, if nbytes will not fit."""
        free, total = self.drv.mem_get_info()
        if nbytes > free:
            raise BackendError(f"out of GPU memory: {what} needs {nbytes / 2**20:.1f} MiB and the device has "
                               f"{free / 2**20:.0f} of {total / 2**20:.0f} MiB free; the network on the host "
                               "is unchanged")

    def upload(self, array: np.ndarray, what: str = "topology"):
        """A new buffer holding `array` (copied synchronously)."""
        array = np.ascontiguousarray(array)
        buf = self.new(array.nbytes, what)
        if array.nbytes:
            self.drv.memcpy_htod(buf, array)
        return buf

    def arena(self, sizes: dict, what: str) -> tuple[object, dict]:
        """One buffer for every named part (bytes each, in order, ALIGN-byte aligned; a growth step
        needs some sixty, each a call to the allocator alone): the buffer, which the caller keeps
        alive, and each part's address. Parts next to each other in `sizes` are next to each other
        in memory, but for the alignment: one fill or one copy serves a run of them."""
        offsets, total = {}, 0
        for name, nbytes in sizes.items():
            offsets[name], total = total, total + -(-max(int(nbytes), 1) // ALIGN) * ALIGN
        buf = self.new(total, what, pooled=True)
        return buf, {name: int(buf) + offset for name, offset in offsets.items()}

    def upload_all(self, arrays: dict, what: str = "topology") -> tuple[object, dict]:
        """The arrays put on the device in one synchronous copy (a growth step has a dozen small
        ones, each a round trip of its own): one buffer, which the caller keeps alive, and each
        array's device address in it (ALIGN-byte aligned)."""
        arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
        offsets, total = {}, 0
        for name, a in arrays.items():
            offsets[name], total = total, total + -(-max(a.nbytes, 1) // ALIGN) * ALIGN
        host = np.empty(max(total, 4), np.uint8)
        for name, a in arrays.items():
            host[offsets[name]:offsets[name] + a.nbytes] = a.reshape(-1).view(np.uint8)
        buf = self.new(total, what, pooled=True)
        self.drv.memcpy_htod(buf, host)
        return buf, {name: int(buf) + offset for name, offset in offsets.items()}

    def fill(self, buf, pattern: int, words: int) -> None:
        """words 32-bit words of buf set to `pattern`, on the stream."""
        self.drv.memset_d32_async(buf, pattern, words, self.stream)
