import re
import json

import numpy as np
import pytest
from conftest import assert_unchanged, snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from genlab import INPUT, OUTPUT, FileFormatError, GraphError, Network, Trainer


def diamond():
    """input -> a, b -> c -> output, with a -> b as well."""
    net = Network(3, 2, seed=1)
    a = net.add_group(4, inputs=[INPUT])
    b = net.add_group(5, inputs=[INPUT, a])
    c = net.add_group(6, inputs=[a, b], outputs=[OUTPUT])
    return net, a, b, c


def test_build_by_hand():
    net, a, b, c = diamond()
    assert (a, b, c) == (2, 3, 4)
    assert net.groups == [0, 1, 2, 3, 4] and net.hidden_groups == [2, 3, 4]
    assert net.edges == [(0, 2), (0, 3), (2, 3), (2, 4), (3, 4), (4, 1)]
    assert net.inputs(c) == [a, b] and net.outputs(a) == [b, c]
    assert net.weights[(a, c)].shape == (6, 4) and net.biases[c].shape == (6,)
    assert net.n_params == 4 * 3 + 5 * 3 + 5 * 4 + 6 * 4 + 6 * 5 + 2 * 6 + (4 + 5 + 6 + 2)
    assert net.levels() == {0: 0, 2: 1, 3: 2, 4: 3, 1: 4}
    assert net.topological_order() == [0, 2, 3, 4, 1]
    net.validate()


def test_summary_lists_every_group():
    net, *_ = diamond()
    text = net.summary()
    assert "5 groups, 6 edges" in text and f"{net.n_params} parameters" in text and "depth 4" in text
    assert len(text.splitlines()) == 1 + 5 + 1


def test_mlp_is_a_chain():
    net = Network.mlp([64, 32, 16, 10])
    assert net.widths == {0: 64, 1: 10, 2: 32, 3: 16}
    assert net.edges == [(0, 2), (2, 3), (3, 1)]
    assert net.n_params == 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    # He-normal over the fan-in
    assert abs(net.weights[(0, 2)].std() - np.sqrt(2 / 64)) < 0.02


def test_random_dag_shape_and_fan_in():
    net = Network.random_dag(levels=6, per_level=10, width=(1, 7), fan_in=4, seed=3, n_inputs=5, n_outputs=3)
    level = net.levels()
    hidden = net.hidden_groups
    assert len(hidden) == 60
    for g in hidden:
        ins = net.inputs(g)
        assert 1 <= len(ins) <= 4 and len(set(ins)) == len(ins)
        assert max(level[s] for s in ins) == level[g] - 1  # one input at least from the previous level
        assert min(level[s] for s in ins) >= level[g] - 2  # all from the previous two levels
    # the same seed gives the same network, another seed another one
    again = Network.random_dag(levels=6, per_level=10, width=(1, 7), fan_in=4, seed=3, n_inputs=5, n_outputs=3)
    assert again.edges == net.edges and all(np.array_equal(again.weights[e], net.weights[e]) for e in net.edges)
    assert Network.random_dag(levels=6, per_level=10, width=(1, 7), fan_in=4, seed=4,
                              n_inputs=5, n_outputs=3).edges != net.edges


@settings(max_examples=40, deadline=None)
@given(levels=st.integers(1, 6), per_level=st.integers(1, 6), fan_in=st.integers(1, 5),
       seed=st.integers(0, 10_000))
