import copy

import numpy as np
import pytest
from conftest import assert_unchanged, snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from genlab.dag import reach
from genlab import INPUT, OUTPUT, GraphError, GrowthPolicy, Network, Trainer
from genlab.engines import SerialEngine
from genlab.growth import (Grower, depth_through, duplicate_depth, duplicate_width, mark, prune_group,
                           select)
from genlab.hashnoise import hash_u32, hash_uniform
from genlab.optim import SGD


def logits(net, x):
    engine = SerialEngine(net, SGD(), dtype="float64")
    return engine.forward(x)


def dag(seed, **kw):
    args = dict(levels=4, per_level=4, width=(1, 9), fan_in=(1, 3), n_inputs=5, n_outputs=3, dtype=np.float64)
    args.update(kw)
    net = Network.random_dag(seed=seed, **args)
    rng = np.random.default_rng(seed)
    for b in net.biases.values():
        b[:] = rng.normal(size=b.shape) * 0.3
    return net


def chain(n, width=4):
    net = Network(3, 2, dtype=np.float64)
    prev = INPUT
    for _ in range(n):
        prev = net.add_group(width, inputs=[prev])
    net.connect(prev, OUTPUT)
    return net


# ---------------------------------------------------------------------------- function preservation
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("kind", ["depth", "width", "fresh width"])
def test_duplication_preserves_the_function(seed, kind):
    net = dag(seed)
    x = np.random.default_rng(seed).normal(size=(64, 5))
    before = logits(net, x)
    for g in net.hidden_groups[::3]:
        if kind == "depth":
            new = duplicate_depth(net, g, step=7, seed=seed)
            assert net.inputs(new) == [g] and net.outputs(g) == [new]
        else:
            consumers = net.outputs(g)
            new = duplicate_width(net, g, step=7, seed=seed, fresh=kind == "fresh width")
            assert net.inputs(new) == net.inputs(g) and sorted(net.outputs(new)) == sorted(consumers)
            assert not np.allclose(net.weights[(g, consumers[0])], net.weights[(new, consumers[0])])
        net.validate()
        np.testing.assert_allclose(logits(net, x), before, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind", ["depth", "width"])
def test_without_preservation_the_function_changes(kind):
    net = dag(0)
    x = np.random.default_rng(0).normal(size=(64, 5))
    before = logits(net, x)
    grow = duplicate_depth if kind == "depth" else duplicate_width
    grow(net, net.hidden_groups[0], step=1, seed=0, preserve=False)
    net.validate()
    assert np.abs(logits(net, x) - before).max() > 1e-3


def test_depth_duplication_keeps_the_consumers_input_order():
    net = dag(1)
    g = net.hidden_groups[0]
    orders = {d: net.inputs(d) for d in net.outputs(g)}
    new = duplicate_depth(net, g, step=0, seed=0)
    for d, order in orders.items():
        assert net.inputs(d) == [new if s == g else s for s in order]


def lowbias32_reference(x):
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_hash_matches_a_plain_integer_reference():
    rng = np.random.default_rng(0)
    for seed, step, group, consumer in rng.integers(0, 2**31, (20, 4)).tolist():
        index = rng.integers(0, 2**31, 5)
        h = lowbias32_reference(seed)
        for key in (step, group, consumer):
            h = lowbias32_reference(h ^ key)
        expected = [lowbias32_reference(h ^ int(i)) for i in index]
        assert hash_u32(seed, step, group, consumer, index).tolist() == expected
    # golden values, for the engines that reimplement it
    assert hash_u32(0, 1, 2, 3, np.arange(3)).tolist() == [2877974829, 2016207682, 718851782]
    u = hash_uniform(0, 1, 2, 3, np.arange(100_000))
    assert u.min() >= -1 and u.max() < 1 and abs(u.mean()) < 0.01


def test_width_noise_is_counter_based():
    a, b = dag(2), dag(2)
    g = a.hidden_groups[1]
    assert duplicate_width(a, g, step=5, seed=9) == duplicate_width(b, g, step=5, seed=9)
    assert all(np.array_equal(a.weights[e], b.weights[e]) for e in a.edges)
    c = dag(2)
    duplicate_width(c, g, step=6, seed=9)
    assert not all(np.array_equal(a.weights[e], c.weights[e]) for e in a.edges)


# ---------------------------------------------------------------------------- marking and selection
def test_mark_absolute_and_relative():
    scores = {2: 1.0, 3: 5.0, 4: 2.0, 5: 2.0}
    assert mark(scores, 1.5, relative=False) == {3, 4, 5}
    assert mark(scores, 1.5, relative=True) == {3}          # z = (5 - 2.5) / 1.5 = 1.67
    assert mark({2: 9.0}, 0.0, relative=True) == set()     # one group: no spread, no z-score
    # relative against a population that includes groups that cannot grow now
    assert mark({2: 1.0}, 0.5, relative=True, population={2: 1.0, 3: 0.0, 4: 0.0}) == {2}


def test_chain_with_every_group_marked_grows_only_nearest_the_input():
    net = chain(4)
    assert select(net.inputs, {2, 3, 4, 5}, {2: 1, 3: 4, 4: 3, 5: 2}) == [2]
    assert select(net.inputs, {3, 5}, {3: 1, 5: 2}) == [5, 3]  # not consecutive: both grow, best first


def test_two_marked_parallel_branches_both_grow():
    net = Network(3, 2, dtype=np.float64)
    a = net.add_group(4, inputs=[INPUT], outputs=[OUTPUT])
    b = net.add_group(4, inputs=[INPUT], outputs=[OUTPUT])
    trainer = Trainer(net, backend="serial", growth=GrowthPolicy(threshold=0.0, mode="width", every=None))
    trainer.step(np.random.default_rng(0).normal(size=(8, 3)), [0, 1] * 4)
    events = trainer.grow()
    assert sorted(e.source for e in events) == [a, b] and all(e.kind == "width" for e in events)
    assert len(trainer.net.groups) == 6


def test_budget_keeps_the_highest_statistics(caplog):
    net = Network(3, 2, dtype=np.float64)
    groups = [net.add_group(2, inputs=[INPUT], outputs=[OUTPUT]) for _ in range(5)]
    grower = Grower(GrowthPolicy(threshold=0.0, mode="width", max_groups=9, cooldown=0))
    stats = {"grad_std": {g: s for g, s in zip(groups, [0.1, 0.5, 0.3, 0.5, 0.2])}}
    grower.observe(stats)
    events, _ = grower.check(net, step=10)
    assert [e.source for e in events] == [groups[1], groups[3]]  # 0.5, 0.5 (tie: lower id first)
    assert [e.new for e in events] == [7, 8] and len(net.groups) == 9
    assert "growth stopped at step 10" in caplog.text  # a one-line note (stderr without logging set up)
    caplog.clear()
    grower.observe(stats)
    assert grower.check(net, step=20)[0] == [] and len(net.groups) == 9
    assert caplog.text == ""  # reported once


def test_cooldown_blocks_the_group_and_its_copy():
    net = chain(1)
    g = net.hidden_groups[0]
    grower = Grower(GrowthPolicy(threshold=0.0, mode="width", cooldown=30))
    grower.observe({"grad_std": {g: 1.0}})
    (event,), _ = grower.check(net, step=0)
    grower.observe({"grad_std": {g: 1.0, event.new: 1.0}})
    assert grower.check(net, step=29)[0] == []
    assert {e.source for e in grower.check(net, step=30)[0]} == {g, event.new}


def test_modes():
    net = chain(1)
    kinds = []
    grower = Grower(GrowthPolicy(threshold=0.0, mode="alternate", cooldown=0, max_groups=100))
    for step in range(4):
        grower.observe({"grad_std": {h: 1.0 for h in net.hidden_groups}})
        kinds.append({e.kind for e in grower.check(net, step)[0]})
    assert kinds == [{"depth"}, {"width"}, {"depth"}, {"width"}]
    # auto: depth while the path through the group is shorter than max_depth, then width
    net = chain(1)
    grower = Grower(GrowthPolicy(threshold=0.0, mode="auto", max_depth=3, cooldown=10**9))
    for step in range(4):
        grower.observe({"grad_std": {net.hidden_groups[0]: 1.0}})
        grower.cool_until.clear()
        grower.cool_until.update({h: 10**9 for h in net.hidden_groups[1:]})
        kinds.append([e.kind for e in grower.check(net, step)[0]])
    assert kinds[4:] == [["depth"], ["depth"], ["width"], ["width"]]
    assert max(depth_through(net).values()) == 3


def test_policy_rejects_bad_settings():
    with pytest.raises(ValueError, match="unknown growth mode 'sideways'"):
        GrowthPolicy(mode="sideways")
    with pytest.raises(ValueError, match="unknown growth criterion 'luck'"):
        GrowthPolicy(criterion="luck")
    with pytest.raises(ValueError, match="every must be at least 1"):
        GrowthPolicy(every=0)
    with pytest.raises(ValueError, match="max_groups must be at least 3"):
        GrowthPolicy(max_groups=2)


# ---------------------------------------------------------------------------- criteria
def test_criteria_values():
    net = dag(3)
    engine = SerialEngine(net, SGD(), dtype="float64")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 5)), rng.integers(0, 3, 16)
    engine.forward(x)
    engine.backward(y)
    for g in net.hidden_groups:
        norm = np.sqrt(sum(np.sum(engine.grads[("W", s, g)] ** 2) for s in net.inputs(g))
                       + np.sum(engine.grads[("b", g)] ** 2))
        assert engine.stats["weight_grad_norm"][g] == pytest.approx(norm, rel=1e-12)
    for name in ("grad_std", "weight_grad_norm", "taylor"):
        grower = Grower(GrowthPolicy(criterion=name))
        grower.observe(engine.stats)
        assert grower.scores.ema == {g: engine.stats[name][g] for g in net.hidden_groups}
    custom = Grower(GrowthPolicy(criterion=lambda stats: {g: -v for g, v in stats["taylor"].items()}))
    custom.observe(engine.stats)
    assert custom.scores.ema == {g: -engine.stats["taylor"][g] for g in net.hidden_groups}


