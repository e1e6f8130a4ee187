"""executor="auto"'s trial on the host (tests/fake_cuda.py's stand-in GPU, no kernel runs): an
executor whose lower bound already loses is not tried."""

import numpy as np
import pytest

from genlab import Network
from genlab.engines.cuda import choice
from genlab.engines.cuda.executors import EXECUTORS
from genlab.optim import Adam


pytestmark = pytest.mark.usefixtures("fresh_executor_cache")  # no cached choice


def tried(monkeypatch, net, rows, ms=1.0):
    """The executors the first step's trial runs, each step taking `ms` (the stand-in's times are
    the host's)."""
    from genlab.engines.cuda import CudaEngine

    names = []
    monkeypatch.setattr(choice, "_store", lambda key, value: None)  # each trial afresh
    monkeypatch.setattr(choice, "_time_steps", lambda e, x, y, best: names.append(e.executor.name) or ms)
    engine = CudaEngine(net, Adam(1e-3), executor="auto")
    rng = np.random.default_rng(0)
    engine.chooser.step(engine, rng.normal(size=(rows, net.n_inputs)).astype(np.float32),
                        rng.integers(0, net.n_outputs, rows), rows)
    assert engine.chooser.last["how"] == "trial" and set(engine.chooser.last["ms"]) == set(names)
    return names, engine


def test_the_trial_skips_an_executor_whose_least_time_loses(fake_gpu, monkeypatch):
    big = Network.random_dag(2, 2, 512, 2, seed=0, n_inputs=512)  # ~1.6 M weights at 1024 rows
    names, engine = tried(monkeypatch, big, 1024, ms=1.0)
    least = EXECUTORS["cluster"].least_ms(engine.layout, 1024, engine)
    assert least > choice.GIVE_UP * 1.0 and "cluster" not in names
    assert set(names) == set(EXECUTORS) - {"cluster"}
    # a step of the others slower than its bound: it is tried
    names, _ = tried(monkeypatch, big, 1024, ms=least)
    assert set(names) == set(EXECUTORS)


def test_the_least_time_is_the_work_at_the_clusters_rate_and_is_tried_on_small_networks(fake_gpu, monkeypatch):
    small = Network.random_dag(5, 10, 16, 4, seed=0)
    names, engine = tried(monkeypatch, small, 32, ms=0.05)
    assert set(names) == set(EXECUTORS)
    weights = sum(w.size for w in small.weights.values())
    rate = 8 * 128 * 2 * 1.98e9  # CLUSTER multiprocessors x fp32 lanes x 2 flops at the stand-in's clock
    assert EXECUTORS["cluster"].least_ms(engine.layout, 32, engine) == pytest.approx(6 * 32 * weights / rate * 1e3)
    assert EXECUTORS["level"].least_ms(engine.layout, 32, engine) == 0.0
