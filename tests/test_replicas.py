"""A data-parallel step's sums in one process: over Mirror replicas (genlab.distributed.mirror,
copies that all hold this process's rows) a replica's step equals the plain step on its rows
repeated once per copy. This checks each engine's replica path (its scales, its packed sums, its
gradient buckets overlapped with the backward) without other processes; tests/test_distributed.py
runs it over real processes."""

import numpy as np
import pytest

from genlab import Network
from genlab.distributed.mirror import Mirror
from genlab.engines import SerialEngine
from genlab.optim import SGD, Adam


def batch(net, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, net.n_inputs)).astype(np.float32), rng.integers(0, net.n_outputs, n)


def nets():
    return [Network.random_dag(3, 3, width=(3, 9), fan_in=(1, 3), seed=4, n_inputs=10, n_outputs=4),
            Network.mlp([10, 12, 6, 4], seed=2)]


def track(engine):
    """Growth scores and activation ranges tracked, so that every statistic is summed."""
    engine.growth_criterion = ("grad_std", 0.5)
    engine.pruning = (True, 0.5)
    return engine


@pytest.mark.parametrize("net", nets(), ids=["dag", "mlp"])
@pytest.mark.parametrize("copies", [2, 3])
def test_a_serial_replica_step_over_mirrors_is_the_step_on_the_repeated_batch(net, copies):
    x, y = batch(net, 12)
    replica = track(SerialEngine(net, Adam(lr=0.01), dtype="float64"))
    whole = track(SerialEngine(net, Adam(lr=0.01), dtype="float64"))
    for _ in range(3):
        loss, correct = replica.step(x, y, Mirror(len(y), copies, bucket_bytes=64))
        ref_loss, ref_correct = whole.step(np.concatenate([x] * copies), np.concatenate([y] * copies))
        assert loss == pytest.approx(ref_loss, rel=1e-12) and correct == ref_correct
    for name in ("grad_std", "taylor", "weight_grad_norm"):
        for g, v in whole.stats[name].items():
            assert replica.stats[name][g] == pytest.approx(v, rel=1e-9, abs=1e-15), (name, g)
    for key, p in whole.params.items():
        np.testing.assert_allclose(replica.params[key], p, rtol=1e-12, atol=1e-14, err_msg=str(key))


@pytest.mark.parametrize("net", nets(), ids=["dag", "mlp"])
def test_gradient_buckets_start_as_groups_finish_and_change_no_bit(net):
    """One bucket a group (a tiny bucket size) and one bucket for the step give the same bits;
    the sums start in the backward's order, the step's packed doubles last."""
    x, y = batch(net, 16, seed=1)
    finer, whole = SerialEngine(net, SGD(lr=0.1)), SerialEngine(net, SGD(lr=0.1))
    for _ in range(2):
        fine, one = Mirror(len(y), 2, bucket_bytes=1), Mirror(len(y), 2, bucket_bytes=1 << 30)
        assert finer.step(x, y, fine) == whole.step(x, y, one)
    for key, p in whole.params.items():
        assert np.array_equal(finer.params[key], p), key
    hidden = [g for g in finer.order]  # every group but the input, the output group's first
    sizes = [n for what, n in fine.calls if what == "sum"]
    assert len(sizes) == len(hidden) + 1 and sizes[-1] == 3 * len(hidden) + 2
    first = hidden[-1]  # the backward's first group: the last in topological order
    assert sizes[0] == finer.params[("b", first)].size + sum(finer.params[("W", s, first)].size
                                                           for s in finer.inputs[first])
    assert [n for what, n in one.calls if what == "sum"] == [sum(p.size for p in whole.params.values()),
                                                             3 * len(hidden) + 2]


