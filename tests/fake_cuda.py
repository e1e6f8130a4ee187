"""A stand-in for PyCUDA and genlab's kernel launcher, so that the host side of a CUDA engine runs
on a machine without a GPU: device memory is a shared memory map at real host addresses (copies,
fills and out-of-bounds accesses checked), and a launch checks its arguments against the kernel's
parameter list parsed from cuda/*.cu (their number and types, every pointer a live buffer). A
graph's capture records the work enqueued on it and a replay does it again.

By default a launch is recorded, not run: tests check the plumbing (arguments, sizes, the calls
made). With `executes=True` (the `cpu_gpu` fixture) each launch runs the kernel's own source on
the CPU (tests/cpu_cuda/emulator.py), so an engine computes real numbers, slowly.

    def test_...(fake_gpu):  # the fixtures in conftest.py install it
        ...
        fake_gpu.launches  # [(kernel, grid, args, shared bytes), ...]
"""

from __future__ import annotations

import bisect
import ctypes
import mmap
import sys
import types
from dataclasses import dataclass, field

import numpy as np

from genlab.engines.cuda import runtime

SM_COUNT, REGS_PER_SM, SHARED_PER_SM, OPTIN = 132, 65536, 233472, 232448  # an H200's figures
EMULATED_SMS = 16  # what the CPU emulator claims: a persistent kernel's resident blocks are processes


ARENA = 1 << 31  # bytes of address space for device memory (pages are committed as they are touched)


