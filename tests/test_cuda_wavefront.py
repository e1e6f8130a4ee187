"""The wavefront executor of recurrent networks (cuda/wavefront.cu, engines/cuda/wavefront.py)
against backpropagation through time on the serial engine: steps, statistics, ranges, every
step's loss, row blocks of every size, weights staged or read from global memory, sources staged
a step or a chunk at a time, steps released one or two at a time, predictions larger than a pass,
growth; and what it refuses, which the CPU checks too."""

import numpy as np
import pytest
from conftest import recurrent_cases

from genlab import GrowthPolicy, Network, Trainer
from genlab.engines import SerialEngine
from genlab.errors import BackendError
from genlab.optim import SGD, Adam

gpu = pytest.mark.gpu


nets = recurrent_cases  # conftest: a stack, a tangle of delays, a group wider than a block's threads


def engines(net, optimizer, **options):
    from genlab.engines.cuda.recurrent import RecurrentCudaEngine

    gpu_engine = RecurrentCudaEngine(net, optimizer, executor="wavefront", **options)
    ref = SerialEngine(net, type(optimizer)(**optimizer.settings()), dtype="float64")
    return gpu_engine, ref


@gpu
@pytest.mark.parametrize("options", [{}, {"rows": 1}, {"rows": 3}, {"stage": False}, {"rows": 2, "stage": False},
                                     {"chunk": 1}, {"chunk": 3, "release_every": 2}],
                         ids=["auto", "rows1", "rows3", "global-weights", "rows2-global", "step-by-step",
                              "chunks-of-3-released-by-2"])
@pytest.mark.parametrize("name", ["stack", "tangled", "wide"])
@pytest.mark.parametrize("optimizer", [SGD(lr=0.05), Adam(lr=1e-2)], ids=["sgd", "adam"])
def test_steps_match_backpropagation_through_time(name, options, optimizer):
    net = nets()[name]
    engine, ref = engines(net, optimizer, **options)
    assert type(engine).__name__ == "WavefrontCudaEngine"
    rng = np.random.default_rng(2)
    # a new length and batch size in between; at one row a block the tangle's 5 slots x 24 rows fit
    # the 132 blocks an H200 holds at once (x 40 did not: refused)
    for steps, batch in ((7, 24), (7, 24), (3, 17), (7, 24)):
        x = rng.normal(size=(batch, steps, net.n_inputs)).astype(np.float32)
        y = rng.integers(0, net.n_outputs, batch)
        loss, correct = engine.step(x, y)
        ref_loss, ref_correct = ref.step(x, y)
        assert loss == pytest.approx(ref_loss, rel=1e-4) and correct == ref_correct
        for g, s in ref.grad_std.items():
            assert engine.grad_std[g] == pytest.approx(s, rel=1e-3, abs=1e-7), g
    for key, p in ref.params.items():  # (Adam scales each step by 1 / sqrt(v): a float32 gradient near 0
        # moves its parameter by up to ~lr / 10 against the float64 one; 2 of 90 000 in the wide case)
        np.testing.assert_allclose(engine.params[key], p, rtol=1e-3, atol=1e-4, err_msg=str(key))
    np.testing.assert_allclose(engine.forward(x), ref.forward(x), rtol=1e-4, atol=1e-4)


@gpu
def test_gradients_of_one_pass_match_through_time():
    net = nets()["tangled"]
    engine, ref = engines(net, SGD(lr=0.0))
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(33, 6, 6)).astype(np.float32), rng.integers(0, 4, 33)
    engine.forward(x)
    loss = engine.backward(y)
    ref.forward(x)
    assert loss == pytest.approx(ref.backward(y), rel=1e-5)
    grads = engine.grads
    for key, g in ref.grads.items():
        np.testing.assert_allclose(grads[key], g, rtol=1e-4, atol=1e-6, err_msg=str(key))
    for name in ("grad_std", "taylor"):
        for g, v in ref.stats[name].items():
            assert engine.stats[name][g] == pytest.approx(v, rel=1e-3, abs=1e-8), (name, g)


