"""executor="auto": the trial changes nothing but time, the choice follows the shape and the
group kinds, and is cached per shape and GPU."""

import json

import numpy as np
import pytest

from genlab import BackendError, GrowthPolicy, Network, Trainer
from genlab.engines.cuda import choice
from genlab.engines.cuda.executors import EXECUTORS
from genlab.optim import Adam

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("fresh_executor_cache")]  # no cached choice


def engine(net, executor="auto", lr=1e-2):
    from genlab.engines.cuda import CudaEngine

    return CudaEngine(net, Adam(lr=lr), executor=executor)


def batch(net, n=64, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, net.n_inputs)).astype(np.float32), rng.integers(0, net.n_outputs, n)


@pytest.mark.parametrize("shape", [(6, 12, 16, 3), (3, 6, 64, 2)])
def test_the_trial_leaves_the_training_as_a_fixed_executor_makes_it(shape):
    """Three steps with auto (the first runs the trial) equal three steps with the executor it
    chose, loss by loss and parameter by parameter."""
    net = Network.random_dag(*shape, seed=5)
    x, y = batch(net)
    auto = engine(net)
    first = auto.step(x, y)
    chosen = auto.chooser.last["executor"]
    assert auto.chooser.last["how"] == "trial" and len(auto.chooser.last["ms"]) == len(EXECUTORS)
    assert auto.executor.name == chosen
    fixed = engine(net, chosen)
    assert fixed.step(x, y) == pytest.approx(first, rel=1e-6)
    for _ in range(2):
        assert auto.step(x, y) == pytest.approx(fixed.step(x, y), rel=1e-5)
    # the same executor on the same inputs, but its sums' order may differ by rounding (atomic adds),
    # which Adam's normalised step turns into differences below one step (lr = 1e-2; measured up to
    # 3.7e-6 on an H100 and an H200); a trial that left a parameter or a moment behind would differ
    # by about lr, ten times this tolerance
    got, want = auto.params, fixed.params
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=0.1 * 1e-2, err_msg=str(key))


def test_the_trial_keeps_growth_scores_and_optimizer_state(monkeypatch):
    """A trial after some steps (a new batch size is a new shape, tried once it has lasted
    PATIENCE steps) puts back the optimizer state and the smoothed growth scores: the next step
    matches an engine that never tried anything."""
    monkeypatch.setattr(choice, "PATIENCE", 1)
    net = Network.random_dag(4, 8, 16, 3, seed=2)
    x, y = batch(net, 64)
    x2, y2 = batch(net, 128, seed=3)
    auto = engine(net)
    auto.growth_criterion = ("grad_std", 0.5)
    auto.step(x, y)
    fixed = engine(net, auto.executor.name)
    fixed.growth_criterion = ("grad_std", 0.5)
    fixed.step(x, y)
    auto.step(x, y)
    fixed.step(x, y)
    auto.step(x2, y2)  # a new shape: it waits on the same executor
    fixed.step(x2, y2)
    assert auto.chooser.last["how"] == "waiting" and auto.executor.name == fixed.executor.name
    auto.step(x2, y2)  # it has lasted PATIENCE steps: a trial, then the step
    assert auto.chooser.last["shape"]["batch"] == 128 and auto.chooser.last["how"] == "trial"
    fixed.use_executor(auto.executor.name)
    fixed.step(x2, y2)
    for key, want in fixed.params.items():
        np.testing.assert_allclose(auto.params[key], want, rtol=1e-5, atol=1e-6, err_msg=str(key))
    a, b = np.empty(len(auto.layout.groups)), np.empty(len(fixed.layout.groups))
    auto.drv.memcpy_dtoh(a, auto.dev.scores.ema)
    fixed.drv.memcpy_dtoh(b, fixed.dev.scores.ema)
    assert np.abs(a).max() > 0  # the smoothed growth scores: five steps' worth, not the trial's too
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_a_shape_is_tried_once_then_taken_from_the_cache_on_disk():
    net = Network.random_dag(3, 5, 8, 2, seed=1)
    x, y = batch(net, 32)
    first = engine(net)
    first.step(x, y)
    saved = json.loads(choice.cache_path().read_text())
    assert [v["executor"] for v in saved.values()] == [first.executor.name]
    choice._CACHE = None  # a new process: read back from disk
    second = engine(Network.random_dag(3, 5, 8, 2, seed=9))  # another network of the same shape
    second.step(x, y)
    assert second.chooser.last["how"] == "cache" and second.executor.name == first.executor.name


