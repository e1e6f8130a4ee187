"""CUDA graphs through the driver API (PyCUDA has no wrapper for them).

A training step is dozens of small launches; captured once into a graph and replayed, it costs
one launch from Python. Capture records what is enqueued on a PyCUDA stream between begin() and
end(): kernels (prepared_async_call), async memsets and copies.
"""

from __future__ import annotations

import ctypes

_lib = None
CAPTURE_MODE_RELAXED = 2


def _cuda():
    global _lib
    if _lib is None:
        _lib = ctypes.CDLL("libcuda.so.1")
        for name, args in {
            "cuStreamBeginCapture_v2": [ctypes.c_void_p, ctypes.c_int],
            "cuStreamEndCapture": [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)],
            "cuGraphInstantiateWithFlags": [ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p, ctypes.c_ulonglong],
            "cuGraphLaunch": [ctypes.c_void_p, ctypes.c_void_p],
            "cuGraphExecDestroy": [ctypes.c_void_p],
            "cuGraphDestroy": [ctypes.c_void_p],
        }.items():
            getattr(_lib, name).argtypes = args
            getattr(_lib, name).restype = ctypes.c_int
    return _lib


def _check(result: int, what: str) -> None:
    if result != 0:
        raise RuntimeError(f"{what} failed with CUDA error {result}")


class Graph:
    """A captured sequence of work on `stream`, replayed with launch(). Graph.alive counts those
    not yet destroyed (the soak checks that growth events leave none behind)."""

    alive = 0

    def __init__(self, stream, enqueue):
        lib = _cuda()
        handle = ctypes.c_void_p(stream.handle)
        _check(lib.cuStreamBeginCapture_v2(handle, CAPTURE_MODE_RELAXED), "cuStreamBeginCapture")
        graph = ctypes.c_void_p()
        try:
            enqueue()
        finally:
            ended = lib.cuStreamEndCapture(handle, ctypes.byref(graph))
        _check(ended, "cuStreamEndCapture")
        self._graph, self._exec = graph, ctypes.c_void_p()
        _check(lib.cuGraphInstantiateWithFlags(ctypes.byref(self._exec), graph, 0), "cuGraphInstantiate")
        self._stream = handle
        Graph.alive += 1

    def launch(self) -> None:
        _check(_cuda().cuGraphLaunch(self._exec, self._stream), "cuGraphLaunch")

    def __del__(self):
        if _lib is not None and getattr(self, "_exec", None):
            _lib.cuGraphExecDestroy(self._exec)
            _lib.cuGraphDestroy(self._graph)
            Graph.alive -= 1
