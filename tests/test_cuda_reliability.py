"""The CUDA engine's side of reliability: the step guard on the device, growth put back whole,
and checkpoints that resume exactly, each against the serial engine or an uninterrupted run."""

import math

import numpy as np
import pytest

from genlab import GrowthPolicy, Network, Trainer
from genlab.engines import SerialEngine
from genlab.engines.cuda.executors import EXECUTORS
from genlab.errors import TrainingError
from genlab.optim import SGD, Adam

pytestmark = pytest.mark.gpu


def case(seed=3, batch=48):
    rng = np.random.default_rng(seed)
    net = Network.random_dag(levels=3, per_level=4, width=(2, 40), fan_in=(1, 3), seed=seed, n_inputs=12, n_outputs=5)
    x = rng.normal(size=(batch, 12)).astype(np.float32)
    y = rng.integers(0, 5, batch)
    return net, x, y


def cuda(net, optimizer, executor):
    from genlab.engines.cuda import CudaEngine

    return CudaEngine(net, optimizer, executor=executor)


def snapshot(engine):
    state = engine.export_state()
    return engine.params, {k: {n: a.copy() for n, a in v.items()} for k, v in state.optimizer.items()}


def assert_same(a, b):
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], dict):
                for n in x[k]:
                    np.testing.assert_array_equal(x[k][n], y[k][n], err_msg=f"{k} {n}")
            else:
                np.testing.assert_array_equal(x[k], y[k], err_msg=str(k))


@pytest.mark.parametrize("executor", list(EXECUTORS))
@pytest.mark.parametrize("optimizer", [SGD(lr=3e38, momentum=0.0), Adam(lr=3e38)])
def test_huge_learning_rates_fail_the_same_step_as_serial_and_change_nothing(executor, optimizer):
    """Finite loss and gradients, an update beyond float32 (SGD), or an update that stays finite
    and a next forward that overflows (Adam): both engines refuse the same step, whole."""
    net, x, y = case()
    gpu, ref = cuda(net, optimizer, executor), SerialEngine(net, type(optimizer)(**optimizer.settings()))
    failed, said = {}, {}
    for name, engine in (("cuda", gpu), ("serial", ref)):
        for step in range(3):
            before = snapshot(engine)
            try:
                engine.step(x * 1e3, y)
            except TrainingError as e:
                failed[name] = (step, "non-finite" in str(e))
                said[name] = str(e)
                assert_same(snapshot(engine), before)
                break
    assert failed["cuda"] == failed["serial"], failed
    if isinstance(optimizer, SGD):
        assert failed["cuda"] == (0, True)  # the update itself would have overflowed
        assert said["cuda"] == said["serial"] and "into group" in said["cuda"]  # the same block named


@pytest.mark.parametrize("executor", list(EXECUTORS))
def test_careful_steps_that_stay_finite_match_serial(executor):
    """lr 1e30: the guard cannot prove the step finite, so it runs with a backup; it stays
    finite, is applied, and equals the serial engine's step."""
    net, x, y = case(5)
    gpu, ref = cuda(net, SGD(lr=1e30), executor), SerialEngine(net, SGD(lr=1e30))
    assert not gpu.guard.safe(gpu.optimizer)
    gpu.step(x, y)
    ref.step(x, y)
    params = gpu.params
    for k, p in ref.params.items():
        np.testing.assert_allclose(params[k], p, rtol=2e-4, atol=1e-6 * max(1.0, float(np.abs(p).max())))
    assert gpu.guard.param == pytest.approx(max(float(np.abs(p).max()) for p in ref.params.values()), rel=1e-4)
    with pytest.raises(TrainingError):  # the next forward overflows on both
        gpu.step(x, y)
    with pytest.raises(TrainingError):
        ref.step(x, y)


@pytest.mark.parametrize("executor", ["level", "dataflow_rows"])
def test_a_diverged_gradient_is_refused_like_serial(executor):
    net, x, y = case(7)
    gpu, ref = cuda(net, Adam(), executor), SerialEngine(net, Adam())
    before = snapshot(gpu)
    outcomes = []
    for engine in (gpu, ref):
        try:
            engine.step(x * 1e19, y)
            outcomes.append("applied")
        except TrainingError:
            outcomes.append("refused")
    assert outcomes == ["refused", "refused"]
    assert_same(snapshot(gpu), before)


