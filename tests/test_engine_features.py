"""Every engine against every trainer feature: each pair either works as on the serial engine or
refuses with a genlab error that says why. Nothing else is allowed: an AttributeError or a
TypeError from one engine's inner object (the recurrent CUDA engine once called a method its
unrolled engine did not have, as soon as pruning was on) fails here.

The engines: the serial engine, the data-parallel and partitioned modes (in a world of this process
alone) and the CUDA engine (on a GPU; without one, its kernels' source run on the CPU, and its
host side alone on a stand-in), each with a feed-forward DAG and a recurrent network (the
partitioned engine runs DAGs only), and the CUDA engine's wavefront executor of recurrent networks. The features: each growth mode and criterion, both kinds of pruning, a
checkpoint resumed mid-run, Hogwild with one worker, export to PyTorch, evaluation, the
growth preview and the statistics a Lab reads.
"""

import numpy as np
import pytest

import genlab
from genlab import INPUT, GrowthPolicy, Network, Trainer
from genlab.errors import GenlabError

gpu = pytest.mark.gpu


def dag():
    net = Network.random_dag(levels=2, per_level=3, width=6, fan_in=2, seed=1, n_inputs=12, n_outputs=3)
    net.biases[net.hidden_groups[1]][:] = -1e3  # a dead group: constant, pruned when pruning is on
    return net


def recurrent():
    net = Network.elman(6, [8, 8], 3, seed=2)
    a, b = net.hidden_groups
    dead = net.add_group(5, outputs=[b])  # read without a delay: it may be pruned
    net.connect(INPUT, dead)
    net.biases[dead][:] = -1e3
    return net


NETS = {"dag": dag, "recurrent": recurrent}


def data(kind, n=256, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 12) if kind == "dag" else (n, 5, 6)).astype(np.float32)
    flat = X if kind == "dag" else X.sum(axis=1)
    y = (flat[:, :3].sum(axis=1) > 0).astype(np.int64) + (flat[:, 3] > 1)
    return X, y


def grows(**options):
    base = dict(threshold=0.0, every=4, cooldown=4, max_groups=14, mode="alternate")
    return GrowthPolicy(**{**base, **options})


# feature -> (trainer options, steps, the event kinds it must produce on the serial engine)
FEATURES = {
    "growth_depth": (dict(growth=grows(mode="depth")), 12, {"depth"}),
    "growth_width": (dict(growth=grows(mode="width")), 12, {"width"}),
    "growth_alternate": (dict(growth=grows()), 12, {"depth", "width"}),
    "growth_auto": (dict(growth=grows(mode="auto", max_depth=4)), 12, {"depth"}),
    "growth_top_rule": (dict(growth=GrowthPolicy(top=2, every=4, cooldown=4, max_groups=14)), 12, {"depth"}),
    "criterion_weight_grad_norm": (dict(growth=grows(criterion="weight_grad_norm")), 12, {"depth", "width"}),
    "criterion_taylor": (dict(growth=grows(criterion="taylor")), 12, {"depth", "width"}),
    "prune_ranges": (dict(growth=GrowthPolicy(threshold=1e9, every=4, prune=True)), 8, {"prune"}),
    "prune_taylor": (dict(growth=GrowthPolicy(threshold=1e9, every=2, prune_taylor=1e-12, patience=2)), 8,
                     {"prune"}),
    "sgd": (dict(optimizer="sgd", lr=0.05), 6, set()),
}


def trainer_options(engine: dict) -> dict:
    """An engine's Trainer options: a distributed mode runs in a world of this process alone."""
    if "distributed" in engine:
        from genlab.distributed import World

        return {"world": World.alone(), **engine}
    return dict(engine)


def run(engine, kind, options, steps, X, y):
    trainer = Trainer(NETS[kind](), seed=0, **({"lr": 1e-2} | trainer_options(engine) | options))
    for step in range(steps):
        rows = slice((step * 32) % len(y), (step * 32) % len(y) + 32)
        trainer.step(X[rows], y[rows])
    return trainer


def events(trainer):
    return [(e["kind"], e["source"], e["new"]) for e in trainer.history.events]


def outcome(call):
    """What a feature did: its value, or the genlab error it refused with. Any other exception
    propagates and fails the test."""
    try:
        return call(), None
    except GenlabError as error:
        assert str(error), "a refusal says why"
        return None, error


SERIAL = {"backend": "serial"}
# (engine as Trainer options, network kind); the partitioned engine runs DAGs only (it refuses a
# recurrent network with a BackendError, tests/test_distributed.py)
ENGINES = [pytest.param((SERIAL, kind), id=f"serial-{kind}") for kind in NETS]
ENGINES += [pytest.param(({"backend": "serial", "distributed": "data"}, kind), id=f"data-parallel-{kind}")
            for kind in NETS]
ENGINES += [pytest.param(({"backend": "serial", "distributed": "partitioned"}, "dag"), id="partitioned-dag")]
ENGINES += [pytest.param(({"backend": "cuda"}, kind), id=f"cuda-{kind}", marks=gpu) for kind in NETS]
WAVEFRONT = {"backend": "cuda", "executor": "wavefront"}  # recurrent networks only
ENGINES += [pytest.param((WAVEFRONT, "recurrent"), id="cuda-wavefront-recurrent", marks=gpu)]
# the CUDA engine without a GPU: its kernels' own source run on the CPU (tests/cpu_cuda), slowly
EMULATED = {"backend": "cuda", "executor": "level"}
EMULATED_WAVEFRONT = {"backend": "cuda", "executor": "wavefront"}
ENGINES += [pytest.param((EMULATED, kind), id=f"cuda-on-cpu-{kind}") for kind in NETS]
ENGINES += [pytest.param((EMULATED_WAVEFRONT, "recurrent"), id="cuda-wavefront-on-cpu-recurrent")]