def test_moving_average():
    grower = Grower(GrowthPolicy(window=3))  # alpha = 0.5
    for v in (1.0, 3.0, 3.0):
        grower.observe({"grad_std": {2: v, OUTPUT: 100.0}})
    assert grower.scores.ema == {2: 2.5}


# ---------------------------------------------------------------------------- trainer integration
@pytest.mark.parametrize("edit", [False, True], ids=["grown only", "edited between"])
def test_each_growth_steps_pictures_start_from_the_network_as_it_was(edit):
    """A growth step's first picture is the trainer's kept one (not remade): it equals the
    topology before the step, also after an edit of the network between steps, and each event's
    picture the one after it, without changing the pictures already in the history."""
    trainer = Trainer(dag(2, dtype=np.float32), backend="serial",
                      growth=GrowthPolicy(threshold=0.0, every=None, max_groups=60, mode="alternate"))
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(32, 5)), rng.integers(0, 3, 32)
    for round_ in range(3):
        trainer.step(x, y)
        if edit and round_:
            g = trainer.net.hidden_groups[-1]
            trainer.net.add_group(3, inputs=[trainer.net.input], outputs=[g])
        kept = copy.deepcopy(trainer.history.events)
        before = trainer.net.topology()
        made = trainer.grow()
        assert made
        step = trainer.history.events[len(kept):]
        assert step[0]["before"] == before and step[-1]["after"] == trainer.net.topology()
        assert all(a["after"] == b["before"] for a, b in zip(step, step[1:]))
        assert trainer.history.events[:len(kept)] == kept