def test_an_unreadable_cache_is_tried_again_and_rewritten():
    choice.cache_path().parent.mkdir(parents=True, exist_ok=True)
    choice.cache_path().write_text("{not json")
    net = Network.random_dag(2, 3, 8, 2, seed=1)
    e = engine(net)
    e.step(*batch(net, 16))
    assert e.chooser.last["how"] == "trial"
    assert json.loads(choice.cache_path().read_text())


def test_growth_into_a_new_shape_waits_then_tries_it():
    """A network grown every 5 steps keeps its executor through the new shapes (no trial at each
    growth step); once growth stops, its last shape is tried after PATIENCE steps."""
    from genlab.datasets import load

    data = load("digits", seed=0)
    trainer = Trainer(Network.mlp([64, 8, 10], seed=0), backend="cuda", seed=0,
                      growth=GrowthPolicy(threshold=0.0, every=5, cooldown=0, max_groups=40, mode="width"))
    seen, previous = [], None  # one entry per choice made
    for i in range(40 + choice.PATIENCE + 5):
        idx = np.arange(32 * i, 32 * i + 32) % len(data.y_train)
        trainer.step(data.X_train[idx], data.y_train[idx])
        last = trainer.engine.chooser.last
        if last is not previous:
            seen.append((last["how"], last["shape"]["groups"], last["executor"]))
            previous = last
    hows = [how for how, _, _ in seen]
    assert hows[0] == "trial" and hows.count("trial") == 2 and "waiting" in hows
    assert len({groups for _, groups, _ in seen}) >= 3
    assert seen[-1][1] == choice._round(len(trainer.net.hidden_groups)) and seen[-1][0] == "trial"
    assert all(executor == seen[0][2] for how, _, executor in seen if how == "waiting")  # kept, not switched


def test_groups_of_other_kinds_run_on_the_executors_that_have_their_kernels():
    net = Network.conv_chain((1, 8, 8), [4, 4], 10, seed=0)
    x, y = batch(net, 16)
    e = engine(net)
    e.step(x, y)
    assert e.chooser.last["how"] == "only" and e.executor.name == "level"
    with pytest.raises(BackendError, match="cannot run groups of kind conv"):
        e.use_executor("dataflow_rows")
    assert e.executor.name == "level"  # refused: nothing changed
    e.step(x, y)


def test_a_data_parallel_step_chooses_by_the_model():
    """Replicas must run the same executor: their choice is the cost model's, made from the
    shape alone (the whole batch's rows), without a trial."""
    net = Network.random_dag(4, 8, 16, 3, seed=2)
    e = engine(net)
    shape = choice.Shape.of(e.kinds, e.layout, 64)
    e.chooser.step(e, *batch(net, 32), 64, replicated=True)
    assert e.chooser.last["how"] == "model" and e.executor.name == choice.model(shape)
    assert e.chooser.last["ms"] == {}  # no executor was timed


def test_an_executor_without_room_is_left_out_of_the_trial(monkeypatch):
    """An executor whose buffers do not fit (BackendError) is skipped; the others are tried."""
    from genlab.engines.cuda import CudaEngine

    use = CudaEngine.use_executor

    def refuse(self, name):
        if name == "dataflow":
            raise BackendError("out of GPU memory (made by the test)")
        use(self, name)

    monkeypatch.setattr(CudaEngine, "use_executor", refuse)
    net = Network.random_dag(3, 6, 16, 3, seed=3)
    e = engine(net)
    loss, _ = e.step(*batch(net))
    assert np.isfinite(loss) and e.chooser.last["how"] == "trial"
    assert set(e.chooser.last["ms"]) == set(EXECUTORS) - {"dataflow"}
