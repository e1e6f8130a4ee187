"""Synthetic gradients pipelined over successive batches (genlab.DNI(pipelined=True),
genlab/asynchronous/pipeline.py): the serial reference, then the CUDA engine's pipelined step
(genlab/engines/cuda/pipelined.py) against it, on the CPU-emulated GPU here and on a GPU with
`pytest -m gpu`."""

import copy

import numpy as np
import pytest

import genlab
from genlab.asynchronous.pipeline import PipelinedEngine
from genlab.cuts import Stages, parts
from genlab.engines.serial import SerialEngine
from genlab.errors import ArgumentError, ArgumentTypeError, GraphError, TrainingError
from genlab.optim import make_optimizer

from test_dni_cuda import assert_same_modules


def skipping_net():
    """a -> b -> c -> d -> output; a skips to c, the input to d: cut after b and c, three stages;
    c reads two groups of stage 0, d reads the input two stages back."""
    net = genlab.Network(8, 3, seed=4)
    a = net.add_group(6, inputs=[genlab.INPUT])
    b = net.add_group(37, inputs=[a])  # two tiles of 32 neurons
    c = net.add_group(7, inputs=[b, a])
    d = net.add_group(5, inputs=[c, genlab.INPUT])
    net.connect(d, genlab.OUTPUT)
    return net, (b, c)


def mlp():
    net = genlab.Network.mlp([10, 12, 9, 7, 3], seed=2)
    return net, tuple(net.hidden_groups[:2])


NETS = {"mlp": mlp, "skipping": skipping_net}


def batches(net, sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(n, net.n_inputs)).astype(np.float32), rng.integers(0, net.n_outputs, n)) for n in sizes]


def test_the_stages_say_what_each_reads_and_how_far_back():
    net, (b, c) = skipping_net()
    a, d = net.hidden_groups[0], net.hidden_groups[3]
    st = Stages.of(net, parts(net, (b, c)))
    assert st.stage == {genlab.INPUT: 0, a: 0, b: 0, c: 1, d: 2, genlab.OUTPUT: 2} and st.depth == 2
    assert st.delay == {a: 1, b: 1, c: 1, genlab.INPUT: 2} and st.reader == {a: 1, b: 1, c: 2}
    assert st.seen(genlab.INPUT, d) == 2 and st.seen(a, b) == 0


def test_a_group_two_later_stages_read_is_refused():
    net = genlab.Network(4, 2, seed=0)
    a = net.add_group(3, inputs=[genlab.INPUT])
    b = net.add_group(3, inputs=[a])
    c = net.add_group(3, inputs=[b, a])  # a feeds stage 1 (b) ... and stage 2 (c)
    net.connect(c, genlab.OUTPUT)
    with pytest.raises(GraphError, match="read by two later parts"):
        genlab.Trainer(net, decouple=genlab.DNI([a, b], pipelined=True))
    genlab.Trainer(net.copy(), decouple=genlab.DNI([a, b]))  # unpipelined, it runs


def test_the_settings_are_checked():
    with pytest.raises(ArgumentTypeError, match="pipelined"):
        genlab.DNI([1], pipelined="yes")
    net, cuts = mlp()
    with pytest.raises(ArgumentError, match="pipelined"):
        genlab.Trainer(net, distributed="partitioned", decouple=genlab.DNI(pipelined=True))


@pytest.mark.parametrize("net_name", NETS)
def test_with_the_network_held_still_each_stage_works_on_the_batch_of_its_depth(net_name):
    """Learning rates 0: a stage's batch is all that differs. The step's loss is the exact loss of
    the batch `depth` steps back (the first batch while the pipeline fills), the last stage's
    gradients are backprop's on it, and each module's truth is backprop's share of its reader's batch."""
    net, cuts = NETS[net_name]()
    net.astype("float64")
    pipe = PipelinedEngine(net.copy(), make_optimizer("sgd", 0.0), "float64", cuts, True, lr=1e-300)
    exact = SerialEngine(net.copy(), make_optimizer("sgd", 0.0), "float64")
    st = pipe.stages
    data = batches(net, [20, 20, 20, 13, 20, 9])
    for t, (x, y) in enumerate(data):
        modules = copy.deepcopy(pipe.interfaces)  # as the step finds them
        loss, correct = pipe.step(x, y)
        ex, ey = data[max(t - st.depth, 0)]
        logits = exact.forward(ex)
        assert loss == pytest.approx(exact.backward(ey), rel=1e-12)
        assert correct == int(np.sum(logits.argmax(1) == ey))
        assert pipe.scored == (None if t == 0 else len(ey))
        for (kind, *groups), grad in exact.grads.items():
            if st.stage[groups[-1]] == st.depth:  # the last stage: exact
                np.testing.assert_allclose(pipe.grads[(kind, *groups)], grad, rtol=1e-10, atol=1e-14)
        for g, (h, yy, target, predicted) in pipe._pending.items():
            rx, ry = data[max(t - st.reader[g], 0)]
            exact.forward(rx)
            exact.backward(ry)
            np.testing.assert_allclose(h, exact._h[g], rtol=1e-12)
            np.testing.assert_array_equal(yy, ry)
            if st.reader[g] == st.depth:  # read by the last stage: the true share, per sample
                np.testing.assert_allclose(target / len(rx), exact._pooled[g][0], rtol=1e-9, atol=1e-15)
            if g in modules:  # the module's prediction of the kept batch, with its parameters at the step's start
                np.testing.assert_allclose(predicted, modules[g].predict(h, yy), rtol=1e-12)