def test_grow_records_events_and_carries_optimizer_state():
    net = dag(4, dtype=np.float32)
    trainer = Trainer(net, backend="serial", growth=GrowthPolicy(threshold=0.0, every=None, max_groups=24))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 5)), rng.integers(0, 3, 32)
    trainer.step(x, y)
    state_before = {k: {n: a.copy() for n, a in v.items() if isinstance(a, np.ndarray)}
                    for k, v in trainer.engine.state.items()}
    p_before = trainer.predict(x)
    roots = [g for g in net.hidden_groups if net.inputs(g) == [INPUT]]  # all marked: only these may grow
    events = trainer.grow()
    assert sorted(e.source for e in events) == roots and len(trainer.net.groups) == 18 + len(roots)
    assert trainer.net.history == [e.to_dict() for e in events] and net.history == trainer.net.history
    recorded = trainer.history.events
    assert [{k: r[k] for k in ("step", "kind", "source", "new", "statistic")} for r in recorded] == \
        [e.to_dict() for e in events]
    # each event records the topology it left: one more group each, the last the network's own
    assert [len(r["after"]["widths"]) for r in recorded] == [18 + k for k in range(1, len(roots) + 1)]
    assert len(recorded[0]["before"]["widths"]) == 18 and recorded[-1]["after"] == trainer.net.topology()
    np.testing.assert_array_equal(trainer.predict(x), p_before)
    new_groups = {e.new for e in events}
    for key, state in trainer.engine.state.items():
        assert not any(g in new_groups for g in key[1:])  # new parameters start fresh
        if key in state_before and all(state_before[key][n].shape == state[n].shape for n in state_before[key]):
            for n, a in state_before[key].items():
                np.testing.assert_array_equal(state[n], a)
    trainer.step(x, y)  # and training goes on with the grown network
    assert any(g in key[1:] for key in trainer.engine.state for g in new_groups)


