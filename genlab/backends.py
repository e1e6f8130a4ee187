"""Choosing an engine: 'serial' always works; 'cuda' needs pycuda, a driver, a device and nvcc.

`backend="auto"` walks that ladder and falls back to the serial engine with one line that says
which rung was missing.
"""

from __future__ import annotations

import os
import shutil
from enum import StrEnum
from functools import lru_cache

from .errors import BackendError
from .notices import say


class Backend(StrEnum):
    """Trainer(backend=...): a name or the member itself."""

    AUTO = "auto"      # the GPU where the CUDA engine can run, else the serial engine (GENLAB_BACKEND says which)
    SERIAL = "serial"  # NumPy, everywhere: the reference
    CUDA = "cuda"      # genlab's kernels on an NVIDIA GPU


BACKENDS = tuple(Backend)


@lru_cache(maxsize=None)
def cuda_status() -> tuple[bool, str]:
    """(True, device name) when the CUDA engine can run here, else (False, what is missing)."""
    try:
        import pycuda.driver as drv
    except ImportError:
        return False, "pycuda is not installed (pip install 'genlab[cuda]')"
    except Exception as e:  # a broken pycuda build
        return False, f"pycuda failed to import ({type(e).__name__}: {e})"
    try:
        drv.init()
    except Exception as e:
        return False, f"no usable CUDA driver (cuInit failed: {e})"
    if drv.Device.count() == 0:
        return False, "the CUDA driver sees no GPU"
    cuda_root = os.environ.get("CUDA_ROOT") or os.environ.get("CUDA_HOME") or "/usr/local/cuda"
    if not (shutil.which("nvcc") or os.path.exists(os.path.join(cuda_root, "bin", "nvcc"))):
        return False, "nvcc, the CUDA compiler, is not on PATH (needed to build genlab's kernels)"
    return True, drv.Device(0).name()


_said: set[str] = set()


def _say_once(line: str) -> None:
    if line not in _said:
        _said.add(line)
        say(line)


def resolve(backend: str = Backend.AUTO) -> Backend:
    """The engine that `backend` means here (Backend.SERIAL or Backend.CUDA); raise BackendError
    if it cannot run. GENLAB_BACKEND (serial or cuda) says what "auto" means."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    backend = Backend(backend)
    if backend is Backend.AUTO and os.environ.get("GENLAB_BACKEND") in (Backend.SERIAL, Backend.CUDA):
        backend = Backend(os.environ["GENLAB_BACKEND"])
    if backend is Backend.SERIAL:
        return backend
    ok, why = cuda_status()
    if backend is Backend.CUDA and not ok:
        raise BackendError(f"the CUDA backend is not available: {why}")
    if not ok:
        _say_once(f"genlab: using the serial engine ({why})")
        return Backend.SERIAL
    return Backend.CUDA


def make_engine(backend: str, net, optimizer, dtype="float32", executor: str | None = None,
                precision=None):
    """An engine of the resolved backend, loaded with `net`. `executor` picks the CUDA engine's
    schedule (genlab.engines.cuda.EXECUTORS, or "auto": picked per shape, the default); the
    serial engine has one, so asking it for a named executor is an error, unless backend "auto"
    fell back to it (it says so on stderr). `precision`: the dense products' arithmetic
    (genlab.precision; None: fp32)."""
    from .engines.cuda.executors import AUTO, DEFAULT, check_name
    from .precision import DEFAULT as FP32
    from .precision import parse

    if executor is not None:
        check_name(executor)  # an unknown name is an error on every backend
    precision = FP32 if precision is None else parse(precision)
    engine = ENGINES[resolve(backend)](net.recurrent)
    engine.check_precision(precision)
    if engine.has_executors:
        return engine(net, optimizer, dtype=dtype, executor=executor or DEFAULT, precision=precision)
    if executor not in (None, AUTO) and backend == Backend.SERIAL:
        raise BackendError(f"executor {executor!r} is a schedule of the CUDA engine; the serial engine runs one "
                           "group after another (leave executor unset, or use backend='cuda')")
    return engine(net, optimizer, dtype=dtype, precision=precision)


def _serial(recurrent: bool):
    from .engines.serial import SerialEngine

    return SerialEngine  # it runs recurrent networks through time itself


def _cuda(recurrent: bool):
    if recurrent:
        from .engines.cuda.recurrent import RecurrentCudaEngine

        return RecurrentCudaEngine  # the network unrolled over its steps
    from .engines.cuda import CudaEngine

    return CudaEngine


# a backend's name: its engine class for a network with (or without) recurrent edges, imported on use
ENGINES = {Backend.SERIAL: _serial, Backend.CUDA: _cuda}
