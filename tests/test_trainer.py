import importlib.util
import subprocess

import numpy as np
import pytest
from conftest import assert_unchanged, snapshot

import genlab
import genlab.backends as backends
from genlab import BackendError, DataError, GrowthPolicy, Network, Trainer, TrainingError, datasets


@pytest.fixture
def net():
    return Network.random_dag(levels=3, per_level=4, width=(2, 6), fan_in=2, seed=1, n_inputs=4, n_outputs=3)


def test_fit_learns_and_records_history():
    data = datasets.load("iris", seed=0)
    net = Network.mlp([4, 16, 3], seed=0)
    trainer = Trainer(net, backend="serial", lr=0.01, batch_size=16, seed=0)
    before = trainer.evaluate(*data.test)
    history = trainer.fit(*data.train, epochs=20, validation=data.test, progress=False)
    per_epoch = -(-len(data.y_train) // 16)
    assert trainer.step_count == len(history.steps) == len(history.grad_std) == 20 * per_epoch
    assert [e["epoch"] for e in history.epochs] == list(range(1, 21))
    assert history.epochs[-1]["step"] == trainer.step_count
    assert history.epochs[-1]["loss"] < history.epochs[0]["loss"]
    after = trainer.evaluate(*data.test)
    assert after["loss"] < before["loss"] and after["accuracy"] >= 0.9
    assert history.epochs[-1]["val_accuracy"] == after["accuracy"]
    assert set(history.grad_std[0]) == set(net.groups[1:])
    assert trainer.predict(data.X_test).shape == (len(data.y_test),)
    # fit wrote the trained parameters back into the network the user holds
    assert np.array_equal(Trainer(net, backend="serial").logits(data.X_test), trainer.logits(data.X_test))


def test_same_seed_same_run(net):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 4)), rng.integers(0, 3, 50)
    runs = [Trainer(net.copy(), backend="serial", seed=3).fit(X, y, epochs=2, progress=False) for _ in range(2)]
    assert [s["loss"] for s in runs[0].steps] == [s["loss"] for s in runs[1].steps]


def test_lr_can_be_changed_between_steps(net):
    trainer = Trainer(net, backend="serial", optimizer="sgd", lr=0.1)
    trainer.lr = 0.0
    before = snapshot(trainer.net)
    trainer.step(np.ones((3, 4)), [0, 1, 2])
    assert_unchanged(trainer.net, before)


BAD_BATCHES = [
    (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 17, np.nan, x), y),
     "X holds 1 NaN or infinite value(s), the first at row 4, column 1 (nan)"),
    (lambda x, y: (np.where(x > 1.5, np.inf, x), y), "NaN or infinite"),
    (lambda x, y: (x[:, :3], y), "X has 3 features but the network's input group has width 4"),
    (lambda x, y: (x[:, 0], y), "X must be 2-D (samples x features), got shape (20,)"),
    (lambda x, y: (x[:0], y[:0]), "X is empty: no samples"),
    (lambda x, y: (x, y[:, None]), "y must be 1-D"),
    (lambda x, y: (x, y[:-1]), "X has 20 samples but y has 19 labels"),
    (lambda x, y: (x, np.where(np.arange(20) == 7, 3, y)), "label 3 is outside 0..2"),
    (lambda x, y: (x, np.where(np.arange(20) == 7, -1, y)), "label -1 is outside 0..2"),
    (lambda x, y: (x, y + 0.5), "labels must be whole numbers"),
    (lambda x, y: (x, y.astype(str)), "labels must be integers"),
    (lambda x, y: (x.astype(str), y), "X must hold numbers"),
    (lambda x, y: ([[1, 2], [3]], y), "X cannot be read as an array"),
]


@pytest.mark.parametrize("spoil, message", BAD_BATCHES)
@pytest.mark.parametrize("call", ["step", "fit", "evaluate"])
def test_bad_data_raises_before_touching_the_network(net, spoil, message, call):
    rng = np.random.default_rng(0)
    x, y = spoil(rng.normal(size=(20, 4)), rng.integers(0, 3, 20))
    trainer = Trainer(net, backend="serial")
    before = snapshot(net)
    engine_before = {k: v.copy() for k, v in trainer.engine.params.items()}
    with pytest.raises(DataError) as err:
        if call == "fit":
            trainer.fit(x, y, epochs=1, progress=False)
        else:
            getattr(trainer, call)(x, y)
    assert message in str(err.value)
    assert_unchanged(trainer.net, before)
    assert all(np.array_equal(engine_before[k], v) for k, v in trainer.engine.params.items())
    assert trainer.step_count == 0 and not trainer.history.steps