def test_failed_growth_leaves_network_and_engine_as_they_were(monkeypatch):
    net = dag(5, dtype=np.float32)
    trainer = Trainer(net, backend="serial", growth=GrowthPolicy(threshold=0.0, every=None))
    rng = np.random.default_rng(0)
    trainer.step(rng.normal(size=(8, 5)), rng.integers(0, 3, 8))
    before = snapshot(trainer.net)
    order = list(trainer.engine.order)

    def out_of_memory(_net):
        raise MemoryError("no room for the grown network")

    monkeypatch.setattr(trainer.engine, "load", out_of_memory)
    with pytest.raises(MemoryError):
        trainer.grow()
    assert_unchanged(trainer.net, before)
    assert trainer.engine.order == order and not trainer.history.events and not net.history


def test_fit_grows_every_n_steps():
    data_rng = np.random.default_rng(0)
    X, y = data_rng.normal(size=(320, 3)), data_rng.integers(0, 2, 320)
    trainer = Trainer(chain(1), backend="serial", batch_size=32,
                      growth=GrowthPolicy(threshold=0.0, every=10, cooldown=0, max_groups=100))
    trainer.fit(X, y, epochs=3, progress=False)
    assert sorted({e["step"] for e in trainer.history.events}) == [10, 20, 30]


# ---------------------------------------------------------------------------- pruning
def test_pruning_a_dead_group_is_exact():
    net = dag(6)
    x = np.random.default_rng(0).normal(size=(64, 5))
    g = next(g for g in net.hidden_groups if len(net.outputs(g)) > 1)
    net.biases[g][:] = -1e6  # dead for every input
    before = logits(net, x)
    trainer = Trainer(net, backend="serial", dtype="float64", optimizer="sgd", lr=0.0,
                      growth=GrowthPolicy(threshold=1e9, prune=True, every=None))
    for _ in range(3):  # steps that observe and change no parameter: 192 rows are not enough to judge
        trainer.step(x, np.zeros(64, dtype=np.int64))
    assert trainer.grow() == []
    trainer.step(x, np.zeros(64, dtype=np.int64))  # 256 rows over 4 batches since the last judgement
    events = trainer.grow()
    assert g in [e.source for e in events] and {e.kind for e in events} == {"prune"}
    assert g not in trainer.net.widths
    np.testing.assert_allclose(logits(trainer.net, x), before, rtol=1e-6, atol=1e-9)