def test_growth_that_would_not_be_finite_is_put_back(monkeypatch):
    from genlab.engines.cuda import state

    net, x, y = case(9)
    trainer = Trainer(net, backend="cuda", growth=GrowthPolicy(threshold=0.0, every=None, cooldown=0, max_groups=40))
    for _ in range(3):
        trainer.step(x, y)
    engine = trainer.engine
    engine.guard.param = math.inf  # the guard cannot vouch for the growth: a backup is taken
    layout, before = engine.layout, snapshot(engine)
    real = state.bounds
    monkeypatch.setattr(state, "bounds", lambda e, *a: (math.inf, 0.0))
    with pytest.raises(TrainingError, match="growth"):
        trainer.grow()
    monkeypatch.setattr(state, "bounds", real)
    assert engine.layout is layout and set(trainer.net.groups) == set(layout.groups)
    assert_same(snapshot(engine), before)
    trainer.step(x, y)
    assert trainer.grow()  # and growth works again, with the backup path taken
    ref = Trainer(trainer.net.copy(), backend="serial")
    np.testing.assert_allclose(trainer.logits(x), ref.logits(x), rtol=1e-4, atol=1e-4)


def _digits_run(executor, steps, save_at=None, tmp_path=None, resume_backend="cuda"):
    from genlab import datasets

    data = datasets.load("digits")
    X, y = data.train
    policy = GrowthPolicy(threshold=0.0, every=10, cooldown=5, max_groups=20, prune=True, mode="alternate")
    trainer = Trainer(Network.mlp([64, 16, 10], seed=1), backend="cuda", executor=executor, seed=2, growth=policy)
    for step in range(steps):
        if step == save_at:
            path = trainer.save(tmp_path / "run.ckpt")
            trainer = Trainer.load(path, backend=resume_backend)
        i = (step * 32) % (len(X) - 32)
        trainer.step(X[i:i + 32], y[i:i + 32])
    return trainer


@pytest.mark.parametrize("executor", ["level", "dataflow_rows"])
def test_a_resumed_cuda_run_equals_an_uninterrupted_one(tmp_path, executor):
    whole = _digits_run(executor, 60)
    resumed = _digits_run(executor, 60, save_at=25, tmp_path=tmp_path)
    assert whole.history.events and resumed.history.to_dict()["events"] == whole.history.to_dict()["events"]
    assert resumed.net.edges == whole.net.edges
    for k, w in whole.net.weights.items():
        np.testing.assert_array_equal(resumed.net.weights[k], w, err_msg=str(k))
    a, b = whole.engine.export_state(), resumed.engine.export_state()
    assert a.ema == b.ema and a.taylor == b.taylor
    for k in a.optimizer:
        for n in a.optimizer[k]:
            np.testing.assert_array_equal(a.optimizer[k][n], b.optimizer[k][n])


def test_a_cuda_checkpoint_resumes_on_the_serial_engine(tmp_path):
    trainer = _digits_run("level", 30)
    path = trainer.save(tmp_path / "gpu.ckpt")
    serial = Trainer.load(path, backend="serial")
    x = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    np.testing.assert_allclose(serial.logits(x), trainer.logits(x), rtol=1e-4, atol=1e-4)
    a, b = trainer.engine.export_state(), serial.engine.export_state()
    assert a.ema.keys() == b.ema.keys() and all(math.isclose(a.ema[g], b.ema[g]) for g in a.ema)
    for k in b.optimizer:
        for n in b.optimizer[k]:
            np.testing.assert_allclose(b.optimizer[k][n], a.optimizer[k][n], rtol=1e-6, atol=0)


@pytest.mark.parametrize("executor", ["level", "dataflow_rows", "auto"])
def test_a_cuda_engine_replaced_by_reset_gives_its_memory_back_at_once(executor):
    """The executor holds its engine weakly: a reset frees the old engine (its buffers, pool and
    graphs) by reference counting, not at the next cyclic collection (the soak's leak: about 2 MB
    of device memory per reset)."""
    import gc
    import weakref

    from genlab.engines.cuda.graph import Graph

    net = Network.mlp([16, 8, 4], seed=0)
    x = np.random.default_rng(0).normal(size=(32, 16)).astype(np.float32)
    trainer = Trainer(net, backend="cuda", seed=0, executor=executor,
                      growth=GrowthPolicy(every=3, cooldown=0, max_groups=8, mode="alternate"))
    for _ in range(10):
        trainer.step(x, np.arange(32) % 4)
    old, graphs = weakref.ref(trainer.engine), Graph.alive
    gc.disable()
    try:
        trainer.reset()
        assert old() is None and Graph.alive < graphs  # its graphs destroyed with it
        trainer.step(x, np.arange(32) % 4)
        assert Graph.alive <= graphs
    finally:
        gc.enable()
