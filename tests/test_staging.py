"""The CUDA engine's page-locked upload buffers (genlab/engines/cuda/staging.py): a buffer is
refilled or replaced only after the copy that last read it has finished, grows to what is
asked, and hands back the values with their type and shape."""

import numpy as np

from genlab.engines.cuda.staging import Staging


class Driver:
    """What Staging asks of PyCUDA's driver, with a log of it."""

    def __init__(self):
        self.log = []

    def pagelocked_empty(self, nbytes, dtype):
        self.log.append(("alloc", nbytes))
        return np.full(nbytes, 0xAB, dtype)

    def Event(self):
        log = self.log

        class Event:
            def record(self, stream):
                log.append(("record", stream))

            def synchronize(self):
                log.append(("wait",))

        return Event()


def test_a_buffer_is_refilled_only_after_its_last_copy():
    drv = Driver()
    staging = Staging(drv)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    view = staging.fill("rows", x)
    assert view.dtype == np.float32 and view.shape == (3, 4) and np.array_equal(view, x)
    staging.done("rows", "stream")
    y = np.arange(6, dtype=np.int32)
    labels = staging.fill("labels", y)  # another name: its own buffer, nothing to wait for
    assert np.array_equal(labels, y) and labels.dtype == np.int32
    assert drv.log == [("alloc", 48), ("record", "stream"), ("alloc", 24)]
    drv.log.clear()
    again = staging.fill("rows", -x[:2])  # smaller: the same buffer, after the copy that read it
    assert drv.log == [("wait",)] and np.array_equal(again, -x[:2])
    assert np.shares_memory(again, view)


def test_a_larger_batch_gets_a_larger_buffer_after_the_old_ones_copy():
    drv = Driver()
    staging = Staging(drv)
    staging.fill("rows", np.ones(10, np.float32))
    staging.done("rows", 7)
    drv.log.clear()
    big = staging.fill("rows", np.full(100, 2.0, np.float32))
    assert drv.log == [("wait",), ("alloc", 400)]  # waited before the old buffer could be freed
    assert np.array_equal(big, np.full(100, 2.0, np.float32))
    drv.log.clear()
    staging.fill("rows", np.ones(30, np.float32))
    assert drv.log == [("wait",)]  # no new buffer for a smaller batch
