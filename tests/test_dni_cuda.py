"""Synthetic gradients (genlab.DNI) on the CUDA engine (genlab/engines/cuda/decoupled.py,
cuda/dni.cu) against the decoupled serial engine in float64: on the CPU-emulated GPU here (the
kernels' own source), on a GPU with `pytest -m gpu`."""

import numpy as np
import pytest

import genlab
from genlab.asynchronous.decoupled import DecoupledEngine
from genlab.errors import BackendError, TrainingError
from genlab.optim import make_optimizer

from test_cuda_on_cpu import assert_steps_match


def skipping_net():
    """a -> b -> c -> d -> output, a skipping to c and b to d: cut after b and after c, every part
    boundary has two crossing edges, c's module learns from targets that d's backward makes."""
    net = genlab.Network(8, 3, seed=4)
    a = net.add_group(6, inputs=[genlab.INPUT])
    b = net.add_group(37, inputs=[a])  # two tiles of 32 neurons
    c = net.add_group(7, inputs=[b, a])
    d = net.add_group(5, inputs=[c, b])
    net.connect(d, genlab.OUTPUT)
    return net, (b, c)


def mlp():
    net = genlab.Network.mlp([10, 12, 9, 3], seed=2)
    return net, (net.hidden_groups[0],)


NETS = {"mlp": mlp, "skipping": skipping_net}


def data(net, n=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, net.n_inputs)).astype(np.float32), rng.integers(0, net.n_outputs, n)


def pair(net, cuts, conditioned, optimizer="adam", lr=0.01):
    from genlab.engines.cuda.decoupled import DecoupledCudaEngine

    gpu = DecoupledCudaEngine(net.copy(), make_optimizer(optimizer, lr), "float32", cuts, conditioned, lr=0.01)
    ref = DecoupledEngine(net.copy(), make_optimizer(optimizer, lr), "float64", cuts, conditioned, lr=0.01)
    return gpu, ref


def assert_same_modules(gpu, ref):
    mine, theirs = gpu.interfaces, ref.interfaces
    assert set(mine) == set(theirs) == ref.boundary == gpu.boundary
    for g, m in theirs.items():
        for name, value in m.params.items():
            np.testing.assert_allclose(mine[g].params[name], value, rtol=1e-3, atol=1e-5, err_msg=f"{g} {name}")


def steps_match(net_name, conditioned, optimizer):
    net, cuts = NETS[net_name]()
    gpu, ref = pair(net, cuts, conditioned, optimizer)
    assert gpu.crossing == ref.crossing and gpu.part == ref.part
    x, y = data(net)
    for _ in range(4):
        loss, correct = gpu.step(x, y)
        ref_loss, ref_correct = ref.step(x, y)
        assert loss == pytest.approx(ref_loss, rel=1e-4) and correct == ref_correct
        assert gpu.errors[-1].keys() == ref.errors[-1].keys()
        for g, error in ref.errors[-1].items():
            assert gpu.errors[-1][g] == pytest.approx(error, rel=1e-3, abs=1e-6), g
    x2, y2 = data(net, 50, seed=1)  # a larger batch: the predictions' and targets' rows grow
    assert_steps_match(gpu, ref, x2, y2, steps=1)  # and the statistics and parameters agree
    assert_same_modules(gpu, ref)
    assert len(gpu.errors) == 5 and all(0 < e for e in gpu.errors[-1].values())


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("conditioned", [False, True])
@pytest.mark.parametrize("net_name", NETS)
def test_the_cut_step_on_the_gpus_kernels_is_the_serial_engines(cpu_gpu, net_name, conditioned, optimizer):
    steps_match(net_name, conditioned, optimizer)


@pytest.mark.gpu
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("conditioned", [False, True])
@pytest.mark.parametrize("net_name", NETS)
def test_the_cut_step_on_a_gpu_is_the_serial_engines(net_name, conditioned, optimizer):
    steps_match(net_name, conditioned, optimizer)


def test_the_earlier_part_takes_the_prediction_and_the_later_part_is_exact(cpu_gpu):
    """With the modules at zero, the earlier part gets no gradient at all, and the later part's
    gradients are backprop's; the module's target is the true share."""
    from genlab.engines.cuda import CudaEngine

    net, (low,) = mlp()
    gpu, _ = pair(net, (low,), True, "sgd")
    exact = CudaEngine(net.copy(), make_optimizer("sgd", 0.01), executor="level_push")
    x, y = data(net)
    for e in (gpu, exact):
        e.forward(x)
        e.backward(y)
    for key, g in exact.grads.items():
        if key[-1] == low or key == ("W", genlab.INPUT, low):
            assert not gpu.grads[key].any(), key
        else:
            np.testing.assert_allclose(gpu.grads[key], g, rtol=1e-5, atol=1e-7, err_msg=str(key))
    assert gpu.errors[-1] == {low: 1.0}  # a zero prediction misses the whole truth


