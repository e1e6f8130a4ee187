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
            "cuGraphExecUpdate_v2": [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p],
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
        self._stream = ctypes.c_void_p(stream.handle)
        self._graph = _capture(self._stream, enqueue)
        self._exec = ctypes.c_void_p()
        _check(_cuda().cuGraphInstantiateWithFlags(ctypes.byref(self._exec), self._graph, 0), "cuGraphInstantiate")
        Graph.alive += 1

    def recapture(self, enqueue) -> bool:
        """Capture enqueue() anew into this graph: the executable is updated in place
        (cuGraphExecUpdate: the same kernels in the same order, other grids and arguments, as
        after growth without a new level) or, when the work changed shape, instantiated again.
        Whether it was updated in place."""
        lib = _cuda()
        graph = _capture(self._stream, enqueue)
        info = ctypes.create_string_buffer(32)  # CUgraphExecUpdateResultInfo: result, two nodes
        updated = lib.cuGraphExecUpdate_v2(self._exec, graph, info) == 0
        if not updated:
            fresh = ctypes.c_void_p()
            result = lib.cuGraphInstantiateWithFlags(ctypes.byref(fresh), graph, 0)
            if result != 0:
                lib.cuGraphDestroy(graph)
                _check(result, "cuGraphInstantiate")
            lib.cuGraphExecDestroy(self._exec)
            self._exec = fresh
        lib.cuGraphDestroy(self._graph)
        self._graph = graph
        return updated

    def launch(self) -> None:
        _check(_cuda().cuGraphLaunch(self._exec, self._stream), "cuGraphLaunch")

    def __del__(self):
        if _lib is not None and getattr(self, "_exec", None):
            _lib.cuGraphExecDestroy(self._exec)
            _lib.cuGraphDestroy(self._graph)
            Graph.alive -= 1


class Graphs:
    """An engine's graphs by key (what, beside the batch, makes a captured step differ). When the
    buffers they hold are replaced (growth, a larger batch), retire() keeps them aside: the next
    use of a key captures its work again into the retired graph, whose executable is updated in
    place rather than instantiated anew (those retired before and not used are dropped)."""

    def __init__(self, stream):
        self._stream, self._live, self._retired = stream, {}, {}

    def get(self, key, enqueue) -> Graph:
        graph = self._live.get(key)
        if graph is None:
            self._stream.synchronize()
            graph = self._retired.pop(key, None)
            if graph is None:
                graph = Graph(self._stream, enqueue)
            else:
                graph.recapture(enqueue)
            self._live[key] = graph
        return graph

    def retire(self) -> None:
        self._retired, self._live = self._live, {}


def _capture(stream: ctypes.c_void_p, enqueue) -> ctypes.c_void_p:
    """The graph of what enqueue() queues on `stream`."""
    lib = _cuda()
    _check(lib.cuStreamBeginCapture_v2(stream, CAPTURE_MODE_RELAXED), "cuStreamBeginCapture")
    graph = ctypes.c_void_p()
    try:
        enqueue()
    finally:
        ended = lib.cuStreamEndCapture(stream, ctypes.byref(graph))
    _check(ended, "cuStreamEndCapture")
    return graph
