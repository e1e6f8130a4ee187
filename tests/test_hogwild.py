"""Hogwild! (genlab.asynchronous): lock-free workers on shared parameters, on the serial engine's
processes and the CUDA engine's streams."""

import numpy as np
import pytest

import genlab
from genlab.asynchronous.hogwild import deal
from genlab.errors import ArgumentError, ArgumentTypeError, TrainingError

from conftest import assert_unchanged, snapshot


@pytest.fixture(scope="module")
def digits():
    return genlab.datasets.load("digits")


def _trainers(data, backend, workers, seed=3, **options):
    net = genlab.Network.mlp([data.n_features, 24, 16, data.n_classes], seed=1)
    sync = genlab.Trainer(net.copy(), backend=backend, seed=seed, **options)
    hog = genlab.Trainer(net.copy(), backend=backend, seed=seed, parallel=genlab.Hogwild(workers), **options)
    return sync, hog


def _same_run(a, b):
    na, nb = a.net, b.net
    assert na.topology() == nb.topology()
    for k in na.weights:
        np.testing.assert_array_equal(na.weights[k], nb.weights[k])
    for k in na.biases:
        np.testing.assert_array_equal(na.biases[k], nb.biases[k])
    assert a.history.epochs == b.history.epochs
    assert [(s["loss"], s["accuracy"]) for s in a.history.steps] == [(s["loss"], s["accuracy"]) for s in b.history.steps]
    assert a.history.grad_std == b.history.grad_std


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_one_worker_takes_the_synchronous_steps_bit_for_bit_through_growth(digits, optimizer):
    growth = genlab.GrowthPolicy(every=15, threshold=0.0, max_groups=12)
    sync, hog = _trainers(digits, "serial", 1, optimizer=optimizer, growth=growth)
    for t in (sync, hog):
        t.fit(digits.X_train, digits.y_train, epochs=2, progress=False)
        t.fit(digits.X_train, digits.y_train, epochs=1, progress=False)  # a second fit continues the state
    assert len(sync.history.events) > 0  # it grew, and identically
    _same_run(sync, hog)
    assert {s["staleness"] for s in hog.history.steps} == {0} and {s["worker"] for s in hog.history.steps} == {0}
    # afterwards the trainer's own steps continue from the same optimizer state
    x, y = digits.X_train[:32], digits.y_train[:32]
    assert sync.step(x, y) == hog.step(x, y)


def test_one_worker_computes_in_the_trainers_precision(digits):
    """The worker process's engine rounds as the trainer's does: bf16 steps bit for bit."""
    sync, hog = _trainers(digits, "serial", 1, optimizer="sgd", precision="bf16")
    plain = genlab.Trainer(sync.net.copy(), backend="serial", seed=3, optimizer="sgd")
    for t in (sync, hog, plain):
        t.fit(digits.X_train[:320], digits.y_train[:320], epochs=1, progress=False)
    _same_run(sync, hog)
    assert not np.array_equal(plain.net.weights[(0, 2)], hog.net.weights[(0, 2)])


