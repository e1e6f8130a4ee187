"""The stand-in GPU (tests/fake_cuda.py) itself: it must refuse what a GPU would, or the tests
that use it prove nothing."""

import numpy as np
import pytest


def test_a_launch_with_the_wrong_arguments_or_a_dead_pointer_fails(fake_gpu):
    from genlab.engines.cuda import runtime

    launch = runtime.Launcher(None)
    n = 10
    drv = __import__("pycuda.driver", fromlist=["driver"])
    params, grads = drv.mem_alloc(4 * n), drv.mem_alloc(4 * n)
    scalars = drv.mem_alloc(48)
    args = [np.int32(0), params, grads, np.intp(0), np.intp(0), np.intp(0), np.int32(n), np.float32(0.1),
            np.float32(0.9), np.float32(0.0), np.float32(0.0), scalars]
    launch("optimizer_update", (1, 1), *args)  # as the level executor launches it
    assert fake_gpu.launches[-1][0] == "optimizer_update"
    with pytest.raises(AssertionError, match="takes 12 arguments"):
        launch("optimizer_update", (1, 1), *args[:-1])
    with pytest.raises(AssertionError, match="not int32"):
        launch("optimizer_update", (1, 1), *[np.int64(0)] + args[1:])
    with pytest.raises(AssertionError, match="in no buffer"):
        launch("optimizer_update", (1, 1), *args[:1] + [12345] + args[2:])
    with pytest.raises(AssertionError, match="no kernel"):
        launch("no_such_kernel", (1, 1))


def test_copies_round_trip_and_overruns_fail(fake_gpu):
    drv = __import__("pycuda.driver", fromlist=["driver"])
    buf = drv.to_device(np.arange(6, dtype=np.float32))
    out = np.empty(4, np.float32)
    drv.memcpy_dtoh(out, int(buf) + 8)
    np.testing.assert_array_equal(out, [2, 3, 4, 5])
    with pytest.raises(AssertionError, match="overrun"):
        drv.memcpy_dtoh(np.empty(5, np.float32), int(buf) + 8)
    drv.memset_d32(buf, 0x3F800000, 2)
    drv.memcpy_dtoh(out, buf)
    np.testing.assert_array_equal(out, [1, 1, 2, 3])


def test_a_harness_variant_builds_with_the_loaders_precision_argument(fake_gpu, monkeypatch):
    """benchmarks/kernels/harness.py's use_variant swaps the source of one file; the loader passes
    the precision it builds for (the numbered variants of rows.cu and cluster.cu broke when it
    started to)."""
    import sys
    from pathlib import Path

    from genlab.engines.cuda import runtime
    from genlab.precision import Precision

    monkeypatch.setattr(runtime, "source", runtime.source)  # undone after the test
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks" / "kernels"))
    monkeypatch.delitem(sys.modules, "harness", raising=False)
    import harness

    harness.use_variant("rows.cu", "rows_step", {"RQ": 2}, [])
    for precision in (Precision.FP32, Precision.TF32):
        assert runtime.source(["rows.cu"], precision).startswith("#define RQ 2\n")
    assert not runtime.source(["optim.cu"], Precision.FP32).startswith("#define RQ")