class FakeBuffer:
    def __init__(self, space: "FakeGPU", nbytes: int):
        self.nbytes = int(nbytes)
        size = -(-max(self.nbytes, 1) // 256) * 256
        offset = space.used
        assert offset + size + 256 <= ARENA, "the stand-in GPU's memory is full"
        space.used += size + 256  # a gap between buffers
        self.data = np.frombuffer(space.arena, np.uint8, max(self.nbytes, 1), offset)
        self.address = space.base + offset
        space.buffers.append(self)  # in address order: addresses only grow

    def __int__(self) -> int:
        return self.address

    def free(self) -> None:
        pass


@dataclass
class FakeGPU:
    launches: list = field(default_factory=list)
    buffers: list = field(default_factory=list)
    functions: dict = field(default_factory=lambda: _Functions())
    executes: bool = False  # run each launch's kernel on the CPU (tests/cpu_cuda/emulator.py)
    _starts: list = field(default_factory=list)
    capturing: list | None = None  # a graph's work, while it is captured
    used: int = 0

    def __post_init__(self):
        # shared, so that the processes the emulator forks for a persistent kernel's blocks write here
        self.arena = mmap.mmap(-1, ARENA, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self.base = ctypes.addressof(ctypes.c_char.from_buffer(self.arena))
        self.runner = None

    def enqueue(self, work) -> None:
        """Work on a stream: done now, or recorded while a graph is captured."""
        if self.capturing is not None:
            self.capturing.append(work)
        else:
            work()

    def resolve(self, pointer, nbytes: int) -> tuple[FakeBuffer, int]:
        """The buffer and offset `pointer` (a buffer or an address) reaches, nbytes from it in bounds."""
        return self._resolve(int(pointer), nbytes)

    def resolve_copy(self, pointer, nbytes: int) -> tuple[FakeBuffer, int]:
        """resolve() for a copy or memset: PyCUDA's take a buffer or a Python int, not a NumPy integer."""
        assert not isinstance(pointer, np.integer), \
            f"PyCUDA's copies take a buffer or an int address, not {type(pointer).__name__}"
        return self.resolve(pointer, nbytes)

    def _resolve(self, address: int, nbytes: int) -> tuple[FakeBuffer, int]:
        if len(self._starts) != len(self.buffers):
            self._starts = [b.address for b in self.buffers]
        i = bisect.bisect_right(self._starts, address) - 1
        b = self.buffers[i] if i >= 0 else None
        if b is None or address >= b.address + max(b.nbytes, 1):
            raise AssertionError(f"address {address:#x} is in no buffer")
        offset = address - b.address
        assert offset + nbytes <= b.nbytes, f"{nbytes} bytes at offset {offset} overrun a {b.nbytes}-byte buffer"
        return b, offset


def driver_module(gpu: FakeGPU) -> types.ModuleType:
    drv = types.ModuleType("pycuda.driver")
    names = ["NUM_REGS", "SHARED_SIZE_BYTES", "MAX_DYNAMIC_SHARED_SIZE_BYTES"]
    drv.function_attribute = types.SimpleNamespace(**{n: n for n in names})
    names = ["MAX_REGISTERS_PER_MULTIPROCESSOR", "MAX_SHARED_MEMORY_PER_MULTIPROCESSOR", "MULTIPROCESSOR_COUNT",
             "MAX_THREADS_PER_MULTIPROCESSOR", "MAX_SHARED_MEMORY_PER_BLOCK_OPTIN", "MAX_BLOCKS_PER_MULTIPROCESSOR",
             "RESERVED_SHARED_MEMORY_PER_BLOCK", "CLOCK_RATE"]
    drv.device_attribute = types.SimpleNamespace(**{n: n for n in names})

    def mem_alloc(nbytes):
        return FakeBuffer(gpu, nbytes)

    def to_device(array):
        array = np.ascontiguousarray(array)
        buf = FakeBuffer(gpu, array.nbytes)
        buf.data[:array.nbytes] = array.view(np.uint8).ravel()
        return buf

    def htod(dst, src, stream=None):
        src = np.ascontiguousarray(src)
        b, off = gpu.resolve_copy(dst, src.nbytes)

        def work():
            b.data[off:off + src.nbytes] = src.view(np.uint8).ravel()
        gpu.enqueue(work)

    def dtoh(dst, src, stream=None):
        b, off = gpu.resolve_copy(src, dst.nbytes)

        def work():
            dst.view(np.uint8).reshape(-1)[:] = b.data[off:off + dst.nbytes]
        gpu.enqueue(work)

    def dtod(dst, src, nbytes, stream=None):
        s, so = gpu.resolve(src, nbytes)
        d, do = gpu.resolve(dst, nbytes)

        def work():
            d.data[do:do + nbytes] = s.data[so:so + nbytes]
        gpu.enqueue(work)

    def memset_d32(dst, value, count, stream=None):
        b, off = gpu.resolve_copy(dst, 4 * count)

        def work():
            b.data[off:off + 4 * count] = np.full(count, value, np.uint32).view(np.uint8)
        gpu.enqueue(work)

    class Stream:
        handle = 0

        def synchronize(self):
            pass

        def wait_for_event(self, event):
            assert isinstance(event, Event) and event.recorded, "a stream waits for an event never recorded"

    class Event:
        """Work here runs in the order it is enqueued, so an event orders nothing more; a wait
        checks that the event was recorded first (as a fork and join inside a capture need)."""

        recorded = False

        def record(self, stream=None):
            self.recorded = True
            return self

        def synchronize(self):
            return self

    class Device:
        def __init__(self, ordinal=0):
            self.ordinal = ordinal

        @staticmethod
        def count():
            return 1

        def name(self):
            return FakeDevice().name()

        def get_attribute(self, attribute):
            return FakeDevice().get_attribute(attribute)

        def compute_capability(self):
            return (9, 0)

    class Memcpy2D:
        """A strided copy between host rows and device rows (width_in_bytes of each of height rows)."""

        def set_src_host(self, a):
            self.src = ("host", a)

        def set_dst_host(self, a):
            self.dst = ("host", a)

        def set_src_device(self, p):
            self.src = ("device", p)

        def set_dst_device(self, p):
            self.dst = ("device", p)

        def __call__(self, stream=None, aligned=False):
            def work():
                for row in range(self.height):
                    chunk = self._read(self.src, row * self.src_pitch, self.width_in_bytes)
                    self._write(self.dst, row * self.dst_pitch, chunk)
            gpu.enqueue(work)

        @staticmethod
        def _read(end, offset, n):
            kind, where = end
            if kind == "host":
                return np.ascontiguousarray(where).view(np.uint8).reshape(-1)[offset:offset + n].copy()
            b, off = gpu.resolve(int(where) + offset, n)
            return b.data[off:off + n].copy()

        @staticmethod
        def _write(end, offset, data):
            kind, where = end
            if kind == "host":
                where.view(np.uint8).reshape(-1)[offset:offset + len(data)] = data
            else:
                b, off = gpu.resolve(int(where) + offset, len(data))
                b.data[off:off + len(data)] = data

    def memset_d2d32(dst, pitch, value, width, height, stream=None):
        for row in range(height):
            memset_d32(int(dst) + row * pitch, value, width)

    drv.Memcpy2D = Memcpy2D
    drv.memset_d2d32 = drv.memset_d2d32_async = memset_d2d32
    drv.init = lambda: None
    drv.Device = Device
    drv.mem_alloc, drv.to_device, drv.Stream, drv.Event = mem_alloc, to_device, Stream, Event
    drv.memcpy_htod = drv.memcpy_htod_async = htod
    drv.memcpy_dtoh = drv.memcpy_dtoh_async = dtoh
    drv.memcpy_dtod = drv.memcpy_dtod_async = dtod
    drv.memset_d32 = drv.memset_d32_async = memset_d32
    drv.pagelocked_zeros = lambda shape, dtype: np.zeros(shape, dtype)
    drv.pagelocked_empty = lambda shape, dtype: np.zeros(shape, dtype)
    drv.MemoryError = MemoryError
    drv.mem_get_info = lambda: (1 << 36, 1 << 37)
    return drv


class FakeFunction:
    def __init__(self, name: str, registers: int = 164, static_shared: int = 8256):
        self.name, self.attributes = name, {"NUM_REGS": registers, "SHARED_SIZE_BYTES": static_shared}

    def get_attribute(self, attribute):
        return self.attributes[attribute]

    def set_attribute(self, attribute, value):
        assert attribute == "MAX_DYNAMIC_SHARED_SIZE_BYTES" and 0 <= value <= OPTIN
        self.attributes[attribute] = value


class FakeDevice:
    sms = SM_COUNT

    def get_attribute(self, attribute):
        return {"MAX_REGISTERS_PER_MULTIPROCESSOR": REGS_PER_SM, "MAX_SHARED_MEMORY_PER_MULTIPROCESSOR": SHARED_PER_SM,
                "MULTIPROCESSOR_COUNT": self.sms, "MAX_THREADS_PER_MULTIPROCESSOR": 2048,
                "MAX_SHARED_MEMORY_PER_BLOCK_OPTIN": OPTIN, "MAX_BLOCKS_PER_MULTIPROCESSOR": 32,
                "RESERVED_SHARED_MEMORY_PER_BLOCK": 1024, "CLOCK_RATE": 1980000}[attribute]

    def name(self):
        return "a fake H200"

    def compute_capability(self):
        return (9, 0)


class FakeLauncher(runtime.Launches):
    """runtime.Launcher with its launches (named() and flat() call it) checked against each kernel's
    parameter list, and run on the CPU where the stand-in executes."""

    def __init__(self, gpu: FakeGPU, stream=None, precision=None):  # (no kernels to load)
        self.gpu, self.stream = gpu, stream
        self.functions = gpu.functions

    def __call__(self, name, grid, *args, threads=runtime.THREADS, shared=0):
        types_ = self.functions.signature(name)
        assert len(args) == len(types_), f"{name} takes {len(types_)} arguments, given {len(args)}"
        for i, (kind, value) in enumerate(zip(types_, args)):
            if isinstance(kind, np.dtype):  # a struct passed by value: a record of its layout, or its bytes
                size = len(value) if isinstance(value, bytes) else getattr(value, "nbytes", -1)
                assert size == kind.itemsize, f"{name}'s argument {i} is {size} bytes, its struct {kind.itemsize}"
            elif kind == "P":
                if not (isinstance(value, np.intp) and value == 0):  # a null pointer for an unused state
                    self.gpu.resolve(value, 0)
            else:
                expected = {"i": np.int32, "I": np.uint32, "f": np.float32, "d": np.float64}[kind]
                assert isinstance(value, expected), f"{name}'s argument {i} is {type(value).__name__}, not {expected.__name__}"
        if shared > 48 * 1024:
            assert self.functions[name].attributes.get("MAX_DYNAMIC_SHARED_SIZE_BYTES", 0) >= shared, \
                f"{name} launched with {shared} bytes of dynamic shared memory without the attribute set"
        self.gpu.launches.append((name, grid, args, shared))
        if self.gpu.executes:
            if self.gpu.runner is None:
                from cpu_cuda.emulator import Runner

                self.gpu.runner = Runner()
            runner = self.gpu.runner
            self.gpu.enqueue(lambda: runner.launch(name, types_, grid, threads, shared, args))


class _Signatures(dict):
    def __missing__(self, name):
        self[name] = _Functions().signature(name)
        return self[name]


class _Functions(dict):
    """Kernels by name (any kernel of cuda/*.cu), with their parameter lists parsed from the source."""

    def __missing__(self, name):
        self.signature(name)
        self[name] = FakeFunction(name)
        return self[name]

    def signature(self, name):
        if name not in _SIGNATURES:  # parsed once a process: the sources do not change under a run
            for path in sorted(runtime.cuda_dir().glob("*.cu")):
                src = runtime.source([path.name])
                if name in runtime.kernel_names(src):
                    _SIGNATURES[name] = runtime.signature(src, name)
                    break
            else:
                raise AssertionError(f"no kernel {name} in cuda/")
        return _SIGNATURES[name]


_SIGNATURES: dict = {}


class FakeGraph:
    """graph.Graph's interface: a capture records the work enqueued (launches checked), a replay
    does it again."""

    gpu: FakeGPU

    def __init__(self, stream, enqueue):
        gpu = FakeGraph.gpu
        gpu.capturing = []
        try:
            enqueue()
        finally:
            self.work, gpu.capturing = gpu.capturing, None
        self.replays = 0

    def launch(self):
        self.replays += 1
        for work in self.work:
            work()

    def destroy(self):
        pass


def install(monkeypatch, executes: bool = False) -> FakeGPU:
    """Put the fakes in place of pycuda and of genlab's runtime for one test (executes: the
    kernels run on the CPU)."""
    gpu = FakeGPU(executes=executes)
    FakeGraph.gpu = gpu
    monkeypatch.setattr(FakeDevice, "sms", EMULATED_SMS if executes else SM_COUNT)
    package = types.ModuleType("pycuda")
    package.driver = driver_module(gpu)
    tools = types.ModuleType("pycuda.tools")

    class DeviceMemoryPool:
        def allocate(self, nbytes):
            return FakeBuffer(gpu, nbytes)

    tools.DeviceMemoryPool = DeviceMemoryPool
    package.tools = tools
    for name, module in (("pycuda", package), ("pycuda.driver", package.driver), ("pycuda.tools", tools)):
        monkeypatch.setitem(sys.modules, name, module)
    state = types.SimpleNamespace(device=FakeDevice(), context=None, files=set(), functions=gpu.functions,
                                  signatures=_Signatures())
    monkeypatch.setattr(runtime, "kernels", lambda: state)
    monkeypatch.setattr(runtime, "load", lambda *files, precision=None: None)
    monkeypatch.setattr(runtime, "Launcher", lambda stream, precision=None: FakeLauncher(gpu, stream, precision))
    from genlab import backends
    from genlab.engines.cuda import engine, graph

    monkeypatch.setattr(backends, "cuda_status", lambda: (True, "a fake H200"))

    monkeypatch.setattr(graph, "Graph", FakeGraph)
    monkeypatch.setattr(engine, "Graph", FakeGraph)
    return gpu
