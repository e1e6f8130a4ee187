"""Decoupled neural interfaces (genlab.DNI): synthetic-gradient modules at cuts of the network."""

import numpy as np
import pytest

import genlab
from genlab.asynchronous.decoupled import DecoupledEngine
from genlab.cuts import Interface, parts
from genlab.engines.serial import SerialEngine
from genlab.errors import ArgumentError, ArgumentTypeError, BackendError, GraphError
from genlab.optim import make_optimizer


@pytest.fixture(scope="module")
def digits():
    return genlab.datasets.load("digits")


@pytest.mark.parametrize("conditioned", [False, True])
def test_a_modules_gradients_match_finite_differences(conditioned):
    rng = np.random.default_rng(0)
    m = Interface(5, 3, conditioned, np.float64)
    for p in m.params.values():
        p[...] = rng.normal(size=p.shape)
    h, y, target = rng.normal(size=(7, 5)), rng.integers(0, 3, 7), rng.normal(size=(7, 5))
    _, grads = m.loss_and_grads(h, y, target)
    eps = 1e-6
    for name, p in m.params.items():
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + eps
            up = m.loss_and_grads(h, y, target)[0]
            p[i] = old - eps
            down = m.loss_and_grads(h, y, target)[0]
            p[i] = old
            assert grads[name][i] == pytest.approx((up - down) / (2 * eps), rel=1e-6, abs=1e-8)


def test_parts_follow_dependencies_and_skip_edges():
    net = genlab.Network(4, 2)
    a = net.add_group(3, inputs=[genlab.INPUT])
    b = net.add_group(3, inputs=[a])
    c = net.add_group(3, inputs=[b, a])  # a skips over the cut at b
    net.connect(c, genlab.OUTPUT)
    p = parts(net, (b,))
    assert p[a] == p[b] == p[genlab.INPUT] == 0 and p[c] == p[genlab.OUTPUT] == 1
    e = DecoupledEngine(net, make_optimizer("sgd", 0.1), "float64", (b,), False)
    assert e.crossing == {(b, c), (a, c)} and e.boundary == {a, b}


def test_the_later_part_is_exact_and_the_module_learns_the_true_share(digits):
    net = genlab.Network.mlp([digits.n_features, 12, 10, digits.n_classes], seed=2)
    net.astype("float64")
    low, high = net.hidden_groups
    exact = SerialEngine(net.copy(), make_optimizer("sgd", 0.1), "float64")
    cut = DecoupledEngine(net.copy(), make_optimizer("sgd", 0.1), "float64", (low,), True, lr=0.01)
    x, y = digits.X_train[:40], digits.y_train[:40]
    for e in (exact, cut):
        e.forward(x)
        e.backward(y)
    for key, g in exact.grads.items():
        if key[-1] == low or key == ("W", genlab.INPUT, low):  # the earlier part: no gradient from a zero module
            assert not cut.grads[key].any()
        else:
            np.testing.assert_array_equal(cut.grads[key], g)  # the later part: exact backprop
    h, yy, target, _ = cut._pending[low]
    np.testing.assert_allclose(target / len(x), exact._pooled[low][0], rtol=1e-12)  # the true share, per sample
    assert cut.errors[-1] == {low: 1.0}
    # with the network held still (learning rate 0), the module learns the true share of this batch
    cut.optimizer.lr = 0.0
    for _ in range(200):
        cut.step(x, y)
    assert 0 < cut.errors[-1][low] < 0.5


def test_cdni_trains_digits_close_to_backprop(digits):
    net = genlab.Network.mlp([digits.n_features, 32, 32, digits.n_classes], seed=1)
    acc = {}
    for name, dec in (("exact", None), ("dni", genlab.DNI([net.hidden_groups[0]])),
                      ("cdni", genlab.DNI(net.hidden_groups, conditioned=True))):
        t = genlab.Trainer(net.copy(), backend="serial", seed=3, decouple=dec)
        t.fit(digits.X_train, digits.y_train, epochs=10, progress=False)
        acc[name] = t.evaluate(digits.X_test, digits.y_test)["accuracy"]
    assert acc["exact"] > 0.92 and acc["cdni"] > acc["exact"] - 0.03 and acc["dni"] > acc["exact"] - 0.08, acc


def test_growth_moves_the_cut_with_the_network(digits):
    net = genlab.Network.mlp([digits.n_features, 16, digits.n_classes], seed=1)
    cut = net.hidden_groups[0]
    t = genlab.Trainer(net, backend="serial", seed=0, decouple=genlab.DNI([cut], conditioned=True),
                       growth=genlab.GrowthPolicy(every=10, threshold=0.0, max_groups=8))
    t.fit(digits.X_train, digits.y_train, epochs=3, progress=False)
    assert t.history.events and len(t.net.groups) > 3
    e = t.engine
    assert e.boundary == {s for s, g in e.crossing}
    assert all(e.part[s] == 0 and e.part[g] == 1 for s, g in e.crossing)
    assert set(e.errors[-1]) == e.boundary
    assert t.evaluate(digits.X_test, digits.y_test)["accuracy"] > 0.7