def test_pruning_a_constant_group_folds_it_into_the_biases():
    net = dag(7)
    x = np.random.default_rng(1).normal(size=(64, 5))
    g = net.hidden_groups[2]
    for s in net.inputs(g):
        net.weights[(s, g)][:] = 0
    net.biases[g][:] = np.linspace(0.5, 1.5, net.widths[g])  # constant, positive output
    before = logits(net, x)
    removed = prune_group(net, g, np.maximum(net.biases[g], 0))
    assert removed[0] == g
    np.testing.assert_allclose(logits(net, x), before, rtol=1e-6, atol=1e-9)


def test_pruning_never_cuts_the_output_off():
    net = chain(1)
    g = net.hidden_groups[0]
    with pytest.raises(GraphError, match="cut the output group off"):
        prune_group(net.copy(), g, np.zeros(4))
    grower = Grower(GrowthPolicy(threshold=1e9, prune=True))
    grower.observe({"grad_std": {g: 0.0}, "h_min": {g: np.zeros(4)}, "h_max": {g: np.zeros(4)}})
    for _ in range(4):
        grower.count(64)
    before = snapshot(net)
    assert grower.check(net, step=1)[0] == []
    assert_unchanged(net, before)


def test_taylor_pruning_after_patience():
    net = Network(3, 2, dtype=np.float64)
    a = net.add_group(4, inputs=[INPUT], outputs=[OUTPUT])
    b = net.add_group(4, inputs=[INPUT], outputs=[OUTPUT])
    grower = Grower(GrowthPolicy(threshold=1e9, prune_taylor=1e-3, patience=2))
    stats = {"grad_std": {a: 1.0, b: 1.0}, "taylor": {a: 1e-5, b: 1.0}}
    grower.observe(stats)
    assert grower.check(net, 1)[0] == []
    grower.observe(stats)
    (event,), _ = grower.check(net, 2)
    assert (event.kind, event.source) == ("prune", a) and net.hidden_groups == [b]


# ---------------------------------------------------------------------------- random sequences
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), moves=st.lists(st.sampled_from(["depth", "width", "prune", "dead"]),
                                                   min_size=1, max_size=8))
def test_random_growth_and_pruning_sequences_keep_a_valid_network(tmp_path_factory, seed, moves):
    net = dag(seed, levels=3, per_level=3)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(16, 5))
    for step, move in enumerate(moves):
        hidden = net.hidden_groups
        g = hidden[int(rng.integers(len(hidden)))]
        if move == "depth":
            duplicate_depth(net, g, step, seed)
        elif move == "width":
            duplicate_width(net, g, step, seed)
        else:
            trial = net.copy()
            if move == "dead":
                trial.biases[g][:] = -1e6
            expected = logits(trial, x)
            try:
                prune_group(trial, g, np.zeros(net.widths[g]) if move == "dead" else None)
            except GraphError:
                continue
            if move == "dead":
                np.testing.assert_allclose(logits(trial, x), expected, rtol=1e-6, atol=1e-9)
            net = trial
        net.validate()
        assert OUTPUT in reach(INPUT, net._out)
        for (s, d), w in net.weights.items():
            assert w.shape == (net.widths[d], net.widths[s])
        assert all(net.biases[h].shape == (net.widths[h],) for h in net.groups[1:])
    path = net.save(tmp_path_factory.mktemp("grown") / "net.npz")
    np.testing.assert_array_equal(logits(Network.load(path), x), logits(net, x))


def test_growth_and_pruning_on_a_shallow_copy_leave_the_original_untouched():
    net = dag(8)
    before = snapshot(net)
    work = net.copy(deep=False)
    hidden = work.hidden_groups
    duplicate_width(work, hidden[0], step=1, seed=0)
    duplicate_depth(work, hidden[3], step=1, seed=0)
    duplicate_width(work, hidden[5], step=1, seed=0, preserve=False)
    target = next(g for g in work.hidden_groups if len(work.outputs(g)) > 1 and g not in hidden[:1])
    prune_group(work, target, np.ones(work.widths[target]))
    assert_unchanged(net, before)
    assert len(work.groups) != len(net.groups)