def test_bad_validation_data_raises_before_the_first_step(net):
    rng = np.random.default_rng(0)
    trainer = Trainer(net, backend="serial")
    with pytest.raises(DataError, match="label 5 is outside 0..2"):
        trainer.fit(rng.normal(size=(20, 4)), rng.integers(0, 3, 20), validation=(rng.normal(size=(5, 4)), [0, 1, 5, 0, 0]),
                    progress=False)
    assert trainer.step_count == 0


def test_divergence_stops_before_the_bad_update(net):
    trainer = Trainer(net, backend="serial", optimizer="sgd", lr=1e30)
    rng = np.random.default_rng(0)
    for _ in range(10):
        before = {k: v.copy() for k, v in trainer.engine.params.items()}
        steps = trainer.step_count
        try:
            trainer.step(rng.normal(size=(8, 4)) * 100, rng.integers(0, 3, 8))
        except TrainingError as e:
            assert "the step was not applied" in str(e)
            assert all(np.array_equal(before[k], v) for k, v in trainer.engine.params.items())
            assert trainer.step_count == steps
            return
    pytest.fail("a learning rate of 1e30 should make the loss overflow")


def test_cuda_backend_without_gpu_names_what_is_missing(net, monkeypatch):
    monkeypatch.setattr(backends, "cuda_status", lambda: (False, "the CUDA driver sees no GPU"))
    before = snapshot(net)
    with pytest.raises(BackendError, match="the CUDA backend is not available: the CUDA driver sees no GPU"):
        Trainer(net, backend="cuda")
    assert_unchanged(net, before)


def test_auto_falls_back_to_serial_with_one_line(net, monkeypatch, capsys):
    monkeypatch.setattr(backends, "cuda_status", lambda: (False, "pycuda is not installed"))
    monkeypatch.setattr(backends, "_said", set())
    assert Trainer(net, backend="auto").backend == "serial"
    assert Trainer(net, backend="auto").backend == "serial"
    err = capsys.readouterr().err
    assert err == "genlab: using the serial engine (pycuda is not installed)\n"  # once per process


def test_ladder_reports_missing_pycuda(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    ok, why = backends.cuda_status.__wrapped__()
    assert not ok and why.startswith("pycuda is not installed")


def test_unknown_backend_and_bad_arguments(net):
    with pytest.raises(BackendError, match="unknown backend 'tpu'; choose one of auto, serial, cuda"):
        Trainer(net, backend="tpu")
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        Trainer(net, backend="serial", batch_size=0)
    with pytest.raises(TypeError, match="Trainer needs a genlab.Network"):
        Trainer("net", backend="serial")


def test_genlab_backend_variable_sets_what_auto_means(net, monkeypatch):
    monkeypatch.setenv("GENLAB_BACKEND", "serial")
    monkeypatch.setattr(backends, "cuda_status", lambda: (True, "a GPU"))
    assert backends.resolve("auto") == "serial"
    monkeypatch.setenv("GENLAB_BACKEND", "cuda")
    monkeypatch.setattr(backends, "cuda_status", lambda: (False, "the CUDA driver sees no GPU"))
    with pytest.raises(BackendError, match="the CUDA backend is not available"):
        Trainer(net, backend="auto")


def _import_genlab(backend: str | None) -> subprocess.CompletedProcess:
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if k != "GENLAB_BACKEND"}
    if backend is not None:
        env["GENLAB_BACKEND"] = backend
    code = "import genlab; from genlab.engines.cuda import runtime; print('loaded' if runtime.loaded() else 'serial')"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


def test_import_compiles_the_kernels_where_the_gpu_is_usable_and_is_silent_elsewhere():
    """As designed: `import genlab` loads the kernels on a machine whose GPU the CUDA engine can
    use, and on any other machine imports quietly, the serial engine serving."""
    from genlab.backends import cuda_status

    result = _import_genlab(None)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == ("loaded\n" if cuda_status()[0] else "serial\n")


def test_import_with_genlab_backend_cuda_never_fails_and_says_why_without_a_gpu():
    from genlab.backends import cuda_status

    ok, why = cuda_status()
    result = _import_genlab("cuda")
    assert result.returncode == 0
    if ok:
        assert result.stdout == "loaded\n" and result.stderr == ""
    else:
        assert result.stdout == "serial\n" and result.stderr == f"genlab: GENLAB_BACKEND=cuda but {why}\n"