def test_one_call_at_a_time_is_the_unpipelined_step():
    net, cuts = skipping_net()
    from genlab.asynchronous.decoupled import DecoupledEngine

    pipe = PipelinedEngine(net.copy(), make_optimizer("adam", 0.01), "float64", cuts, True, lr=0.01)
    plain = DecoupledEngine(net.copy(), make_optimizer("adam", 0.01), "float64", cuts, True, lr=0.01)
    for x, y in batches(net, [16, 16]):
        for e in (pipe, plain):
            e.forward(x)
            e.backward(y)
            e.update()
    for key, p in plain.params.items():
        np.testing.assert_array_equal(pipe.params[key], p)


def test_a_refused_step_changes_nothing_and_restarts_the_pipeline():
    net, cuts = skipping_net()
    pipe = PipelinedEngine(net.copy(), make_optimizer("adam", 0.01), "float32", cuts, True, lr=0.01)
    data = batches(net, [16, 16, 16])
    for x, y in data[:2]:
        pipe.step(x, y)
    assert not pipe.fresh
    before = {k: v.copy() for k, v in pipe.params.items()}
    bad = data[2][0].copy()
    bad[0, 0] = np.inf
    with pytest.raises(TrainingError):
        pipe.step(bad, data[2][1])
    for key, value in pipe.params.items():
        np.testing.assert_array_equal(value, before[key])
    assert pipe.fresh
    pipe.step(*data[2])
    assert pipe.scored is None and not pipe.fresh  # the unpipelined step, then on


def test_pipelined_dni_trains_digits_close_to_unpipelined_dni():
    """Three stages on digits: the pipelined run's test accuracy within 3 points of the
    unpipelined cDNI run's (measured: tests/test_dni_pipeline.py, serial, seed 3)."""
    data = genlab.datasets.load("digits")
    net = genlab.Network.mlp([data.n_features, 32, 32, 32, data.n_classes], seed=1)
    acc = {}
    for pipelined in (False, True):
        t = genlab.Trainer(net.copy(), backend="serial", seed=3,
                           decouple=genlab.DNI(net.hidden_groups[:2], conditioned=True, pipelined=pipelined))
        t.fit(data.X_train, data.y_train, epochs=12, progress=False)
        acc[pipelined] = t.evaluate(data.X_test, data.y_test)["accuracy"]
        steps = t.history.steps
        assert all(0 <= s["accuracy"] <= 1 for s in steps)  # scored on the last stage's own rows
    assert acc[False] > 0.9 and acc[True] > acc[False] - 0.03, acc


def test_growth_and_a_checkpoint_restart_the_pipeline(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 12)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) > 0).astype(np.int64) + (X[:, 3] > 1)
    net = genlab.Network.mlp([12, 8, 6, 3], seed=1)
    policy = genlab.GrowthPolicy(threshold=0.0, every=4, cooldown=4, max_groups=7, mode="alternate")
    t = genlab.Trainer(net, lr=1e-2, seed=0, growth=policy,
                       decouple=genlab.DNI([net.hidden_groups[0]], conditioned=True, pipelined=True))
    fresh = []
    for step in range(18):
        t.step(X[step * 16 % 256:][:16], y[step * 16 % 256:][:16])
        fresh.append(t.engine.scored is None)
    grown = [e["step"] for e in t.history.events]
    assert len(grown) >= 3
    assert [s for s, f in enumerate(fresh, 1) if f] == [1] + [s + 1 for s in grown if s < 18]
    t.save(tmp_path / "run.ckpt")
    again = genlab.Trainer.load(tmp_path / "run.ckpt")
    assert again.decouple.pipelined and type(again.engine) is PipelinedEngine and again.engine.fresh


# ---------------------------------------------------------------- the CUDA engine's pipelined step
def pair(net, cuts, conditioned, optimizer="adam", lr=0.01):
    from genlab.engines.cuda.pipelined import PipelinedCudaEngine

    gpu = PipelinedCudaEngine(net.copy(), make_optimizer(optimizer, lr), "float32", cuts, conditioned, lr=0.01)
    ref = PipelinedEngine(net.copy(), make_optimizer(optimizer, lr), "float64", cuts, conditioned, lr=0.01)
    return gpu, ref


