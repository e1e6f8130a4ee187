"""The CUDA engine's packed allocations on the host (no GPU): Memory.arena and Memory.upload_all
place every part at an aligned offset, in order, without overlap, and upload_all's one copy holds
each array's bytes where its address says."""

import numpy as np
import pytest

from genlab.engines.cuda.memory import ALIGN, Memory

BASE = 1 << 20


class FakeBuffer(int):
    """What the pool hands out: an address (int() of a PyCUDA allocation)."""


class FakePool:
    def allocate(self, nbytes):
        self.nbytes = nbytes
        return FakeBuffer(BASE)


class FakeDriver:
    class MemoryError(Exception):
        pass

    def memcpy_htod(self, dst, host):
        self.copied = (int(dst), host.copy())


@pytest.fixture
def mem():
    m = Memory.__new__(Memory)
    m.drv, m.stream, m._pool = FakeDriver(), None, FakePool()
    return m


def test_arena_parts_are_aligned_in_order_and_apart(mem):
    sizes = {"a": 4, "b": 1000, "empty": 0, "c": ALIGN, "d": 3 * ALIGN + 4}
    buf, at = mem.arena(sizes, "test")
    assert list(at) == list(sizes) and all(type(v) is int for v in at.values())
    starts = [at[k] - BASE for k in sizes]
    assert all(s % ALIGN == 0 for s in starts) and starts == sorted(starts)
    for (k, s), nxt in zip(zip(sizes, starts), starts[1:] + [mem._pool.nbytes]):
        assert s + sizes[k] <= nxt, k  # no part runs into the next
    assert mem._pool.nbytes < sum(sizes.values()) + len(sizes) * ALIGN


def test_upload_all_puts_each_array_where_its_address_says(mem):
    rng = np.random.default_rng(0)
    arrays = {"ints": rng.integers(-9, 9, 77).astype(np.int32), "doubles": rng.random(5),
              "matrix": rng.integers(0, 5, (4, 3)).astype(np.int32), "none": np.zeros(0, np.int32)}
    buf, at = mem.upload_all(arrays)
    dst, host = mem.drv.copied
    assert dst == BASE
    for name, a in arrays.items():
        off = at[name] - BASE
        assert off % ALIGN == 0
        got = host[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
        np.testing.assert_array_equal(got, a, err_msg=name)
