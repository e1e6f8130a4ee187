"""Page-locked host buffers that a CUDA engine's uploads pass through. A copy from ordinary
(pageable) host memory is staged by the driver and returns only once it is done; from page-locked
memory it is queued on the stream like a kernel and the host goes on. Each upload of a kind (the
batch's rows, its labels) has its own buffer, grown as needed, and waits before refilling it
until the copy that last read it has finished (an event after each copy)."""

from __future__ import annotations

import numpy as np


class Staging:
    """The engine's page-locked upload buffers, one per name."""

    def __init__(self, drv):
        self.drv = drv
        self._buffers: dict[str, tuple[np.ndarray, object]] = {}  # name: (page-locked bytes, its last copy's event)

    def fill(self, name: str, array: np.ndarray) -> np.ndarray:
        """`array`'s values in the page-locked buffer `name` (a view of its shape and type), once
        the last copy from that buffer has finished; queue the copy from the view, then done()."""
        nbytes = array.nbytes
        held = self._buffers.get(name)
        if held is not None:
            held[1].synchronize()  # the copy that last read this buffer (before it is refilled or freed)
        if held is None or held[0].nbytes < nbytes:
            held = (self.drv.pagelocked_empty(max(nbytes, 2 * (held[0].nbytes if held else 0), 1), np.uint8),
                    self.drv.Event())
            self._buffers[name] = held
        view = held[0][:nbytes].view(array.dtype).reshape(array.shape)
        np.copyto(view, array)
        return view

    def done(self, name: str, stream) -> None:
        """The copy from buffer `name` is queued on `stream`: refill after it."""
        self._buffers[name][1].record(stream)