def test_workers_share_the_batches_and_learn_digits(digits):
    sync, hog = _trainers(digits, "serial", 3, optimizer="sgd", lr=0.05)
    sync.fit(digits.X_train, digits.y_train, epochs=6, progress=False)
    hog.fit(digits.X_train, digits.y_train, epochs=6, progress=False)
    steps = hog.history.steps
    per_epoch = -(-len(digits.y_train) // hog.batch_size)
    assert len(steps) == 6 * per_epoch == hog.step_count  # every batch taken once
    assert sorted({s["worker"] for s in steps}) == [0, 1, 2]
    assert all(0 <= s["staleness"] <= len(steps) for s in steps)
    acc_sync = sync.evaluate(digits.X_test, digits.y_test)["accuracy"]
    acc_hog = hog.evaluate(digits.X_test, digits.y_test)["accuracy"]
    assert acc_sync > 0.9 and acc_hog > acc_sync - 0.05, (acc_sync, acc_hog)


def test_growth_pauses_the_workers_and_they_go_on_with_the_grown_network(digits):
    growth = genlab.GrowthPolicy(every=10, threshold=0.0, max_groups=10)
    _, hog = _trainers(digits, "serial", 2, growth=growth)
    before = len(hog.net.groups)
    hog.fit(digits.X_train, digits.y_train, epochs=2, progress=False)
    net = hog.net
    net.validate()
    assert len(net.groups) > before and hog.history.events
    assert all(np.isfinite(w).all() for w in net.weights.values())
    assert hog.evaluate(digits.X_test, digits.y_test)["accuracy"] > 0.3


def test_a_failed_worker_stops_the_others_and_undoes_the_run(digits):
    _, hog = _trainers(digits, "serial", 2, optimizer="sgd", lr=1e30, momentum=0.0)
    before = snapshot(hog.net)
    with pytest.raises(TrainingError, match="Hogwild worker"):
        hog.fit(digits.X_train, digits.y_train, epochs=1, progress=False)
    assert_unchanged(hog.net, before)
    assert hog.step_count == 0 and hog.history.steps == []


def test_a_dead_worker_is_an_error_not_a_hang(digits):
    _, hog = _trainers(digits, "serial", 2)
    team = hog.parallel.team(hog, digits.X_train, digits.y_train)
    try:
        team.processes[1].kill()
        team.processes[1].join()
        with pytest.raises(TrainingError, match="genlab-hogwild-1"):
            list(team.run(deal(hog.batches(len(digits.y_train)), 2)))
    finally:
        team.close()
    assert not any(p.is_alive() for p in team.processes)


def test_bad_hogwild_settings_are_refused(digits):
    net = genlab.Network.mlp([4, 3])
    with pytest.raises(ArgumentError):
        genlab.Hogwild(0)
    with pytest.raises(ArgumentError):
        genlab.Hogwild(65)
    with pytest.raises(ArgumentTypeError):
        genlab.Hogwild(2.0)
    with pytest.raises(ArgumentTypeError, match="genlab.Hogwild"):
        genlab.Trainer(net, backend="serial", parallel="hogwild")
    with pytest.raises(ArgumentError, match="distributed"):
        genlab.Trainer(net, backend="serial", parallel=genlab.Hogwild(2), distributed="data",
                       world=object())


def test_dealing_gives_every_batch_to_one_worker_in_turn():
    batches = [np.array([i]) for i in range(7)]
    plan = deal(batches, 3)
    assert [[int(b[0]) for b in p] for p in plan] == [[0, 3, 6], [1, 4], [2, 5]]


@pytest.mark.gpu
@pytest.mark.parametrize("executor", ["level", "dataflow_rows"])
def test_cuda_one_worker_takes_the_synchronous_steps_bit_for_bit(digits, executor):
    growth = genlab.GrowthPolicy(every=15, threshold=0.0, max_groups=12)
    sync, hog = _trainers(digits, "cuda", 1, executor=executor, growth=growth)
    for t in (sync, hog):
        t.fit(digits.X_train, digits.y_train, epochs=2, progress=False)
    assert len(sync.history.events) > 0
    _same_run(sync, hog)


@pytest.mark.gpu
@pytest.mark.parametrize("executor", ["level_batch", "dataflow_rows"])
def test_cuda_streams_share_the_parameters_and_learn_digits(digits, executor):
    sync, hog = _trainers(digits, "cuda", 4, optimizer="sgd", lr=0.05, executor=executor)
    sync.fit(digits.X_train, digits.y_train, epochs=6, progress=False)
    hog.fit(digits.X_train, digits.y_train, epochs=6, progress=False)
    steps = hog.history.steps
    assert sorted({s["worker"] for s in steps}) == [0, 1, 2, 3] and max(s["staleness"] for s in steps) == 3
    acc_sync = sync.evaluate(digits.X_test, digits.y_test)["accuracy"]
    acc_hog = hog.evaluate(digits.X_test, digits.y_test)["accuracy"]
    assert acc_hog > acc_sync - 0.05, (acc_sync, acc_hog)
    # the shared parameters are the trainer's: the serial engine computes the same logits from them
    serial = genlab.Trainer(hog.net.copy(), backend="serial")
    np.testing.assert_allclose(hog.logits(digits.X_test), serial.logits(digits.X_test), rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("executor", ["level_batch", "dataflow_rows"])
def test_cuda_growth_pauses_the_streams_and_they_go_on_with_the_grown_network(digits, executor):
    growth = genlab.GrowthPolicy(every=20, threshold=0.0, max_groups=10)
    _, hog = _trainers(digits, "cuda", 4, optimizer="sgd", lr=0.05, executor=executor, growth=growth)
    hog.fit(digits.X_train, digits.y_train, epochs=4, progress=False)
    assert hog.history.events and len(hog.net.groups) > 4
    assert hog.evaluate(digits.X_test, digits.y_test)["accuracy"] > 0.7
    serial = genlab.Trainer(hog.net.copy(), backend="serial")
    np.testing.assert_allclose(hog.logits(digits.X_test), serial.logits(digits.X_test), rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_cuda_a_failed_worker_undoes_the_run(digits):
    _, hog = _trainers(digits, "cuda", 3, optimizer="sgd", lr=1e30, momentum=0.0, executor="level")
    before = snapshot(hog.net)
    with pytest.raises(TrainingError, match="Hogwild worker"):
        hog.fit(digits.X_train, digits.y_train, epochs=1, progress=False)
    assert_unchanged(hog.net, before)
    assert hog.step_count == 0


def test_workers_fork_from_a_server_in_jupyter_and_fork_in_a_script(monkeypatch):
    import multiprocessing as mp
    import sys
    import types

    from genlab.asynchronous.processes import start_method

    if "forkserver" not in mp.get_all_start_methods():
        pytest.skip("no fork server on this system")
    kernel = types.ModuleType("__main__")  # Jupyter's main module has no file
    monkeypatch.setitem(sys.modules, "__main__", kernel)
    assert start_method() == "forkserver"
    kernel.__file__ = "/home/student/train.py"  # a script's would be run again by each worker
    assert start_method() == "fork"


@pytest.mark.parametrize("workers", [1, 2])
def test_cuda_workers_run_the_executor_auto_chooses_for_the_trainer(cpu_gpu, digits, monkeypatch, tmp_path, workers):
    """executor="auto": the team consults the trainer's chooser as a synchronous step does (one
    worker: before every step, so the run is the synchronous trainer's bit for bit), instead of
    keeping whichever executor the engine held before its first step."""
    from genlab.engines.cuda import choice

    monkeypatch.setenv("GENLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(choice, "_CACHE", {})
    monkeypatch.setattr(choice, "trial", lambda e, x, y, names: {n: 1.0 if n == "level_push" else 2.0 for n in names})
    small = genlab.datasets.Dataset("digits", digits.X_train[:96], digits.y_train[:96], digits.X_test, digits.y_test)
    sync, hog = _trainers(small, "cuda", workers, optimizer="sgd", lr=0.05)
    seen = []
    launch = type(hog.engine).launch_step
    monkeypatch.setattr(type(hog.engine), "launch_step", lambda e, batch: (seen.append(e.executor.name), launch(e, batch)))
    for t in (sync, hog):
        t.fit(small.X_train, small.y_train, epochs=1, progress=False)
    assert sync.engine.executor.name == hog.engine.executor.name == "level_push"
    assert seen and set(seen) == {"level_push"}  # every worker, every step
    if workers == 1:
        _same_run(sync, hog)
