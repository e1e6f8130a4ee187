"""Recurrent networks on the GPU (genlab/engines/cuda/recurrent.py) against the serial engine's
backpropagation through time, with every executor."""


import numpy as np
import pytest
from conftest import tangle

from genlab import GrowthPolicy, Network, Trainer
from genlab.engines import SerialEngine
from genlab.errors import BackendError, TrainingError
from genlab.optim import SGD, Adam

pytestmark = pytest.mark.gpu

EXECUTORS = ["level", "level_push", "level_batch", "dataflow", "dataflow_batch", "dataflow_rows", "cluster"]


def tangled(seed=1):
    net = Network.elman(6, [12, 9], 4, seed=seed)
    return tangle(net, *net.hidden_groups, widths=(5, 3), seed=seed, scale=0.2)


def engines(net, optimizer, executor, dtype="float64"):
    from genlab.engines.cuda.recurrent import RecurrentCudaEngine

    gpu = RecurrentCudaEngine(net, optimizer, executor=executor)
    ref = SerialEngine(net, type(optimizer)(**optimizer.settings()), dtype=dtype)
    return gpu, ref


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("optimizer", [SGD(lr=0.05), Adam(lr=1e-2)])
def test_steps_match_backpropagation_through_time(executor, optimizer):
    net = tangled()
    gpu, ref = engines(net, optimizer, executor)
    rng = np.random.default_rng(2)
    for steps in (7, 7, 3, 7):  # a new sequence length unrolls again
        x = rng.normal(size=(40, steps, 6)).astype(np.float32)
        y = rng.integers(0, 4, 40)
        loss, _ = gpu.step(x, y)
        ref_loss, _ = ref.step(x, y)
        assert loss == pytest.approx(ref_loss, rel=1e-4)
        for g, s in ref.grad_std.items():
            assert gpu.grad_std[g] == pytest.approx(s, rel=1e-3, abs=1e-7), g
    params = gpu.params
    for key, p in ref.params.items():
        np.testing.assert_allclose(params[key], p, rtol=1e-3, atol=1e-5, err_msg=str(key))
    np.testing.assert_allclose(gpu.forward(x), ref.forward(x), rtol=1e-4, atol=1e-4)


def test_a_recurrent_network_trains_and_grows_on_the_gpu_like_serial():
    from genlab import datasets

    data = datasets.load("digits_rows")
    X, y = data.train
    policy = dict(threshold=0.0, every=8, cooldown=4, max_groups=10, mode="alternate")
    runs = {}
    for backend in ("serial", "cuda"):
        trainer = Trainer(Network.elman(8, [8], 10, seed=0), backend=backend, lr=1e-2, seed=0,
                          growth=GrowthPolicy(**policy))
        for step in range(40):
            trainer.step(X[step * 32:(step + 1) * 32], y[step * 32:(step + 1) * 32])
        runs[backend] = trainer
    a, b = runs["serial"].history.events, runs["cuda"].history.events
    assert len(a) >= 4 and [(e["kind"], e["source"], e["new"]) for e in a] == [(e["kind"], e["source"], e["new"]) for e in b]
    assert runs["cuda"].backend == "cuda" and runs["cuda"].net.recurrent
    np.testing.assert_allclose(runs["cuda"].logits(data.X_test[:64]), runs["serial"].logits(data.X_test[:64]),
                               rtol=2e-3, atol=2e-3)


def test_a_step_that_would_overflow_is_refused_whole_on_the_gpu():
    net = tangled(3)
    gpu, ref = engines(net, SGD(lr=3e38, momentum=0.0), "level", dtype="float32")  # float32 overflows alike
    x = np.random.default_rng(4).normal(size=(16, 5, 6)).astype(np.float32) * 1e3
    y = np.arange(16) % 4
    before = gpu.params
    with pytest.raises(TrainingError):
        gpu.step(x, y)
    with pytest.raises(TrainingError):
        ref.step(x, y)
    after = gpu.params
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_a_gpu_checkpoint_of_a_recurrent_run_resumes_on_either_engine(tmp_path):
    net = tangled(5)
    trainer = Trainer(net, backend="cuda", lr=1e-2)
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(32, 6, 6)).astype(np.float32), rng.integers(0, 4, 32)
    for _ in range(3):
        trainer.step(x, y)
    path = trainer.save(tmp_path / "rnn.ckpt")
    for backend in ("cuda", "serial"):
        resumed = Trainer.load(path, backend=backend)
        np.testing.assert_allclose(resumed.logits(x), trainer.logits(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(BackendError, match="every_step"):
        Trainer(tangled(), backend="cuda", every_step=True)


@pytest.mark.parametrize("executor", ["level", "dataflow_rows"])
def test_time_major_and_wavefront_schedules_give_the_same_steps(executor):
    from genlab.engines.cuda.recurrent import RecurrentCudaEngine

    net = Network.elman(6, [16, 16, 16], 4, seed=7)
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(32, 9, 6)).astype(np.float32), rng.integers(0, 4, 32)
    runs = []
    for time_major in (False, True):
        engine = RecurrentCudaEngine(net, Adam(lr=1e-2), executor=executor, time_major=time_major)
        losses = [engine.step(x, y)[0] for _ in range(3)]
        runs.append((losses, engine.params))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-5)
    for key, p in runs[0][1].items():
        np.testing.assert_allclose(runs[1][1][key], p, rtol=1e-4, atol=1e-6)
