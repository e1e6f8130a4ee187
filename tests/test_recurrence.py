"""Recurrent networks on the serial engine: delayed edges, backpropagation through time checked
against finite differences and against torch.nn.RNN, files, and what stays an error."""

import numpy as np
import pytest

import genlab
from conftest import tangle

from genlab import INPUT, OUTPUT, GraphError, Network, Trainer
from genlab.engines import SerialEngine
from genlab.errors import ArgumentError, DataError
from genlab.optim import SGD


def elman(n_in=3, hidden=(5, 4), n_out=2, seed=0, dtype=np.float64):
    """A stacked Elman RNN built from groups: layer l reads layer l-1 now and itself one step ago."""
    net = Network(n_in, n_out, seed=seed, dtype=dtype)
    prev, layers = INPUT, []
    for width in hidden:
        g = net.add_group(width, inputs=[prev])
        net.connect(g, g, delay=1)
        layers.append(g)
        prev = g
    net.connect(prev, OUTPUT)
    return net, layers


def test_delays_allow_cycles_and_zero_delay_cycles_stay_errors():
    net, (a, b) = elman()
    assert net.recurrent and net.delay(a, a) == 1 and net.delay(INPUT, a) == 0
    net.connect(b, a, delay=2)  # a later group feeding an earlier one
    net.validate()
    c = net.add_group(3, inputs=[a], outputs=[OUTPUT])
    with pytest.raises(GraphError, match="would close the cycle"):
        net.connect(c, a)
    with pytest.raises(GraphError, match="would close the cycle"):
        net.connect(c, c)  # a self-loop needs a delay
    net.connect(c, c, delay=3)
    assert net.levels()[c] == 2 and net.topological_order().index(a) < net.topological_order().index(c)


def test_recurrent_networks_survive_a_file_round_trip(tmp_path):
    net, (a, b) = elman()
    net.connect(b, a, delay=2)
    loaded = Network.load(net.save(tmp_path / "rnn.npz"))
    assert loaded.delays == net.delays and loaded.edges == net.edges
    x = np.random.default_rng(0).normal(size=(4, 6, 3))
    np.testing.assert_array_equal(SerialEngine(loaded, SGD()).forward(x), SerialEngine(net, SGD()).forward(x))


def _loss(engine, x, y):
    engine.forward(x)
    return engine.backward(y)


def test_backpropagation_through_time_matches_finite_differences():
    net, (a, b) = elman(hidden=(4, 3))
    net.connect(b, a, delay=2)
    rng = np.random.default_rng(1)
    for bias in net.biases.values():
        bias[:] = rng.normal(size=bias.shape) * 0.3
    x, y = rng.normal(size=(5, 7, 3)), rng.integers(0, 2, 5)
    engine = SerialEngine(net, SGD(), dtype="float64")
    _loss(engine, x, y)
    grads = {k: g.copy() for k, g in engine.grads.items()}
    eps = 1e-6
    for key, p in engine.params.items():
        for i in rng.choice(p.size, size=min(4, p.size), replace=False):
            old = p.flat[i]
            p.flat[i] = old + eps
            up = _loss(engine, x, y)
            p.flat[i] = old - eps
            down = _loss(engine, x, y)
            p.flat[i] = old
            np.testing.assert_allclose(grads[key].flat[i], (up - down) / (2 * eps), rtol=1e-5, atol=1e-8,
                                       err_msg=str(key))