@pytest.mark.parametrize("preserve", [True, False])
@pytest.mark.parametrize("kind", ["depth", "width"])
def test_growth_without_values_logs_the_same_operations(kind, preserve):
    """values=False (an engine that grows in place replays the log) changes the topology and the
    log exactly as the full operation does, and computes no parameter values on the host."""
    from genlab.growth import duplicate_depth, duplicate_width

    base = Network.random_dag(levels=3, per_level=3, width=(2, 9), fan_in=(1, 3), seed=5, n_inputs=4, n_outputs=3)
    g = base.hidden_groups[1]
    runs = []
    for values in (True, False):
        net, log = base.copy(), []
        if kind == "depth":
            new = duplicate_depth(net, g, 7, 1, preserve, log, values=values)
        else:
            new = duplicate_width(net, g, 7, 1, preserve, 0.5, log, values=values)
        runs.append((net, log, new))
    (full, full_log, a), (lean, lean_log, b) = runs
    assert a == b and full.topology() == lean.topology()
    assert repr(full_log) == repr(lean_log)
    assert {k: w.shape for k, w in full.weights.items()} == {k: w.shape for k, w in lean.weights.items()}
    for k, w in lean.weights.items():  # blocks keep their values; new ones are zeros, shared copies or moved blocks
        if k in base.weights:
            assert np.array_equal(w, base.weights[k]), k
        else:
            moved = base.weights.get((g, k[1]))
            assert not w.any() or np.array_equal(w, full.weights[k]) or np.array_equal(w, moved), k
    assert any(not np.array_equal(full.weights[k], lean.weights[k]) for k in full.weights)  # values were left out


# ---------------------------------------------------------------------------- the default rule: top
def test_a_fresh_sibling_learns_new_features_and_adds_nothing_yet():
    net = dag(1)
    g = net.hidden_groups[0]
    before = {k: v.copy() for k, v in net.weights.items()}
    new = duplicate_width(net, g, step=3, seed=5, fresh=True)
    for s in net.inputs(g):
        w = net.weights[(s, new)]
        assert not np.allclose(w, before[(s, g)]) and np.abs(w).max() <= np.sqrt(6.0 / sum(
            before[(t, g)].shape[1] for t in net.inputs(g))) + 1e-12
    for d in net.outputs(new):
        assert not net.weights[(new, d)].any() and np.array_equal(net.weights[(g, d)], before[(g, d)])
    np.testing.assert_array_equal(net.biases[new], net.biases[g])
    with pytest.raises(ValueError, match="unknown sibling 'clone'"):
        GrowthPolicy(sibling="clone")


def test_the_default_rule_grows_the_highest_group_at_any_scale():
    """top=1 grows one group a check whatever the statistic's scale (the absolute threshold of
    5e-3 never fires on Fashion-MNIST): scaling every score by 1e-6 or 1e6 changes nothing."""
    def run(scale):
        net = Network(3, 2, dtype=np.float64)
        groups = [net.add_group(2, inputs=[INPUT], outputs=[OUTPUT]) for _ in range(4)]
        grower = Grower(GrowthPolicy(mode="width", cooldown=0, max_groups=12))
        events = []
        for step, order in enumerate([(3, 1, 2, 0), (0, 3, 2, 1), (1, 0, 3, 2)]):
            grower.observe({"grad_std": {h: scale * (1 + order[i % 4]) for i, h in enumerate(net.hidden_groups)}})
            events.append([(e.source, e.kind) for e in grower.check(net, step)[0]])
        return events, groups
    small, groups = run(1e-6)
    assert small == run(1e6)[0] == run(1.0)[0]
    assert [len(e) for e in small] == [1, 1, 1] and small[0] == [(groups[0], "width")]
    # a lone group grows at once (the network the README's threshold never grew)
    net = chain(1)
    grower = Grower(GrowthPolicy(cooldown=0))
    grower.observe({"grad_std": {2: 1e-9}})
    assert [e.source for e in grower.check(net, step=1)[0]] == [2]