def test_one_call_at_a_time_computes_the_step(cpu_gpu):
    net, cuts = skipping_net()
    a, _ = pair(net, cuts, True)
    b, _ = pair(net, cuts, True)
    x, y = data(net)
    for _ in range(2):
        a.step(x, y)
        b.forward(x)
        b.backward(y)
        b.update()
        assert a.errors[-1] == pytest.approx(b.errors[-1], rel=1e-6)
    for key, p in a.params.items():
        np.testing.assert_allclose(b.params[key], p, rtol=1e-6, atol=1e-7, err_msg=str(key))
    for g, m in a.interfaces.items():
        for name, value in m.params.items():
            np.testing.assert_allclose(b.interfaces[g].params[name], value, rtol=1e-6, atol=1e-7)


def test_a_step_that_is_not_finite_changes_neither_network_nor_modules(cpu_gpu):
    net, cuts = skipping_net()
    gpu, _ = pair(net, cuts, True)
    x, y = data(net)
    gpu.step(x, y)
    before = {k: v.copy() for k, v in gpu.params.items()}
    modules = {g: {n: v.copy() for n, v in m.params.items()} for g, m in gpu.interfaces.items()}
    bad = x.copy()
    bad[3, 2] = np.inf
    with pytest.raises(TrainingError):
        gpu.step(bad, y)
    for key, value in gpu.params.items():
        np.testing.assert_array_equal(value, before[key])
    for g, m in gpu.interfaces.items():
        for name, value in m.params.items():
            np.testing.assert_array_equal(value, modules[g][name])
    gpu.step(x, y)  # and the next step trains
    assert any(not np.array_equal(gpu.params[k], before[k]) for k in before)


def test_growth_moves_the_cut_and_keeps_the_modules_as_the_serial_engine_does(cpu_gpu):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 12)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) > 0).astype(np.int64) + (X[:, 3] > 1)
    net = genlab.Network.mlp([12, 8, 6, 3], seed=1)
    cut = net.hidden_groups[0]
    policy = dict(threshold=0.0, every=4, cooldown=4, max_groups=7, mode="alternate")
    runs = {}
    for backend in ("serial", "cuda"):
        t = genlab.Trainer(net.copy(), backend=backend, lr=1e-2, seed=0, growth=genlab.GrowthPolicy(**policy),
                           decouple=genlab.DNI([cut], conditioned=True, lr=0.01))
        for step in range(18):
            t.step(X[step * 16 % 256:][:16], y[step * 16 % 256:][:16])
        runs[backend] = t
    serial, cuda = runs["serial"], runs["cuda"]
    events = [(e["kind"], e["source"], e["new"]) for e in serial.history.events]
    assert len(events) >= 3 and events == [(e["kind"], e["source"], e["new"]) for e in cuda.history.events]
    e = cuda.engine
    assert e.crossing == serial.engine.crossing and e.boundary == {s for s, _ in e.crossing}
    assert all(e.part[s] < e.part[g] for s, g in e.crossing)
    assert set(e.errors[-1]) == e.boundary
    assert_same_modules(e, serial.engine)
    np.testing.assert_allclose(cuda.logits(X[:64]), serial.logits(X[:64]), rtol=2e-3, atol=2e-3)


def test_the_cuda_engine_says_where_its_synthetic_gradients_run(cpu_gpu):
    net, cuts = mlp()
    t = genlab.Trainer(net.copy(), backend="cuda", decouple=genlab.DNI(cuts))
    assert type(t.engine).__name__ == "DecoupledCudaEngine" and t.engine.executor.name == "level_push"
    for executor in ("level", "dataflow_rows"):
        with pytest.raises(BackendError, match="level_push"):
            genlab.Trainer(net.copy(), backend="cuda", executor=executor, decouple=genlab.DNI(cuts))
    conv = genlab.Network.conv_chain((1, 6, 6), [2], 3, seed=0)
    with pytest.raises(BackendError, match="conv"):
        genlab.Trainer(conv, backend="cuda", decouple=genlab.DNI([conv.hidden_groups[0]]))
    rnn = genlab.Network.elman(4, [6], 3)
    with pytest.raises(BackendError, match="delay"):
        genlab.Trainer(rnn, backend="cuda", decouple=genlab.DNI([rnn.hidden_groups[0]]))
    with pytest.raises(BackendError, match="schedule of the CUDA engine"):
        genlab.Trainer(net.copy(), backend="serial", executor="level", decouple=genlab.DNI(cuts))


