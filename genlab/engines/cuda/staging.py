"""A CUDA engine's rows between host and device, and the page-locked host buffers its uploads
pass through. A copy from ordinary (pageable) host memory is staged by the driver and returns
only once it is done; from page-locked memory it is queued on the stream like a kernel and the
host goes on. Each upload of a kind (the batch's rows, its labels) has its own buffer, grown as
needed, and waits before refilling it until the copy that last read it has finished (an event
after each copy)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .records import addr

if TYPE_CHECKING:
    from .engine import CudaEngine


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


def rows(e: "CudaEngine", slot: int, batch: int, host: np.ndarray, to_device: bool = True) -> None:
    """Copy `batch` rows of a group's activations from `host` to the device, or back into it.
    Batch-major rows are strided: a 2-D copy. An upload goes through the engine's page-locked
    buffer and is queued on its stream; a read back may still be under way when this returns (a
    1-D one is queued): synchronise the stream before reading `host`."""
    L, drv, stream = e.layout, e.drv, e.stream
    width, device = int(L.width[slot]), addr(e.dev.rows.act, e.block(slot))
    if to_device:
        host = e.uploads.fill("rows", host)  # page-locked: the copy is queued, the host goes on
    if not e.ld:
        (drv.memcpy_htod_async(device, host, stream) if to_device else drv.memcpy_dtoh_async(host, device, stream))
    else:
        copy = drv.Memcpy2D()
        (copy.set_src_host if to_device else copy.set_dst_host)(host)
        (copy.set_dst_device if to_device else copy.set_src_device)(device)
        copy.width_in_bytes, copy.height = 4 * width, batch
        copy.src_pitch, copy.dst_pitch = (4 * width, 4 * L.n_cols) if to_device else (4 * L.n_cols, 4 * width)
        copy(stream) if to_device else copy(True)  # on the stream: other engines' streams go on meanwhile
    if to_device:
        e.uploads.done("rows", stream)