def test_a_recurrent_replica_step_sums_its_gradients_in_one_bucket():
    net = Network.elman(6, [8], 3, seed=1)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(10, 5, 6)).astype(np.float32), rng.integers(0, 3, 10)
    replica, whole = SerialEngine(net, SGD(lr=0.1), dtype="float64"), SerialEngine(net, SGD(lr=0.1), dtype="float64")
    mirror = Mirror(len(y), 2, bucket_bytes=1)
    loss, _ = replica.step(x, y, mirror)
    assert loss == pytest.approx(whole.step(np.concatenate([x, x]), np.concatenate([y, y]))[0], rel=1e-12)
    assert len([n for what, n in mirror.calls if what == "sum"]) == 2
    for key, p in whole.params.items():
        np.testing.assert_allclose(replica.params[key], p, rtol=1e-12, atol=1e-14, err_msg=str(key))


def test_a_mirror_refuses_no_rows():
    with pytest.raises(ValueError, match="at least one copy"):
        Mirror(0, 2)


EXECUTORS = ["level", "level_push", "dataflow", "dataflow_rows"]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_cuda_replica_step_over_mirrors_is_the_step_on_the_repeated_batch(cpu_gpu, executor):
    """The CUDA engine's replica path on the stand-in GPU: replica_pack's shares, the two sums,
    replica_unpack and the norms of the summed gradients, against the float64 serial engine on
    the repeated batch; dataflow_rows applies each step's update at the next step's start."""
    from genlab.engines.cuda import CudaEngine

    net = nets()[0]
    x, y = batch(net, 12, seed=3)
    gpu = track(CudaEngine(net, SGD(lr=0.2), executor=executor))  # (Adam would hide a gradient's scale)
    ref = track(SerialEngine(net, SGD(lr=0.2), dtype="float64"))
    for _ in range(3):
        mirror = Mirror(len(y), 2)
        loss, correct = gpu.step(x, y, mirror)
        ref_loss, ref_correct = ref.step(np.concatenate([x, x]), np.concatenate([y, y]))
        assert loss == pytest.approx(ref_loss, rel=1e-5) and correct == ref_correct
    assert [what for what, _ in mirror.calls] == ["sum", "sum", "min", "min", "max", "max"]
    gpu.flush()
    for g, s in ref.grad_std.items():
        assert gpu.grad_std[g] == pytest.approx(s, rel=1e-4, abs=1e-9), g
    smoothed = gpu.smoothed_scores()
    assert smoothed.keys() == ref.smoothed_scores().keys()
    for g, s in ref.smoothed_scores().items():
        assert smoothed[g] == pytest.approx(s, rel=1e-4), g
    for key, p in ref.params.items():
        np.testing.assert_allclose(gpu.params[key], p, rtol=1e-4, atol=1e-6, err_msg=str(key))


@pytest.mark.parametrize("executor", ["level", "dataflow_rows"])
def test_one_mirror_copy_is_the_plain_step_on_the_cuda_engine(cpu_gpu, executor):
    """One copy: the replica path without any sum (how benchmarks/replica_overhead.py times it on
    a GPU, whose memory the host cannot touch) trains as the plain step does."""
    one_copy_is_the_plain_step(executor)


@pytest.mark.gpu
@pytest.mark.parametrize("executor", ["level", "level_push", "dataflow", "dataflow_rows"])
def test_one_mirror_copy_is_the_plain_step_on_the_gpu(executor):
    one_copy_is_the_plain_step(executor)


def one_copy_is_the_plain_step(executor):
    from genlab.engines.cuda import CudaEngine

    net = nets()[1]
    x, y = batch(net, 10, seed=5)
    replica, plain = CudaEngine(net, SGD(lr=0.2), executor=executor), CudaEngine(net, SGD(lr=0.2), executor=executor)
    for _ in range(3):
        assert replica.step(x, y, Mirror(len(y), 1)) == plain.step(x, y)
    for key, p in plain.params.items():
        np.testing.assert_allclose(replica.params[key], p, rtol=1e-6, atol=1e-7, err_msg=str(key))