def test_genlab_backend_serial_skips_the_kernels():
    result = _import_genlab("serial")
    assert result.returncode == 0 and result.stdout == "serial\n" and result.stderr == ""


def test_executor_is_checked_and_belongs_to_the_cuda_engine():
    from genlab import BackendError

    net = Network.mlp([4, 3, 2])
    with pytest.raises(BackendError, match="unknown executor 'fastest'.*level, level_push"):
        Trainer(net, backend="serial", executor="fastest")
    with pytest.raises(BackendError, match="schedule of the CUDA engine"):
        Trainer(net, backend="serial", executor="dataflow")
    assert Trainer(net, backend="serial").backend == "serial"


def test_history_keeps_gradient_std_in_ascending_group_id_through_growth():
    """Depth growth puts new (higher) ids between old groups in topological order; the history
    still lists each step's groups in ascending id, as the engines promise."""
    rng = np.random.default_rng(0)
    trainer = Trainer(Network.mlp([5, 4, 4, 3], seed=0), backend="serial", seed=0,
                      growth=GrowthPolicy(threshold=0.0, every=2, cooldown=0, max_groups=9, mode="depth"))
    for _ in range(8):
        trainer.step(rng.normal(size=(16, 5)).astype(np.float32), rng.integers(0, 3, 16))
    assert trainer.history.events and len(trainer.history.grad_std) == 8
    topological = [g for g in trainer.net.topological_order() if g in trainer.history.grad_std[-1]]
    assert topological != sorted(topological)  # the case this test is about
    for record in trainer.history.grad_std:
        assert list(record) == sorted(record)


def test_a_long_run_keeps_a_bounded_evenly_spaced_history(monkeypatch, tmp_path):
    """Past its limits the history keeps one step in `stride` (doubling), evenly spaced, so memory
    stays flat and a checkpoint of any run loads; the pictures and the resume read it."""
    from genlab import history as history_module

    monkeypatch.setattr(history_module, "LIMIT", 40)
    monkeypatch.setattr(history_module, "VALUES", 10**9)
    data = genlab.datasets.load("moons", seed=0)
    trainer = Trainer(Network.mlp([2, 4, 2], seed=0), backend="serial", seed=0,
                      growth=GrowthPolicy(every=50, cooldown=0, max_groups=6))
    for _ in range(5):
        trainer.fit(*data.train, epochs=10, progress=False)
    h = trainer.history
    steps = [s["step"] for s in h.steps]
    assert trainer.step_count == 5 * 10 * 15 and h.stride == 32 and 20 <= len(steps) <= 40
    assert len(h.grad_std) == len(steps) and all(s % h.stride == 0 for s in steps)
    assert steps == list(range(steps[0], steps[-1] + 1, h.stride))  # evenly spaced
    assert len(h.epochs) == 50 and h.events  # whole
    assert h.at(steps[3] + 1) == 3 and h.at(0) is None
    genlab.viz.heatmap(h, trainer.net)
    assert genlab.viz.step_span(h) == (steps[0] - 16, steps[-1] + 16)
    if importlib.util.find_spec("graphviz"):  # (the GPU machines' image lacks it)
        genlab.viz.animation(h)
    resumed = Trainer.load(trainer.save(tmp_path / "run.ckpt"), backend="serial")
    assert resumed.history.stride == 32 and resumed.history.steps == h.steps
    monkeypatch.setattr(history_module, "VALUES", 50)  # the values' bound thins too, at the next record
    resumed.fit(*data.train, epochs=3, progress=False)
    assert sum(map(len, resumed.history.grad_std)) <= 50 and resumed.history.stride > 32


@pytest.mark.parametrize("recurrent", [False, True])
def test_an_engine_replaced_by_reset_is_freed_at_once(recurrent):
    """No reference cycle keeps a replaced engine (and, on a GPU, its device memory) alive until
    the next cyclic garbage collection: a soak of many resets stays flat."""
    import gc
    import weakref

    net = Network.elman(3, [4], 2, seed=0) if recurrent else Network.mlp([3, 4, 2], seed=0)
    x = np.random.default_rng(0).normal(size=(8, 5, 3) if recurrent else (8, 3))
    trainer = Trainer(net, backend="serial", seed=0, growth=GrowthPolicy(every=2, cooldown=0))
    for _ in range(4):
        trainer.step(x, np.arange(8) % 2)
    old = weakref.ref(trainer.engine)
    gc.disable()
    try:
        trainer.reset()
        assert old() is None
    finally:
        gc.enable()