def test_a_stacked_elman_rnn_matches_torch_nn_rnn_weight_for_weight():
    torch = pytest.importorskip("torch")
    n_in, hidden, n_out, steps, batch = 3, 6, 4, 9, 5
    net, layers = elman(n_in, (hidden, hidden), n_out, seed=2)
    rnn = torch.nn.RNN(n_in, hidden, num_layers=2, nonlinearity="relu", batch_first=True, dtype=torch.float64)
    head = torch.nn.Linear(hidden, n_out, dtype=torch.float64)
    for layer, g in enumerate(layers):
        w_ih, w_hh = getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"weight_hh_l{layer}")
        b_ih, b_hh = getattr(rnn, f"bias_ih_l{layer}"), getattr(rnn, f"bias_hh_l{layer}")
        src = INPUT if layer == 0 else layers[layer - 1]
        net.weights[(src, g)] = w_ih.detach().numpy().copy()
        net.weights[(g, g)] = w_hh.detach().numpy().copy()
        net.biases[g] = (b_ih + b_hh).detach().numpy().copy()
    net.weights[(layers[-1], OUTPUT)] = head.weight.detach().numpy().copy()
    net.biases[OUTPUT] = head.bias.detach().numpy().copy()
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(batch, steps, n_in)), rng.integers(0, n_out, batch)
    engine = SerialEngine(net, SGD(), dtype="float64")
    logits = engine.forward(x)
    loss = engine.backward(y)
    out, _ = rnn(torch.from_numpy(x))
    t_logits = head(out[:, -1])
    t_loss = torch.nn.functional.cross_entropy(t_logits, torch.from_numpy(y))
    t_loss.backward()
    np.testing.assert_allclose(logits, t_logits.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    for layer, g in enumerate(layers):
        src = INPUT if layer == 0 else layers[layer - 1]
        np.testing.assert_allclose(engine.grads[("W", src, g)], getattr(rnn, f"weight_ih_l{layer}").grad.numpy(),
                                   rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(engine.grads[("W", g, g)], getattr(rnn, f"weight_hh_l{layer}").grad.numpy(),
                                   rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(engine.grads[("b", g)], getattr(rnn, f"bias_ih_l{layer}").grad.numpy(),
                                   rtol=1e-10, atol=1e-12)


def test_a_recurrent_network_trains_on_sequences_and_refuses_flat_data():
    net, _ = elman(n_in=2, hidden=(8,), n_out=2, dtype=np.float32)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(256, 10, 2))
    y = (x[:, 2, 0] > 0).astype(np.int64)  # remember step 2 until step 9
    trainer = Trainer(net, backend="serial", lr=1e-2, seed=0)
    before = trainer.evaluate(x, y)["loss"]
    trainer.fit(x, y, epochs=15, progress=False)
    assert trainer.evaluate(x, y)["loss"] < before
    with pytest.raises(DataError, match="3-D"):
        trainer.step(x[:, 0], y)


@pytest.mark.parametrize("kind", ["depth", "width"])
def test_growth_in_a_recurrent_network_keeps_the_function_exactly(kind):
    from genlab.growth import duplicate_depth, duplicate_width

    net, (a, b) = elman(hidden=(5, 4))
    net.connect(b, a, delay=2)
    rng = np.random.default_rng(5)
    for bias in net.biases.values():
        bias[:] = rng.normal(size=bias.shape) * 0.2
    x = rng.normal(size=(6, 8, 3))
    before = SerialEngine(net, SGD(), dtype="float64").forward(x)
    for g in (a, b):
        grow = duplicate_depth if kind == "depth" else duplicate_width
        new = grow(net, g, step=1, seed=0)
        assert any(net.delay(s, d) for s, d in net.edges if new in (s, d))  # the recurrence went along
    net.validate()
    after = SerialEngine(net, SGD(), dtype="float64").forward(x)
    np.testing.assert_allclose(after, before, rtol=1e-12, atol=1e-12)


def test_a_recurrent_network_grows_while_training():
    from genlab import GrowthPolicy

    net, _ = elman(n_in=2, hidden=(4,), n_out=2, dtype=np.float32)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(128, 6, 2))
    y = (x[:, 1, 1] > 0).astype(np.int64)
    trainer = Trainer(net, backend="serial", growth=GrowthPolicy(threshold=0.0, every=4, cooldown=0, max_groups=8))
    trainer.fit(x, y, epochs=4, progress=False)
    assert {e["kind"] for e in trainer.history.events} >= {"depth"} and len(net.groups) == 8
    assert net.recurrent


def test_pruning_a_group_read_through_a_delay_is_refused():
    from genlab.pruning import prune_group

    net, (a, b) = elman(hidden=(4, 3))
    with pytest.raises(GraphError, match="read through a delay"):
        prune_group(net.copy(), a, np.zeros(4))


def test_pruning_a_group_that_reads_itself_by_taylor_score_removes_it_and_its_loop():
    from genlab.pruning import prune_group

    net, (a, b) = elman(hidden=(4, 3))
    extra = net.add_group(2, inputs=[a], outputs=[b])
    net.connect(extra, extra, delay=1)
    removed = prune_group(net, extra, None)  # a Taylor prune folds nothing: the delay does not matter
    assert removed == [extra] and extra not in net.widths and (extra, extra) not in net.weights
    net.validate()
    # and through a trainer: every hidden group's Taylor score under the bar, recurrent loops and all
    X = np.random.default_rng(0).normal(size=(64, 5, 3))
    y = np.arange(64) % 2
    net, (a, b) = elman(hidden=(4, 3))
    net.add_group(2, inputs=[net.input], outputs=[b])  # with it, pruning a or b leaves the output reachable
    trainer = Trainer(net, backend="serial", lr=1e-2, seed=0,
                      growth=genlab.GrowthPolicy(threshold=1e9, every=2, prune_taylor=1e9, patience=2))
    for step in range(8):
        trainer.step(X[step * 8:(step + 1) * 8], y[step * 8:(step + 1) * 8])
    pruned = {e["source"] for e in trainer.history.events}
    assert {e["kind"] for e in trainer.history.events} == {"prune"} and pruned & {a, b}  # a group with a loop went
    trainer.net.validate()


def test_recurrent_edges_are_drawn_dashed_with_their_delay():
    pytest.importorskip("graphviz")
    from genlab import viz

    net, (a, b) = elman()
    net.connect(b, a, delay=2)
    source = viz.draw(net).source
    assert f'g{a} -> g{a} [label="t-1"' in source and f'g{b} -> g{a} [label="t-2"' in source
    assert source.count("style=dashed") == 3 and "recurrent edge" in source


def test_the_unrolled_drawing_has_a_cell_per_step_its_stage_and_its_delayed_edges():
    pytest.importorskip("graphviz")
    import re

    from genlab import viz, wavefront

    net, (a, b) = elman(hidden=(4, 3))
    late = net.add_group(2, outputs=[OUTPUT])  # reads b one step back: its last cell is live, the others not
    net.connect(b, late, delay=1)
    steps = 5
    source = viz.draw_unrolled(net, steps, caption="over time").source
    stage = {cell: k + 1 for k, plan in enumerate(wavefront.stages(net, steps)) for cell in plan}
    for g in (a, b):
        for t in range(steps):
            assert re.search(rf'c{g}_{t} \[label="{g}\nstage {stage[(g, t)]}"', source), (g, t)
    assert re.search(rf'c{OUTPUT}_{steps - 1} \[label="output\nstage {stage[(OUTPUT, steps - 1)]}"', source)
    assert f"c{OUTPUT}_{steps - 2}" not in source  # the output is read at the last step only
    dashed = re.findall(r"(c\d+_\d+) -> (c\d+_\d+) \[[^]]*style=dashed", source)
    expected = {(f"c{g}_{t - 1}", f"c{g}_{t}") for g in (a, b) for t in range(1, steps)}
    expected |= {(f"c{b}_{t - 1}", f"c{late}_{t}") for t in range(1, steps)}
    assert set(dashed) == expected  # every delayed read, from column t - 1 to column t, and no other
    faded = set(re.findall(r'(c\d+_\d+) \[label="[^"]*"[^]]*fontcolor="#bbbbbb"', source))
    assert faded == {f"c{late}_{t}" for t in range(steps - 1)}  # they cannot reach the loss
    assert "over time" in source and "faded" in source
    with pytest.raises(ArgumentError, match="too many to draw"):
        viz.draw_unrolled(net, 200)


def test_every_step_reads_the_output_at_each_step_and_matches_torch():
    torch = pytest.importorskip("torch")
    net, (a,) = elman(n_in=3, hidden=(5,), n_out=4, seed=7)
    rnn = torch.nn.RNN(3, 5, nonlinearity="relu", batch_first=True, dtype=torch.float64)
    head = torch.nn.Linear(5, 4, dtype=torch.float64)
    net.weights[(INPUT, a)], net.weights[(a, a)] = rnn.weight_ih_l0.detach().numpy().copy(), rnn.weight_hh_l0.detach().numpy().copy()
    net.biases[a] = (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach().numpy().copy()
    net.weights[(a, OUTPUT)], net.biases[OUTPUT] = head.weight.detach().numpy().copy(), head.bias.detach().numpy().copy()
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(6, 5, 3)), rng.integers(0, 4, (6, 5))
    engine = SerialEngine(net, SGD(), dtype="float64")
    engine.every_step = True
    logits = engine.forward(x)
    loss = engine.backward(y)
    t_logits = head(rnn(torch.from_numpy(x))[0])
    t_loss = torch.nn.functional.cross_entropy(t_logits.reshape(-1, 4), torch.from_numpy(y).reshape(-1))
    t_loss.backward()
    np.testing.assert_allclose(logits, t_logits.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    np.testing.assert_allclose(engine.grads[("W", a, a)], rnn.weight_hh_l0.grad.numpy(), rtol=1e-10, atol=1e-12)
    trainer = Trainer(net, backend="serial", every_step=True)
    assert trainer.predict(x).shape == (6, 5) and 0 <= trainer.evaluate(x, y)["accuracy"] <= 1
    trainer.fit(x, y, epochs=2, progress=False)
    with pytest.raises(DataError, match="a label per sample and step"):
        trainer.step(x, y[:, 0])
    from genlab.errors import ArgumentError
    with pytest.raises(ArgumentError, match="no edge with a delay"):
        Trainer(Network.mlp([3, 4, 2]), backend="serial", every_step=True)


@pytest.mark.parametrize("layers, steps", [(1, 5), (3, 7), (4, 4), (8, 16)])
def test_the_wavefront_of_stacked_layers_takes_l_plus_t_minus_one_stages(layers, steps):
    from genlab import wavefront

    net, groups = elman(hidden=[4] * layers)
    plan = wavefront.stages(net, steps)
    hidden = [[c for c in stage if c[0] != OUTPUT] for stage in plan]
    assert len([s for s in hidden if s]) == layers + steps - 1
    for k, stage in enumerate(hidden):  # stage k holds the anti-diagonal l + t = k
        assert sorted(stage) == sorted((groups[l], k - l) for l in range(layers) if 0 <= k - l < steps)
    assert plan[-1] == [(OUTPUT, steps - 1)]
    assert wavefront.ideal_speedup(net, steps) == pytest.approx(layers * steps / (layers + steps - 1))


def test_running_the_cells_in_wavefront_order_gives_the_same_bits():
    from genlab import wavefront
    from genlab.engines import through_time

    net, (a, b, c) = elman(hidden=(4, 5, 3))
    net.connect(c, a, delay=2)
    net.connect(INPUT, c)
    x = np.random.default_rng(9).normal(size=(4, 9, 3))
    engine = SerialEngine(net, SGD(), dtype="float64")
    major = engine.forward(x)
    skewed = through_time.forward(engine, x, [cell for stage in wavefront.stages(net, 9) for cell in stage])
    np.testing.assert_array_equal(skewed, major)
    with pytest.raises(KeyError):  # an order that reads a cell before it is made fails loudly
        through_time.forward(engine, x, list(reversed(wavefront.cells(net, 9))))


def test_a_recurrent_network_exports_to_torch():
    torch = pytest.importorskip("torch")
    from genlab import to_torch

    net, (a, b) = elman(hidden=(5, 4))
    net.connect(b, a, delay=2)
    x = np.random.default_rng(10).normal(size=(3, 7, 3))
    module = to_torch(net)
    np.testing.assert_allclose(module(torch.from_numpy(x)).detach().numpy(),
                               SerialEngine(net, SGD(), dtype="float64").forward(x), rtol=1e-12, atol=1e-12)


def test_the_demo_grows_a_recurrent_network_on_sequences(tmp_path):
    pytest.importorskip("graphviz")  # the demo draws (the GPU image has no graphviz package)
    pytest.importorskip("PIL")
    import json
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "genlab", "demo", "--dataset", "digits_rows", "--epochs", "2",
                             "--out", str(tmp_path / "demo"), "--quiet", "--json"], capture_output=True, text=True,
                            env={**__import__("os").environ, "GENLAB_BACKEND": "serial"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["traditional"]["recurrent"] is True and (tmp_path / "demo" / "dag.svg").exists()
    assert abs(report["traditional"]["parameters"] - report["grown"]["parameters"]) <= 0.2 * report["grown"]["parameters"]


def _tangled(seed=11):
    """Stacked layers, a back edge of delay 2, an input read one step late, and a group fed only
    through a delay (it gives relu(bias) at the first step)."""
    net, (a, b) = elman(hidden=(5, 4), seed=seed)
    return tangle(net, a, b, widths=(3, 2), seed=seed, scale=0.3)


@pytest.mark.parametrize("steps", [1, 2, 6])
def test_the_unrolled_network_computes_the_same_function_and_gradients(steps):
    from genlab.unroll import flatten, summed_grads, unroll, unrolled_params

    net = _tangled()
    u = unroll(net, steps)
    rng = np.random.default_rng(12)
    x, y = rng.normal(size=(5, steps, 3)), rng.integers(0, 2, 5)
    through_time = SerialEngine(net, SGD(), dtype="float64")
    through_time.forward(x)
    loss = through_time.backward(y)
    dag = SerialEngine(u.net, SGD(), dtype="float64")
    c = net.hidden_groups[2]  # it feeds only the output: its cells before the last step are left out
    assert not u.net.recurrent and [t for (g, t) in u.cells if g == c] == [steps - 1]
    for key, value in unrolled_params(u, through_time.params).items():
        np.testing.assert_array_equal(dag.params[key], value)
    dag.forward(flatten(x))
    np.testing.assert_allclose(dag.backward(y), loss, rtol=1e-13)
    np.testing.assert_allclose(dag._h[OUTPUT], through_time._h[-1][OUTPUT], rtol=1e-12, atol=1e-12)
    for key, g in summed_grads(u, dag.grads, through_time.params).items():
        np.testing.assert_allclose(g, through_time.grads[key], rtol=1e-10, atol=1e-12, err_msg=str(key))


def test_unrolled_cells_follow_the_wavefront():
    from genlab import wavefront
    from genlab.unroll import unroll

    net, groups = elman(hidden=[4] * 3)
    u = unroll(net, 5)
    level = u.net.levels()
    for k, stage in enumerate(wavefront.stages(net, 5)):
        assert {level[u.cells[cell]] for cell in stage} == {k + 1}  # a stage is a level of the unrolled DAG


@pytest.mark.parametrize("layers, steps", [(1, 4), (3, 5)])
def test_time_major_unrolling_runs_step_after_step_with_the_same_results(layers, steps):
    from genlab.unroll import flatten, summed_grads, unroll, unrolled_params

    net, groups = elman(hidden=[4] * layers)
    skew, major = unroll(net, steps), unroll(net, steps, time_major=True)
    level = major.net.levels()
    for (g, t), cell in major.cells.items():
        if g != OUTPUT:
            assert level[cell] == t * layers + groups.index(g) + 1  # one step after another
    assert max(skew.net.levels().values()) == layers + steps  # the wavefront: L + T - 1 stages, then the output
    rng = np.random.default_rng(13)
    x, y = rng.normal(size=(4, steps, 3)), rng.integers(0, 2, 4)
    results = []
    for u in (skew, major):
        engine = SerialEngine(u.net, SGD(), dtype="float64")
        for key, value in unrolled_params(u, SerialEngine(net, SGD(), dtype="float64").params).items():
            engine.params[key][...] = value
        engine.forward(flatten(x))
        results.append((engine.backward(y), summed_grads(u, engine.grads, SerialEngine(net, SGD()).params)))
    assert results[0][0] == results[1][0]
    for key in results[0][1]:
        np.testing.assert_array_equal(results[0][1][key], results[1][1][key])