def test_top_k_keeps_the_closest_to_the_input_and_the_budget():
    net = chain(3)  # 2 -> 3 -> 4
    grower = Grower(GrowthPolicy(top=2, mode="width", cooldown=0, max_groups=100))
    grower.observe({"grad_std": {2: 1.0, 3: 3.0, 4: 2.0}})
    assert [e.source for e in grower.check(net, step=1)[0]] == [3]  # 3 and 4 marked: 3 feeds 4, so 3 alone
    wide = Network(3, 2, dtype=np.float64)
    groups = [wide.add_group(2, inputs=[INPUT], outputs=[OUTPUT]) for _ in range(5)]
    grower = Grower(GrowthPolicy(top=3, mode="width", cooldown=0, max_groups=100))
    grower.observe({"grad_std": dict(zip(groups, [0.1, 0.5, 0.3, 0.4, 0.2]))})
    assert [e.source for e in grower.check(wide, step=1)[0]] == [groups[1], groups[3], groups[2]]
    with pytest.raises(ValueError, match="top must be at least 1"):
        GrowthPolicy(top=0)


def test_relative_needs_a_threshold_and_grows_a_lone_group():
    with pytest.raises(ValueError, match="relative=True marks groups whose z-score exceeds threshold"):
        GrowthPolicy(relative=True)
    net = chain(1)
    grower = Grower(GrowthPolicy(relative=True, threshold=1.0, cooldown=0))
    grower.observe({"grad_std": {2: 0.3}})
    assert [e.source for e in grower.check(net, step=1)[0]] == [2]


def test_grow_named_groups():
    net = Network(3, 2, dtype=np.float64)
    a = net.add_group(4, inputs=[INPUT], outputs=[OUTPUT])
    b = net.add_group(4, inputs=[INPUT], outputs=[OUTPUT])
    trainer = Trainer(net, backend="serial", growth=GrowthPolicy(mode="width", every=None, cooldown=5))
    x, y = np.random.default_rng(0).normal(size=(8, 3)), [0, 1] * 4
    trainer.step(x, y)
    before = trainer.net.copy()
    for bad, why in ((OUTPUT, "is not a hidden group"), (99, "is not a hidden group"), ([a, a], "names a group twice")):
        with pytest.raises(GraphError, match=why):
            trainer.grow(groups=bad if isinstance(bad, list) else [bad])
        assert trainer.net.edges == before.edges
    events = trainer.grow(groups=[b])
    assert [(e.source, e.kind) for e in events] == [(b, "width")] and events[0].statistic > 0
    assert trainer.grower.eligible(trainer.net, trainer.step_count) == [a]  # b and its copy cool down