@pytest.fixture(autouse=True)
def _emulated_gpu(request):
    """The CPU-emulated GPU for the tests of the EMULATED engine."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    engine = params.get("engine", (None,))[0]
    if any(engine is emulated for emulated in (EMULATED, EMULATED_WAVEFRONT)):  # (WAVEFRONT is equal, not them)
        request.getfixturevalue("cpu_gpu")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("feature", FEATURES)
def test_every_engine_runs_every_growth_and_pruning_feature_like_serial(engine, feature):
    engine, kind = engine
    options, steps, expected = FEATURES[feature]
    X, y = data(kind)
    trainer, refused = outcome(lambda: run(engine, kind, options, steps, X, y))
    if refused is not None:
        pytest.fail(f"{engine} refused {feature} on a {kind} network: {refused}")
    reference = trainer if engine == SERIAL else run(SERIAL, kind, options, steps, X, y)
    assert {e[0] for e in events(reference)} >= expected, f"the serial engine never did {feature}"
    assert events(trainer) == events(reference)
    assert trainer.net.edges == reference.net.edges and trainer.net.widths == reference.net.widths
    np.testing.assert_allclose(trainer.logits(X[:64]), reference.logits(X[:64]), rtol=2e-3, atol=2e-3)
    mine, theirs = trainer.history.grad_std[-1], reference.history.grad_std[-1]  # what the Lab draws
    assert set(mine) == set(theirs) and all(np.isfinite(v) for v in mine.values())
    for g, value in theirs.items():
        assert mine[g] == pytest.approx(value, rel=2e-2, abs=1e-6), g


@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_resumes_a_checkpoint_mid_run_as_if_uninterrupted(engine, tmp_path):
    engine, kind = engine
    X, y = data(kind)
    options = dict(growth=grows(every=3))
    whole = run(engine, kind, options, 8, X, y)
    first = run(engine, kind, options, 4, X, y)
    path = first.save(tmp_path / "run.ckpt")
    resumed = Trainer.load(path, **{k: v for k, v in trainer_options(engine).items() if k != "growth"})
    for step in range(4, 8):
        rows = slice(step * 32, step * 32 + 32)
        resumed.step(X[rows], y[rows])
    assert events(resumed) == events(whole) and events(whole)
    np.testing.assert_allclose(resumed.logits(X[:64]), whole.logits(X[:64]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_previews_evaluates_and_exports(engine):
    engine, kind = engine
    torch = pytest.importorskip("torch")
    X, y = data(kind)
    trainer = run(engine, kind, dict(growth=grows(every=None)), 4, X, y)
    preview = trainer.preview_growth()
    assert preview and all(g in trainer.net.hidden_groups for g, _, _ in preview)
    report = trainer.evaluate(X[:64], y[:64])
    assert 0.0 <= report["accuracy"] <= 1.0 and np.isfinite(report["loss"])
    np.testing.assert_array_equal(trainer.predict(X[:64]), trainer.logits(X[:64]).argmax(axis=1))
    module = genlab.to_torch(trainer.net)
    with torch.no_grad():
        exported = module(torch.as_tensor(X[:64], dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(exported, trainer.logits(X[:64]), rtol=1e-4, atol=1e-4)
    events_before = len(trainer.history.events)
    grown = trainer.grow()
    assert grown and len(trainer.history.events) > events_before


@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_runs_hogwild_with_one_worker_as_the_synchronous_trainer(engine):
    engine, kind = engine
    X, y = data(kind)
    results = []
    for parallel in (None, genlab.Hogwild(workers=1)):
        trainer, refused = outcome(lambda: Trainer(NETS[kind](), seed=0, lr=1e-2, parallel=parallel,
                                                   **trainer_options(engine)))
        if refused is not None:
            assert parallel is not None, refused
            return  # refused with a genlab error: allowed
        trainer.fit(X[:128], y[:128], epochs=1, progress=False)
        results.append(trainer.logits(X[:64]))
    np.testing.assert_array_equal(results[1], results[0])


STAND_IN = [pytest.param(({"backend": "cuda"}, kind), id=f"cuda-{kind}") for kind in NETS]
STAND_IN += [pytest.param((WAVEFRONT, "recurrent"), id="cuda-wavefront-recurrent")]


@pytest.mark.parametrize("engine", STAND_IN)
@pytest.mark.parametrize("feature", FEATURES)
def test_every_cuda_engine_takes_every_feature_on_a_stand_in_gpu(fake_gpu, engine, feature, tmp_path):
    """Without a GPU: each CUDA engine's host side through every feature, a growth check, a preview,
    an evaluation and a checkpoint resumed, on tests/fake_cuda.py's stand-in (every launch checked
    against its kernel's parameters; no kernel runs, so what the device would decide reads zeros).
    Nothing may fail but with a genlab error, and the recurrent engine, whose decisions are the
    host's, not at all."""
    engine, kind = engine
    options, steps, _ = FEATURES[feature]
    X, y = data(kind)

    def whole():
        trainer = run(engine, kind, options, steps, X, y)
        trainer.grow()
        trainer.preview_growth()
        trainer.evaluate(X[:40], y[:40])
        resumed = Trainer.load(trainer.save(tmp_path / "stand_in.ckpt"), **engine)
        resumed.step(X[:32], y[:32])
    _, refused = outcome(whole)
    assert refused is None or kind == "dag", refused  # the DAG engine's growth picks from zeros
    assert fake_gpu.launches
