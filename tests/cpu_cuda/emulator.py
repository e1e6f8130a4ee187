"""genlab's kernels run on the CPU, for tests: each cuda/*.cu file as the loader pastes it (its
fp32 build), made host C++ by three substitutions (dynamic shared memory, block_sum's warp
shuffle, the PTX acquire load), compiled by g++ against shim.h and launch.h into a shared library
with a `launch_<kernel>` entry for each of its kernels, and called through ctypes. The stand-in
GPU (tests/fake_cuda.py with executes=True) hands every launch to `Runner.launch`.

Blocks run one after another, except those of RESIDENT kernels, whose blocks wait for each
other: each of those blocks runs in a process of its own, all at once. What a GPU alone has
(tensor cores, thread-block clusters, cp.async, a memory model weaker than this one) is not
emulated: kernels that need it are not built here (a clear error says so). conv.cu's copy_async
writes its plain copy where __CUDA_ARCH__ is not defined (here): the copies land at once, so the
emulator checks what its kernels stage and where, the GPU tests and racecheck when it lands.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from genlab.engines.cuda import runtime

HERE = Path(__file__).resolve().parent
RESIDENT = {"wavefront_step", "dataflow_step", "rows_step"}  # kernels whose blocks wait for other blocks
UNSUPPORTED = {"cluster.cu": "thread-block clusters"}
CACHE = Path(tempfile.gettempdir()) / "genlab_cpu_cuda"

PTX = {r'asm volatile\("mov\.u64 %0, %%globaltimer;" : "=l"\((\w+)\)\);': r"\1 = host_now_ns();",
       r'asm volatile\("mov\.u32 %0, %%smid;" : "=r"\((\w+)\)\);': r"\1 = 0;",
       r'asm volatile\("red\.release\.gpu\.global\.add\.s32.*?"memory"\);': "__threadfence(); atomicAdd(flag, v);"}
HOST_BLOCK_SUM = """__device__ __forceinline__ double block_sum(double v, double* scratch) {
    __syncthreads();
    shuffle_area[threadIdx.x] = v;
    __syncthreads();
    double total = 0.0;
    for (int i = 0; i < (int)blockDim.x; ++i) total += shuffle_area[i];
    return total;
}
"""


def host_text(src: str) -> str:
    """A translation unit as genlab's loader pastes it, made host C++ for shim.h: block_sum without
    the warp shuffle, the PTX acquire load, release add, clock and SM id in C++, the dynamic shared
    memory an array of the shim's."""
    src, n = re.subn(r"__device__ __forceinline__ double block_sum\(double v, double\* scratch\) \{.*?\n\}\n",
                     lambda _: HOST_BLOCK_SUM, src, count=1, flags=re.S)
    assert n == 1, "genlab.cuh's block_sum changed: update its host version"
    src, n = re.subn(r'asm volatile\("ld\.acquire\.gpu\.global\.s32.*?"memory"\);', "v = load_acquire_host(p);", src)
    assert n == 1, "genlab.cuh's load_acquire changed: update its host version"
    src = re.sub(r"extern __shared__ (\w+) (\w+)\[\];", r"\1* \2 = reinterpret_cast<\1*>(dynamic_shared);", src)
    for ptx, host in PTX.items():  # the clock, the SM id (rows.cu's trace), the release add (wavefront.cu)
        src = re.sub(ptx, host, src)
    return src


def host_source(file: str) -> tuple[str, list[str]]:
    """`file`'s translation unit made host C++, and its kernels' names."""
    src = runtime.source([file])
    names = runtime.kernel_names(src)
    src = host_text(src)
    # inline PTX left in the fp32 build (tensor cores sit behind #if PRECISION) fails g++'s assembler
    entries = "\n".join(
        f'extern "C" int launch_{name}(int gx, int gy, int threads, long shared, void** args) {{\n'
        f'    return run_grid(gx, gy, threads, shared, {str(name in RESIDENT).lower()}, '
        f'[&] {{ call_kernel({name}, args); }});\n}}' for name in names)
    return f'#include "shim.h"\n{src}\n#include "launch.h"\n{entries}\n', names


class Runner:
    """Compiles each kernel file at its first launch (cached by its text) and runs launches."""

    def __init__(self):
        self.libraries: dict[str, ctypes.CDLL] = {}
        self.file_of: dict[str, str] = {}

    def _library(self, kernel: str) -> ctypes.CDLL:
        if kernel not in self.file_of:  # the file that defines it (others may include that file)
            for path in sorted(runtime.cuda_dir().glob("*.cu")):
                if kernel in runtime.kernel_names(path.read_text()):
                    self.file_of[kernel] = path.name
                    break
        file = self.file_of[kernel]
        if file in UNSUPPORTED:  # the test that asked for it is skipped, saying why
            import pytest

            pytest.skip(f"{file} needs {UNSUPPORTED[file]}, which the CPU emulator does not have")
        if file not in self.libraries:
            text, _ = host_source(file)
            digest = hashlib.sha256((text + (HERE / "shim.h").read_text() + (HERE / "launch.h").read_text())
                                    .encode()).hexdigest()[:16]
            CACHE.mkdir(exist_ok=True)
            library = CACHE / f"{file[:-3]}_{digest}.so"
            if not library.exists():  # built under a name of this process's, then renamed: runs may share the cache
                source = CACHE / f"{file[:-3]}_{digest}_{os.getpid()}.cpp"
                source.write_text(text)
                built = library.with_name(f"{library.stem}_{os.getpid()}.so")
                result = subprocess.run(["g++", "-std=c++20", "-O1", "-fPIC", "-shared", "-pthread", "-w",
                                         "-ffp-contract=off", "-I", str(HERE), str(source), "-o", str(built)],
                                        capture_output=True, text=True)
                if result.returncode:
                    raise RuntimeError(f"g++ failed on {file}:\n{result.stderr[-4000:]}")
                os.replace(built, library)
            self.libraries[file] = ctypes.CDLL(str(library))
        return self.libraries[file]

    def launch(self, name: str, types: list, grid: tuple, threads: int, shared: int, args: tuple) -> None:
        entry = getattr(self._library(name), f"launch_{name}")
        entry.restype = ctypes.c_int
        keep = []
        for kind, value in zip(types, args):
            if isinstance(kind, np.dtype):
                data = value if isinstance(value, bytes) else np.asarray(value).tobytes()
                keep.append(ctypes.create_string_buffer(data, len(data)))
            elif kind == "P":
                keep.append(ctypes.c_uint64(int(value)))
            else:
                keep.append({"i": ctypes.c_int32, "I": ctypes.c_uint32, "f": ctypes.c_float,
                             "d": ctypes.c_double}[kind](value))
        pointers = (ctypes.c_void_p * max(len(keep), 1))(*[ctypes.cast(ctypes.pointer(k), ctypes.c_void_p)
                                                          for k in keep])
        if grid[0] * grid[1] == 0:
            return
        failed = entry(int(grid[0]), int(grid[1]), int(threads), int(shared), pointers)
        assert failed == 0, f"a block of {name} did not finish"