def steps_match(net_name, conditioned, optimizer):
    """Step by step against the serial reference: batches of uneven sizes (each stage's own rows),
    then a batch larger than the buffers (the kept batches move with them, the pipeline goes on)."""
    net, cuts = NETS[net_name]()
    gpu, ref = pair(net, cuts, conditioned, optimizer)
    assert gpu.crossing == ref.crossing and gpu.stages == ref.stages
    for x, y in batches(net, [20, 20, 13, 20, 17, 50, 20, 20]):
        loss, correct = gpu.step(x, y)
        ref_loss, ref_correct = ref.step(x, y)
        assert loss == pytest.approx(ref_loss, rel=1e-4) and correct == ref_correct
        assert gpu.scored == ref.scored
        assert gpu.errors[-1].keys() == ref.errors[-1].keys()
        for g, error in ref.errors[-1].items():
            assert gpu.errors[-1][g] == pytest.approx(error, rel=1e-3, abs=1e-6), g
    assert not gpu.fresh and gpu.scored == 50  # the large batch reached the last stage (two stages on)
    for g, s in ref.grad_std.items():
        assert gpu.grad_std[g] == pytest.approx(s, rel=1e-3, abs=1e-7), g
    for key, p in ref.params.items():
        np.testing.assert_allclose(gpu.params[key], p, rtol=1e-3, atol=1e-4, err_msg=str(key))
    assert_same_modules(gpu, ref)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("conditioned", [False, True])
@pytest.mark.parametrize("net_name", NETS)
def test_the_pipelined_step_on_the_gpus_kernels_is_the_serial_engines(cpu_gpu, net_name, conditioned, optimizer):
    steps_match(net_name, conditioned, optimizer)


@pytest.mark.gpu
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("conditioned", [False, True])
@pytest.mark.parametrize("net_name", NETS)
def test_the_pipelined_step_on_a_gpu_is_the_serial_engines(net_name, conditioned, optimizer):
    steps_match(net_name, conditioned, optimizer)


def test_a_refused_pipelined_step_on_the_gpus_kernels_changes_nothing(cpu_gpu):
    net, cuts = skipping_net()
    gpu, ref = pair(net, cuts, True)
    data = batches(net, [16, 16, 16, 16])
    for x, y in data[:2]:
        gpu.step(x, y)
        ref.step(x, y)
    before = {k: v.copy() for k, v in gpu.params.items()}
    modules = {g: {n: v.copy() for n, v in m.params.items()} for g, m in gpu.interfaces.items()}
    bad = data[2][0].copy()
    bad[0, 0] = np.inf
    for e in (gpu, ref):
        with pytest.raises(TrainingError):
            e.step(bad, data[2][1])
        assert e.fresh
    for key, value in gpu.params.items():
        np.testing.assert_array_equal(value, before[key])
    for g, m in gpu.interfaces.items():
        for name, value in m.params.items():
            np.testing.assert_array_equal(value, modules[g][name])
    for x, y in data[2:]:  # both restart the pipeline, and go on alike
        assert gpu.step(x, y)[0] == pytest.approx(ref.step(x, y)[0], rel=1e-4)
        assert gpu.scored == ref.scored


def test_growth_restarts_the_pipeline_on_both_engines_alike(cpu_gpu, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 12)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) > 0).astype(np.int64) + (X[:, 3] > 1)
    net = genlab.Network.mlp([12, 8, 6, 3], seed=1)
    policy = dict(threshold=0.0, every=4, cooldown=4, max_groups=7, mode="alternate")
    runs = {}
    for backend in ("serial", "cuda"):
        t = genlab.Trainer(net.copy(), backend=backend, lr=1e-2, seed=0, growth=genlab.GrowthPolicy(**policy),
                           decouple=genlab.DNI(net.hidden_groups[:2], conditioned=True, lr=0.01, pipelined=True))
        for step in range(18):
            t.step(X[step * 16 % 256:][:16], y[step * 16 % 256:][:16])
        runs[backend] = t
    serial, cuda = runs["serial"], runs["cuda"]
    assert type(cuda.engine).__name__ == "PipelinedCudaEngine"
    events = [(e["kind"], e["source"], e["new"]) for e in serial.history.events]
    assert len(events) >= 3 and events == [(e["kind"], e["source"], e["new"]) for e in cuda.history.events]
    assert [s["loss"] for s in cuda.history.steps] == pytest.approx([s["loss"] for s in serial.history.steps],
                                                                   rel=2e-3)
    np.testing.assert_allclose(cuda.logits(X[:64]), serial.logits(X[:64]), rtol=2e-3, atol=2e-3)
    cuda.save(tmp_path / "run.ckpt")
    again = genlab.Trainer.load(tmp_path / "run.ckpt", backend="cuda")
    assert type(again.engine).__name__ == "PipelinedCudaEngine" and again.engine.fresh
    again.step(X[:16], y[:16])


def test_the_pipelined_step_with_the_output_cut_into_parts_is_the_serial_engines(cpu_gpu, monkeypatch):
    """The output stage's forward with the output group's in-edges cut one a part
    (executors/output_parts.py): its parts summed before the loss, on the stage's own rows."""
    from genlab.engines.cuda.executors import EXECUTORS

    monkeypatch.setattr(EXECUTORS["level_push"], "split", 1)

    def two_into_the_output():
        net, cuts = skipping_net()
        net.connect(cuts[1], genlab.OUTPUT)  # c too: the output reads c and d
        net.init_params(4)
        return net, cuts

    monkeypatch.setitem(NETS, "two into the output", two_into_the_output)
    steps_match("two into the output", False, "adam")