def test_each_part_pushes_its_own_groups_on_a_stream_of_its_own(cpu_gpu):
    """Every task of the layout's backward, weight-gradient and bias lists in exactly one part's,
    the part of the group it computes; each part on a stream of its own."""
    import pycuda.driver as drv

    net, cuts = skipping_net()
    gpu, _ = pair(net, cuts, False)
    L, m = gpu.layout, gpu.modules
    assert len(m.streams) == len(set(gpu.part.values())) == 3 and len(set(map(id, m.streams))) == 3

    def read(address, rows, width):
        out = np.empty((rows, width), np.int32)
        if rows:
            drv.memcpy_dtoh(out, address)
        return out

    in_dst = read(gpu.dev.csr.in_dst, 1, L.n_edges)[0]
    seen = {"push": [], "weight": [], "bias": []}
    for part, p in zip(m.parts, sorted(set(gpu.part.values()))):
        pushes = read(part.tasks, sum(count for _, _, count in part.levels), 2)
        weights, biases = read(part.weight, part.n_weight, 3), read(part.bias, part.n_bias, 2)
        mask = read(part.hidden, 1, len(L.groups))[0]
        groups = {L.groups[slot] for slot in pushes[:, 0]}
        assert groups and all(gpu.part[g] == p for g in groups)
        assert all(gpu.part[L.groups[in_dst[e]]] == p for e in weights[:, 0])
        assert all(gpu.part[L.groups[slot]] == p for slot in biases[:, 0])
        assert {L.groups[s] for s in np.flatnonzero(mask)} == {g for g in groups if g != genlab.OUTPUT}
        for name, tasks in (("push", pushes), ("weight", weights), ("bias", biases)):
            seen[name] += list(map(tuple, tasks))
    tasks = gpu.dev.tasks
    everything = {"push": read(tasks.first.backward_tasks, L.n_backward_tasks + L.push_levels[0][1], 2),
                  "weight": read(tasks.first.weight_tasks, L.tiers[""][2], 3),
                  "bias": read(tasks.bias_tasks, L.n_bias_tasks, 2)}
    for name, tasks in everything.items():
        assert sorted(seen[name]) == sorted(map(tuple, tasks)), name  # every task once, in one part


@pytest.mark.parametrize("feature, at", [("growth_depth", 0), ("growth_width", 0), ("growth_auto", 0),
                                         ("growth_top_rule", 0), ("criterion_taylor", 0), ("prune_ranges", 0),
                                         ("prune_ranges", 1), ("sgd", 0)])
def test_growth_and_pruning_features_cut_the_same_way_on_both_engines(cpu_gpu, feature, at):
    """Every growth feature with a cut, on both engines; at 1 the cut is the dead group pruning
    would remove: it is kept (Engine.pinned) and the run goes on."""
    from test_engine_features import FEATURES, dag, data

    options, steps, _ = FEATURES[feature]
    X, y = data("dag")
    net = dag()
    cut = net.hidden_groups[at]
    runs = {}
    for backend in ("serial", "cuda"):
        t = genlab.Trainer(net.copy(), backend=backend, seed=0, **({"lr": 1e-2} | options),
                           decouple=genlab.DNI([cut], conditioned=True, lr=0.01))
        for step in range(steps):
            rows = slice((step * 32) % len(y), (step * 32) % len(y) + 32)
            t.step(X[rows], y[rows])
        runs[backend] = t
    serial, cuda = runs["serial"], runs["cuda"]
    assert [(e["kind"], e["source"], e["new"]) for e in serial.history.events] == \
        [(e["kind"], e["source"], e["new"]) for e in cuda.history.events]
    assert cuda.engine.crossing == serial.engine.crossing and cut in cuda.net.groups
    if feature == "prune_ranges" and at == 0:
        assert any(e["kind"] == "prune" for e in cuda.history.events)
    np.testing.assert_allclose(cuda.logits(X[:64]), serial.logits(X[:64]), rtol=2e-3, atol=2e-3)


def test_a_checkpoint_keeps_the_modules_on_either_engine(cpu_gpu, tmp_path):
    net, cuts = skipping_net()
    X, y = data(net, 64)
    t = genlab.Trainer(net, backend="cuda", seed=0, decouple=genlab.DNI(cuts, conditioned=True, lr=0.01))
    for i in range(3):
        t.step(X[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16])
    t.save(tmp_path / "run.ckpt")
    saved = {g: {n: v.copy() for n, v in m.params.items()} for g, m in t.engine.interfaces.items()}
    again = genlab.Trainer.load(tmp_path / "run.ckpt", backend="cuda")
    serial = genlab.Trainer.load(tmp_path / "run.ckpt", backend="serial")
    for other in (again, serial):
        assert set(other.engine.interfaces) == set(saved)
        for g, m in other.engine.interfaces.items():
            for name, value in m.params.items():
                np.testing.assert_array_equal(value, saved[g][name])
    for r in (t, again, serial):
        r.step(X[48:64], y[48:64])
    for g, m in t.engine.interfaces.items():  # Adam's state came back too: the next step is the same
        for name, value in m.params.items():
            np.testing.assert_array_equal(again.engine.interfaces[g].params[name], value)
            np.testing.assert_allclose(serial.engine.interfaces[g].params[name], value, rtol=1e-4, atol=1e-6)