def test_random_dags_are_valid(levels, per_level, fan_in, seed):
    net = Network.random_dag(levels, per_level, width=(1, 9), fan_in=fan_in, seed=seed, n_inputs=3, n_outputs=2)
    net.validate()
    level = net.levels()
    order = net.topological_order()
    position = {g: i for i, g in enumerate(order)}
    for s, d in net.edges:
        assert level[d] > level[s] and position[d] > position[s]
        assert net.weights[(s, d)].shape == (net.widths[d], net.widths[s])
    assert order[0] == INPUT and order[-1] == OUTPUT
    # each level is the longest path from the input (one above the highest input), keyed in Kahn's order
    assert list(level) == order
    assert all(level[g] == 1 + max((level[s] for s in net.inputs(g)), default=-1) for g in net.groups)
    assert net.n_params == sum(w.size for w in net.weights.values()) + sum(net.widths[g] for g in net.groups[1:])


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, message", [
    (lambda n, a, b, c: n.connect(c, a), "edge 4 -> 2 would close the cycle 4 -> 2 -> 4"),
    (lambda n, a, b, c: n.connect(b, b), "edge 3 -> 3 would close the cycle 3 -> 3"),
    (lambda n, a, b, c: n.connect(a, 99), "destination: group 99 does not exist"),
    (lambda n, a, b, c: n.connect(77, a), "source: group 77 does not exist"),
    (lambda n, a, b, c: n.connect(a, b), "edge 2 -> 3 already exists"),
    (lambda n, a, b, c: n.connect(a, INPUT), "the input group 0 cannot have inputs"),
    (lambda n, a, b, c: n.connect(OUTPUT, a), "the output group 1 cannot feed another group"),
    (lambda n, a, b, c: n.connect(INPUT, c, weight=np.ones((3, 6))),
     "width mismatch on edge 0 -> 4: weight block is (3, 6), expected (6, 3)"),
    (lambda n, a, b, c: n.add_group(0, inputs=[a]), "a group needs a positive integer width, got 0"),
    (lambda n, a, b, c: n.add_group(-3, inputs=[a]), "got -3"),
    (lambda n, a, b, c: n.add_group(4, inputs=[a, 42]), "inputs: group 42 does not exist"),
    (lambda n, a, b, c: n.add_group(4, inputs=[a], outputs=[INPUT]), "the input group 0 cannot have inputs"),
    (lambda n, a, b, c: n.add_group(4, inputs=[a, a]), "duplicate group in inputs"),
    (lambda n, a, b, c: n.disconnect(a, OUTPUT), "there is no edge 2 -> 1"),
    (lambda n, a, b, c: n.remove_group(OUTPUT), "group 1 is not a hidden group"),
])
def test_bad_edits_raise_and_change_nothing(call, message):
    net, a, b, c = diamond()
    before = snapshot(net)
    with pytest.raises(GraphError) as err:
        call(net, a, b, c)
    assert message in str(err.value)
    assert_unchanged(net, before)
    net.validate()


def test_io_widths_must_be_positive():
    with pytest.raises(GraphError, match="the input group needs a positive integer width, got 0"):
        Network(0, 3)
    with pytest.raises(GraphError, match="the output group needs a positive integer width, got -1"):
        Network(3, -1)


def test_unreachable_and_dead_end_groups_are_named():
    net, a, b, c = diamond()
    orphan = net.add_group(3, outputs=[OUTPUT])
    with pytest.raises(GraphError, match=rf"hidden group\(s\) {orphan} not reachable from the input group 0"):
        net.validate()
    net.remove_group(orphan)
    dead = net.add_group(3, inputs=[a])
    dead2 = net.add_group(2, inputs=[dead])
    with pytest.raises(GraphError, match=rf"hidden group\(s\) {dead}, {dead2} do not reach the output group 1"):
        net.validate()
    before = snapshot(net)
    with pytest.raises(GraphError, match="do not reach the output"):
        Trainer(net, backend="serial")
    assert_unchanged(net, before)


def test_output_must_be_reachable():
    net = Network(3, 2)
    with pytest.raises(GraphError, match="the output group 1 is not reachable from the input group 0"):
        net.validate()


# ---------------------------------------------------------------------------- files
def trained(net, steps=5, seed=0):
    rng = np.random.default_rng(seed)
    trainer = Trainer(net, backend="serial", seed=seed)
    for _ in range(steps):
        trainer.step(rng.normal(size=(16, net.n_inputs)), rng.integers(0, net.n_outputs, 16))
    return trainer