@gpu
def test_every_step_losses_and_logits_match_through_time():
    net = nets()["tangled"]
    runs = {}
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(24, 5, 6)).astype(np.float32), rng.integers(0, 4, (24, 5))
    for backend, executor in (("serial", None), ("cuda", "wavefront")):
        trainer = Trainer(net.copy(), backend=backend, executor=executor, every_step=True, lr=1e-2, seed=0)
        losses = [trainer.step(x, y)["loss"] for _ in range(3)]
        runs[backend] = (losses, trainer.logits(x))
    np.testing.assert_allclose(runs["cuda"][0], runs["serial"][0], rtol=1e-4)
    assert runs["cuda"][1].shape == (24, 5, 4)
    np.testing.assert_allclose(runs["cuda"][1], runs["serial"][1], rtol=1e-3, atol=1e-4)


@gpu
def test_pruning_ranges_match_through_time():
    net = nets()["stack"]
    engine, ref = engines(net, SGD(lr=0.0))
    engine.pruning = ref.pruning = (True, None)
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(30, 6, 5)).astype(np.float32), rng.integers(0, 4, 30)
    engine.step(x, y)
    ref.step(x, y)
    for g in net.hidden_groups:
        np.testing.assert_allclose(engine.stats["h_min"][g], ref.stats["h_min"][g], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(engine.stats["h_max"][g], ref.stats["h_max"][g], rtol=1e-5, atol=1e-6)


@gpu
def test_a_prediction_larger_than_one_pass_runs_in_parts():
    net = nets()["stack"]
    engine, ref = engines(net, SGD(lr=0.0), rows=1)
    most = engine.runner.largest_batch()
    x = np.random.default_rng(6).normal(size=(most + 5, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(engine.forward(x), ref.forward(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(BackendError, match="at most"):
        engine.step(x, np.zeros(len(x), np.int64))


@gpu
def test_a_recurrent_network_grows_on_the_wavefront_like_serial():
    from genlab import datasets

    data = datasets.load("digits_rows")
    X, y = data.train
    policy = dict(threshold=0.0, every=8, cooldown=4, max_groups=10, mode="alternate")
    runs = {}
    for backend, executor in (("serial", None), ("cuda", "wavefront")):
        trainer = Trainer(Network.elman(8, [8], 10, seed=0), backend=backend, executor=executor, lr=1e-2, seed=0,
                          growth=GrowthPolicy(**policy))
        for step in range(40):
            trainer.step(X[step * 32:(step + 1) * 32], y[step * 32:(step + 1) * 32])
        runs[backend] = trainer
    a, b = runs["serial"].history.events, runs["cuda"].history.events
    assert len(a) >= 4 and [(e["kind"], e["source"], e["new"]) for e in a] == [(e["kind"], e["source"], e["new"]) for e in b]
    np.testing.assert_allclose(runs["cuda"].logits(data.X_test[:64]), runs["serial"].logits(data.X_test[:64]),
                               rtol=2e-3, atol=2e-3)


def test_what_the_wavefront_executor_refuses_it_refuses_before_touching_a_gpu():
    from genlab.engines.cuda.recurrent import RecurrentCudaEngine

    net = nets()["stack"]
    with pytest.raises(BackendError, match="fp32"):
        RecurrentCudaEngine(net, SGD(), executor="wavefront", precision="tf32")
    with pytest.raises(BackendError, match="time_major"):
        RecurrentCudaEngine(net, SGD(), executor="wavefront", time_major=True)
    wide = Network.elman(3, [1100], 2)
    with pytest.raises(BackendError, match="wider"):
        RecurrentCudaEngine(wide, SGD(), executor="wavefront")


def test_the_dag_engine_refuses_the_wavefront_executor_by_name():
    from genlab.engines.cuda.executors import executor_class

    with pytest.raises(BackendError, match="recurrent networks"):
        executor_class("wavefront")
    with pytest.raises(BackendError, match="'wavefront'"):
        executor_class("no such executor")