def test_a_checkpoint_from_before_fresh_siblings_resumes_splitting(tmp_path):
    """Checkpoints written before GrowthPolicy had sibling and top grew by splitting and by their
    threshold: they resume doing so."""
    import json

    trainer = Trainer(chain(1), backend="serial", growth=GrowthPolicy(threshold=1e-3, every=5))
    trainer.step(np.random.default_rng(0).normal(size=(8, 3)), [0, 1] * 4)
    path = trainer.save(tmp_path / "new.ckpt")
    assert Trainer.load(path, backend="serial").growth.sibling == "fresh"
    with np.load(path, allow_pickle=False) as saved:
        members = {name: saved[name] for name in saved.files}
    meta = json.loads(members["__trainer__"].tobytes().decode())
    for key in ("sibling", "top"):
        del meta["growth"][key]
    members["__trainer__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    old = tmp_path / "old.ckpt"
    with open(old, "wb") as f:
        np.savez(f, **members)
    resumed = Trainer.load(old, backend="serial")
    assert resumed.growth.sibling == "split" and resumed.growth.threshold == 1e-3 and resumed.growth.top == 1


@pytest.mark.parametrize("family", ["dense", "recurrent", "image", "sequence"])
def test_a_growth_steps_pictures_equal_the_networks_topology_after_each_event(family):
    """StepPictures edits one picture per duplication instead of remaking it (O(k n) a step):
    after every depth-wise or width-wise copy, in any order, its picture is net.topology()."""
    from conftest import random_image_net, random_sequence_net

    from genlab.step_pictures import StepPictures

    for seed in range(12):
        rng = np.random.default_rng(seed)
        if family == "image":
            net = random_image_net(seed)[0]
        elif family == "sequence":
            net = random_sequence_net(seed)[0]
        else:
            net = Network.random_dag(int(rng.integers(1, 5)), int(rng.integers(1, 5)), (1, 6), (1, 3), seed=seed)
            if family == "recurrent":
                net.connect(net.hidden_groups[-1], net.hidden_groups[0], delay=1)
        pictures, grown = StepPictures(net), []
        for _ in range(6):
            g = int(rng.choice(net.hidden_groups))
            depth = rng.random() < 0.5
            new = duplicate_depth(net, g, 0, 0) if depth else duplicate_width(net, g, 0, 0, fresh=bool(seed % 2))
            grown.append("depth" if depth else "width")
            assert pictures.after(net, g, new) == net.topology(), (seed, grown)


@pytest.mark.parametrize("seed", range(5))
def test_depth_through_is_the_longest_path_through_each_group(seed):
    """depth_through against paths counted by brute force (every input -> output path), on
    random DAGs grown depth-wise and width-wise, one with a recurrent edge (not on a path)."""
    rng = np.random.default_rng(seed)
    net = Network.random_dag(3, 3, (2, 5), (1, 3), seed=seed)
    for step in range(4):
        g = int(rng.choice(net.hidden_groups))
        (duplicate_depth if rng.random() < 0.5 else duplicate_width)(net, g, step, seed)
    if seed == 4:
        h = net.hidden_groups[-1]
        net.connect(h, h, delay=1)
    inputs, outputs = net.forward_edges()

    def paths(g):  # every path from g to the output, as lists of groups
        return [[g]] if g == OUTPUT else [[g, *p] for d in outputs[g] for p in paths(d)]

    longest = {g: 0 for g in net.groups}
    for path in paths(INPUT):
        hidden = len(path) - 2
        for g in path:
            longest[g] = max(longest[g], hidden)
    assert depth_through(net) == longest


@pytest.mark.parametrize("seed", range(4))
def test_auto_mode_decides_as_with_depths_measured_afresh_for_every_group(seed):
    """Mode "auto" keeps the depths within a check and updates them after a width-wise copy
    (a sibling lengthens no path); it decides as measuring depth_through for every group does."""

    class Afresh(Grower):
        def _kind(self, g, net):
            self._depths = None
            return super()._kind(g, net)

    policy = GrowthPolicy(threshold=0.0, every=None, cooldown=0, max_groups=90, mode="auto", max_depth=3)
    kept = Network.random_dag(2, 4, (2, 6), (1, 3), seed=seed)
    afresh = kept.copy()
    a, b, kinds = Grower(policy, seed=seed), Afresh(policy, seed=seed), set()
    for step in range(1, 5):
        groups = [g for g in kept.hidden_groups if g % 3 != step % 3]  # not all at once
        groups = [g for g in groups if not any(s in groups for s in kept.inputs(g))]  # as the rules select
        made_a, made_b = a.check(kept, step, groups=groups)[0], b.check(afresh, step, groups=groups)[0]
        assert [(e.kind, e.source, e.new) for e in made_a] == [(e.kind, e.source, e.new) for e in made_b]
        assert kept.topology() == afresh.topology()
        kinds |= {e.kind for e in made_a}
        if a._depths and a._depths[0] == kept.version:  # the depths it kept are the network's
            assert a._depths[1] == depth_through(kept)
    assert kinds == {"depth", "width"}  # both ways of growing, one check after another


def test_auto_mode_measures_depths_again_after_a_depth_wise_copy():
    """Two groups of one chain in one check: the first copied depth-wise makes the chain as deep
    as max_depth, so the second is copied width-wise."""
    net = Network.mlp([4, 3, 3, 3, 3, 3, 2], seed=0)  # five hidden groups in a chain: 2 -> ... -> 6
    grower = Grower(GrowthPolicy(threshold=0.0, every=None, cooldown=0, max_groups=90, mode="auto", max_depth=6))
    made, _ = grower.check(net, 1, groups=[2, 4])
    assert [(e.source, e.kind) for e in made] == [(2, "depth"), (4, "width")]