def test_bad_dni_settings_are_refused(digits):
    net = genlab.Network.mlp([digits.n_features, 8, digits.n_classes])
    with pytest.raises(ArgumentError):
        genlab.DNI([])
    with pytest.raises(ArgumentError, match="repeat"):
        genlab.DNI([2, 2])
    with pytest.raises(ArgumentTypeError):
        genlab.DNI(["a"])
    with pytest.raises(ArgumentTypeError, match="genlab.DNI"):
        genlab.Trainer(net, backend="serial", decouple="dni")
    with pytest.raises(GraphError, match="not a hidden group"):
        genlab.Trainer(net, backend="serial", decouple=genlab.DNI([genlab.OUTPUT]))
    with pytest.raises(ArgumentError, match="do not go together"):
        genlab.Trainer(net, backend="serial", decouple=genlab.DNI([2]), parallel=genlab.Hogwild(2))
    rnn = genlab.Network.elman(4, [6], 3)
    with pytest.raises(BackendError, match="delay"):
        genlab.Trainer(rnn, backend="serial", decouple=genlab.DNI([rnn.hidden_groups[0]]))


def test_partitioned_synthetic_gradients_match_the_decoupled_serial_engine(tmp_path):
    """Two CPU processes, a pipeline partition of an MLP: the earlier process takes its backward
    from the module without waiting, and the run equals the serial engine cut at the same groups
    to float32 rounding (tests/workers/dni.py)."""
    pytest.importorskip("torch")
    import json

    from test_distributed import WORKERS, torchrun

    torchrun([str(WORKERS / "dni.py"), str(tmp_path)], 2)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for r in ranks:
        assert r["cut_edges"] >= 1 and r["loss"] < 1e-4 and r["params"] < 1e-5 and r["errors"] < 1e-4, r
    assert sum(r["modules"] for r in ranks) == ranks[0]["cut_edges"]  # one module a message, on its sender


def test_synthetic_gradients_say_where_they_can_run():
    net = genlab.Network.mlp([4, 6, 3])
    with pytest.raises(ArgumentError, match="cuts="):
        genlab.Trainer(net, backend="serial", decouple=genlab.DNI())
    pytest.importorskip("torch")
    from genlab.distributed import World

    world = World.alone()
    with pytest.raises(ArgumentError, match="partition's"):
        genlab.Trainer(net, backend="serial", distributed="partitioned", world=world, decouple=genlab.DNI([2]))
    with pytest.raises(ArgumentError, match="one process or"):
        genlab.Trainer(net, backend="serial", distributed="data", world=world, decouple=genlab.DNI([2]))


def test_the_command_line_runs_synthetic_gradients_over_two_processes():
    pytest.importorskip("torch")
    import json

    from test_distributed import torchrun

    done = torchrun(["-m", "genlab", "train", "--dataset", "digits", "--hidden", "64,32", "--distributed",
                     "partitioned", "--decouple", "cdni", "--epochs", "6", "--json", "--quiet"], 2)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["decouple"] == "cdni" and report["processes"] == 2 and 0 < report["module_error"]
    assert report["test_accuracy"] > 0.8


@pytest.mark.parametrize("conditioned", [False, True])
def test_a_checkpoint_keeps_the_modules_and_the_run_continues_bit_for_bit(digits, tmp_path, conditioned):
    net = genlab.Network.mlp([digits.n_features, 16, 12, digits.n_classes], seed=1)
    X, y = digits.X_train, digits.y_train
    t = genlab.Trainer(net, backend="serial", seed=0, decouple=genlab.DNI(net.hidden_groups, conditioned=conditioned))
    for i in range(5):
        t.step(X[i * 32:(i + 1) * 32], y[i * 32:(i + 1) * 32])
    t.save(tmp_path / "run.ckpt")
    back = genlab.Trainer.load(tmp_path / "run.ckpt", backend="serial")
    assert back.engine.cuts == t.engine.cuts and back.engine.conditioned == conditioned
    for r in (t, back):
        for i in range(5, 9):
            r.step(X[i * 32:(i + 1) * 32], y[i * 32:(i + 1) * 32])
    assert back.engine.errors[-1] == t.engine.errors[-1]
    for g, m in t.engine.interfaces.items():
        for name, value in m.params.items():
            np.testing.assert_array_equal(back.engine.interfaces[g].params[name], value)
    for k, w in t.net.weights.items():
        np.testing.assert_array_equal(back.net.weights[k], w)


def test_a_checkpoint_whose_module_does_not_fit_is_refused(digits, tmp_path):
    import zipfile

    net = genlab.Network.mlp([digits.n_features, 8, digits.n_classes], seed=1)
    t = genlab.Trainer(net, backend="serial", seed=0, decouple=genlab.DNI(net.hidden_groups))
    t.step(digits.X_train[:32], digits.y_train[:32])
    t.save(tmp_path / "run.ckpt")
    g = net.hidden_groups[0]
    with zipfile.ZipFile(tmp_path / "run.ckpt") as z, zipfile.ZipFile(tmp_path / "bad.ckpt", "w") as out:
        for item in z.infolist():
            data = z.read(item)
            if item.filename == f"dni/{g}/W.npy":
                import io
                buf = io.BytesIO()
                np.save(buf, np.zeros((3, 3), np.float32))
                data = buf.getvalue()
            out.writestr(item, data)
    with pytest.raises(genlab.FileFormatError, match="module"):
        genlab.Trainer.load(tmp_path / "bad.ckpt", backend="serial")