def test_save_load_round_trip_is_bit_identical(tmp_path):
    net = Network.random_dag(levels=4, per_level=5, width=(1, 8), fan_in=3, seed=7, n_inputs=6, n_outputs=4)
    trainer = trained(net)
    net = trainer.net
    net.history.append({"step": 5, "kind": "depth", "source": 3, "new": 99, "statistic": 0.5})
    path = net.save(tmp_path / "grown")
    assert path.name == "grown" and path.exists()  # exactly the path given
    loaded = Network.load(path)
    assert loaded.widths == net.widths and loaded.edges == net.edges and loaded.history == net.history
    assert all(loaded.inputs(g) == net.inputs(g) for g in net.groups)
    x = np.random.default_rng(1).normal(size=(50, 6))
    assert np.array_equal(Trainer(loaded, backend="serial").logits(x), Trainer(net, backend="serial").logits(x))
    assert loaded.add_group(2, inputs=[INPUT], outputs=[OUTPUT]) == net.add_group(2, inputs=[INPUT], outputs=[OUTPUT])


def test_copy_is_deep():
    net, a, b, c = diamond()
    twin = net.copy()
    twin.weights[(a, c)][:] = 0
    twin.add_group(2, inputs=[a], outputs=[OUTPUT])
    assert net.weights[(a, c)].any() and len(net.groups) == 5


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b"not a zip file at all"), "not a readable genlab network file"),
    (lambda p: p.write_bytes(p.read_bytes()[:200]), "not a readable genlab network file"),
    (lambda p: np.savez(p, x=np.arange(3)), "not a genlab network (no metadata)"),
    (lambda p: np.savez(p, __meta__=np.frombuffer(b'{"format": "other"}', np.uint8)), "is not a genlab network file"),
    (lambda p: np.savez(p, __meta__=np.frombuffer(b'\xff\xfe{', np.uint8)), "damaged metadata"),
])
def test_damaged_or_foreign_files(tmp_path, damage, message):
    path = Network.mlp([3, 4, 2]).save(tmp_path / "net.npz")
    damage(path)
    with pytest.raises(FileFormatError, match=re.escape(message)):
        Network.load(path)


def test_file_with_inconsistent_contents(tmp_path):
    net, a, b, c = diamond()
    path = net.save(tmp_path / "net.npz")
    with np.load(path) as f:
        arrays = dict(f)
    meta = json.loads(arrays["__meta__"].tobytes())
    meta["edges"].append([c, a])  # a cycle
    meta["outputs"][str(c)] = meta["outputs"].get(str(c), []) + [a]
    arrays["W_4_2"] = np.zeros((4, 6), np.float32)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(FileFormatError, match="cycle"):
        Network.load(path)
    meta["edges"].pop()
    meta["version"] = 99
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(FileFormatError, match="format version 99"):
        Network.load(path)


def test_levels_name_a_cycle_but_draw_a_network_with_other_faults():
    """levels() is read at every growth step: it orders the DAG without the rest of validate(),
    still naming a cycle made behind the API's back, and gives the same levels as before."""
    net = Network.random_dag(3, 4, 5, 2, seed=3)
    order = net.topological_order()
    level = net.levels()
    assert list(level) == order and all(level[d] > level[s] for s, d in net.edges)
    a = net.hidden_groups[0]
    b = net.outputs(a)[0]
    net._in[a].append(b), net._out[b].append(a)  # b -> a behind the API's back: a cycle a -> b -> a
    with pytest.raises(GraphError, match="cycle"):
        net.levels()
    net._in[a].pop(), net._out[b].pop()
    net._weights[(net.inputs(a)[0], a)] = np.zeros((1, 1), np.float32)  # a wrong block: validate's to name
    assert net.levels() == level
    with pytest.raises(GraphError, match="width mismatch"):
        net.validate()
