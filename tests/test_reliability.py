"""Nothing lost on any failure, every bad input a clear error, checkpoints that resume exactly."""

import io
import json
import re
import os
import subprocess
import sys
import zipfile

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import genlab
from genlab import INPUT, OUTPUT, GrowthPolicy, Network, Trainer
from genlab.errors import (ArgumentError, ArgumentTypeError, FileFormatError, GenlabError, GraphError, SaveError,
                           StaleNetworkError, TrainingError)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(96, 5))
Y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)


def small(seed=0, dtype=np.float32):
    return Network.random_dag(levels=3, per_level=3, width=(2, 6), fan_in=(1, 3), seed=seed, n_inputs=5,
                              n_outputs=3, dtype=dtype)


def full_state(net):
    """Everything an edit may change, the random stream and the next id included."""
    return (dict(net.widths), dict(net.kinds), [(g, net.inputs(g), net.outputs(g)) for g in net.groups],
            {k: v.copy() for k, v in net._weights.items()}, {k: v.copy() for k, v in net._biases.items()},
            net._next_id, json.dumps(net._rng.bit_generator.state), json.dumps(net.history))


def assert_same_state(a, b):
    assert a[:3] == b[:3] and a[5:] == b[5:]
    for x, y in ((a[3], b[3]), (a[4], b[4])):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


# ---------------------------------------------------------------------------- files: atomic and exact
def test_save_writes_exactly_the_path_given_and_load_reads_exactly_it(tmp_path):
    net = small()
    for name in ("my.net", "plain", "model.npz", "weird.name.bin"):
        path = net.save(tmp_path / name)
        assert path == tmp_path / name and path.exists()
        assert Network.load(path).edges == net.edges
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "my.net", "plain", "weird.name.bin"]
    with pytest.raises(FileNotFoundError):
        Network.load(tmp_path / "my")  # no suffix is guessed


def test_a_save_that_fails_mid_write_leaves_the_old_file_loadable(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    old = small(1)
    old.save(path)
    before = path.read_bytes()

    def half_then_full_disk(file, **arrays):
        file.write(b"PK\x03\x04 half of a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", half_then_full_disk)
    with pytest.raises(SaveError, match="No space left on device.*unchanged") as err:
        small(2).save(path)
    assert isinstance(err.value, OSError) and isinstance(err.value, GenlabError)
    monkeypatch.undo()
    assert path.read_bytes() == before and Network.load(path).edges == old.edges
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary file left behind


def test_save_keeps_the_files_permissions_and_refuses_folders(tmp_path):
    path = tmp_path / "model.npz"
    small().save(path)
    os.chmod(path, 0o640)
    small(1).save(path)
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)
    with pytest.raises(SaveError, match="is a folder"):
        small().save(tmp_path)
    with pytest.raises(SaveError, match="does not exist"):
        small().save(tmp_path / "missing" / "model.npz")


def _good_file(tmp_path):
    trainer = Trainer(small(), backend="serial")
    trainer.fit(X, Y, epochs=1, progress=False)
    path = trainer.net.save(tmp_path / "good.npz")
    return path, path.read_bytes(), trainer.net


def _loads_or_refuses(path, original):
    """Load must give the original network or FileFormatError, never anything else."""
    try:
        net = Network.load(path)
    except FileFormatError:
        return "refused"
    assert net.edges == original.edges and net.widths == original.widths
    for k, w in original.weights.items():
        np.testing.assert_array_equal(net.weights[k], w)
    return "same"


def test_truncation_at_every_offset_class_is_refused(tmp_path):
    path, raw, original = _good_file(tmp_path)
    offsets = sorted(set(range(0, 64)) | set(range(64, len(raw), max(1, len(raw) // 300))) | {len(raw) - 1})
    for n in offsets:
        path.write_bytes(raw[:n])
        assert _loads_or_refuses(path, original) == "refused", n


def test_bit_flips_are_refused_or_harmless(tmp_path):
    path, raw, original = _good_file(tmp_path)
    rng = np.random.default_rng(1)
    outcomes = []
    for pos in rng.choice(len(raw), size=400, replace=False):
        flipped = bytearray(raw)
        flipped[pos] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(flipped))
        outcomes.append(_loads_or_refuses(path, original))
    assert outcomes.count("refused") > 300  # most flips land in checked bytes (CRC, headers)


def _tamper(path, meta_edit=None, arrays_edit=None):
    with np.load(path) as f:
        arrays = dict(f)
    meta = json.loads(arrays["__meta__"].tobytes())
    if meta_edit:
        meta_edit(meta)
    if arrays_edit:
        arrays_edit(arrays)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _first_weight(arrays):
    return next(k for k in arrays if k.startswith("W_"))


TAMPERING = [
    (lambda m: m["edges"].append(m["edges"][0]), None, "appears twice"),
    (lambda m: m.update(next_id=2), None, "next_id"),
    (lambda m: m.update(next_id="7"), None, "next_id"),
    (None, lambda a: a.update({_first_weight(a): np.full_like(a[_first_weight(a)], np.nan)}), "non-finite"),
    (None, lambda a: a.update({_first_weight(a): a[_first_weight(a)].astype("U5")}), "dtype"),
    (None, lambda a: a.update({_first_weight(a): a[_first_weight(a)].astype(np.complex64)}), "dtype"),
    (None, lambda a: a.update({_first_weight(a): a[_first_weight(a)].astype(np.int8)}), "dtype"),
    (None, lambda a: a.update({_first_weight(a): a[_first_weight(a)].astype(np.float64)}), "dtype"),
    (None, lambda a: a.update({_first_weight(a): a[_first_weight(a)][:1]}), "shape"),
    (lambda m: m["widths"].update({"2": 2.5}), None, "width"),
    (lambda m: m["widths"].update({"-3": 4}), None, "not a non-negative integer"),
    (lambda m: m["widths"].update({"2": True}), None, "width"),
    (lambda m: m.update(dtype="int8"), None, "dtype"),
    (lambda m: m.update(dtype="object"), None, "dtype"),
    (lambda m: m.update(history="grew twice"), None, "history"),
    (lambda m: m.update(history=[{"step": 1}]), None, "history"),
    (lambda m: m["edges"].append([2, "3"]), None, "pair of group ids"),
    (lambda m: m["edges"].append([3, 3]), None, "W_3_3. is missing|consumers of group 3|cycle"),
    (lambda m: m["edges"].append([1, 2]), None, "not allowed"),
    (lambda m: m["edges"].append([m["edges"][-1][1], m["edges"][-1][0]]), None, "appears twice|cycle|missing"),
    (lambda m: m["widths"].pop("1"), None, "no output group"),
    (lambda m: m.update(widths=[4, 3]), None, "widths"),
    (lambda m: m.update(version=99), None, "version"),
    (None, lambda a: a.pop("b_1"), "missing"),
]


@pytest.mark.parametrize("meta_edit, arrays_edit, message", TAMPERING)
def test_tampered_files_are_refused_naming_what_is_wrong(tmp_path, meta_edit, arrays_edit, message):
    path, _, _ = _good_file(tmp_path)
    _tamper(path, meta_edit, arrays_edit)
    with pytest.raises(FileFormatError, match=message):
        Network.load(path)


def test_only_named_members_are_read_and_absurd_sizes_are_refused(tmp_path, monkeypatch):
    path, raw, original = _good_file(tmp_path)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("junk.npy", b"\0" * (64 * 2**20))  # 64 MiB of zeros: a few kB deflated
    read = []
    real = zipfile.ZipFile.read
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda self, name, *a: read.append(
        getattr(name, "filename", name)) or real(self, name, *a))
    with pytest.raises(FileFormatError, match="unexpected member 'junk.npy'"):  # refused, never decompressed
        Network.load(path)
    assert "junk.npy" not in read and all(n.startswith(("__meta__", "W_", "b_")) for n in read)
    # a named member whose declared size is far beyond what its shape allows: refused unread
    path.write_bytes(raw)
    _tamper(path, arrays_edit=lambda a: a.update({_first_weight(a): np.zeros(2**20, np.float32)}))
    read.clear()
    with pytest.raises(FileFormatError, match="declares .* bytes"):
        Network.load(path)


def test_foreign_and_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        Network.load(tmp_path / "absent.npz")
    with pytest.raises(FileFormatError, match="is a folder"):
        Network.load(tmp_path)
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(FileFormatError):
        Network.load(tmp_path / "empty.npz")


# ---------------------------------------------------------------------------- a failed step changes nothing
def _params(trainer):
    return {k: v.copy() for k, v in trainer.engine.params.items()}


def _assert_params_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=str(k))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("lr", [1e30, 1e38, 3e38])
def test_huge_learning_rates_never_leave_non_finite_parameters(optimizer, lr):
    trainer = Trainer(small(), backend="serial", optimizer=optimizer, lr=lr)
    good = _params(trainer)
    for _ in range(4):
        before = _params(trainer)
        try:
            trainer.step(X * 1e3, Y)
        except TrainingError:
            _assert_params_equal(_params(trainer), before)  # exactly the last good step's
            break
        good = _params(trainer)
    else:
        pytest.fail("a learning rate this large should have failed a step")
    assert all(np.isfinite(w).all() for w in trainer.net.weights.values())
    _assert_params_equal({("W", *k): v for k, v in trainer.net.weights.items()},
                         {k: v for k, v in good.items() if k[0] == "W"})


def test_an_update_that_overflows_is_put_back_whole():
    """Finite loss and gradients, but lr * gradient beyond float32: refused, nothing changed."""
    trainer = Trainer(small(), backend="serial", optimizer="sgd", lr=3e38, momentum=0.0)
    before = _params(trainer)
    with pytest.raises(TrainingError, match=r"would have made the weights of edge \d+ -> \d+, into group \d+, "
                                            r"non-finite; it was not applied \(try a learning rate of 3e\+37 or less\)"):
        trainer.step(X * 1e3, Y)
    _assert_params_equal(_params(trainer), before)
    assert trainer.engine.state == {} and trainer.step_count == 0 and trainer.history.steps == []


def test_a_nan_batch_is_refused_and_training_goes_on():
    trainer = Trainer(small(), backend="serial")
    trainer.step(X, Y)
    before = _params(trainer)
    bad = X.copy()
    bad[0, 0] = 1e300  # finite in float64, inf in float32: refused as data or as a step
    with pytest.raises(GenlabError):
        trainer.step(bad, Y)
    _assert_params_equal(_params(trainer), before)
    trainer.step(X, Y)


@pytest.mark.parametrize("policy, message", [
    (dict(noise=float("nan")), "noise must be finite"),
    (dict(noise=-1.0), "noise must be at least 0"),
    (dict(max_groups=10.5), "max_groups must be an integer"),
    (dict(threshold=float("inf")), "threshold must be finite"),
    (dict(every=0), "every must be at least 1"),
    (dict(cooldown=-1), "cooldown must be at least 0"),
    (dict(window=True), "window must be an integer"),
    (dict(mode="diagonal"), "unknown growth mode"),
])
def test_growth_policy_arguments_are_checked(policy, message):
    with pytest.raises(GenlabError, match=message):
        GrowthPolicy(**policy)


# ---------------------------------------------------------------------------- arguments
@pytest.mark.parametrize("make, error, message", [
    (lambda: Trainer(small(), backend="serial", lr=-1), ArgumentError, "lr must be at least 0"),
    (lambda: Trainer(small(), backend="serial", lr=float("nan")), ArgumentError, "lr must be finite"),
    (lambda: Trainer(small(), backend="serial", lr="fast"), ArgumentTypeError, "lr must be a real number"),
    (lambda: Trainer(small(), backend="serial", batch_size=2.5), ArgumentTypeError, "batch_size must be an integer"),
    (lambda: Trainer(small(), backend="serial", batch_size="8"), ArgumentTypeError, "batch_size must be an integer"),
    (lambda: Trainer(small(), backend="serial", batch_size=0), ArgumentError, "batch_size must be at least 1"),
    (lambda: Trainer(small(), backend="serial", seed=-1), ArgumentError, "seed must be at least 0"),
    (lambda: Trainer(small(), backend="serial", dtype="int32"), ArgumentError, "float32 or float64"),
    (lambda: Trainer(small(), backend="serial", optimizer="adagrad"), ArgumentError, "unknown optimizer"),
    (lambda: Trainer(small(), backend="serial", optimizer="adam", momentum=0.9), ArgumentTypeError, "no option"),
    (lambda: Trainer(small(), backend="serial", optimizer="adam", eps=0.0), ArgumentError, "eps must be above 0"),
    (lambda: Trainer(small(), backend="serial", growth="yes"), ArgumentTypeError, "GrowthPolicy"),
    (lambda: Trainer("net", backend="serial"), ArgumentTypeError, "genlab.Network"),
    (lambda: Network(4, 3, dtype="int32"), ArgumentError, "float32 or float64"),
    (lambda: Network(4.0, 3), ArgumentTypeError, "positive integer width"),
    (lambda: Network(4, 3, seed=-2), ArgumentError, "seed must be at least 0"),
])
def test_bad_arguments_are_genlab_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_trainer_setters_and_fit_check_their_arguments():
    trainer = Trainer(small(), backend="serial")
    for value, error in ((-1, ArgumentError), (float("nan"), ArgumentError), ("0.1", ArgumentTypeError)):
        with pytest.raises(error):
            trainer.lr = value
    assert trainer.lr == 1e-3
    for epochs, error in ((-1, ArgumentError), (1.5, ArgumentTypeError), ("2", ArgumentTypeError)):
        with pytest.raises(error, match="epochs"):
            trainer.fit(X, Y, epochs=epochs, progress=False)
    assert trainer.step_count == 0
    trainer.fit(X, Y, epochs=0, progress=False)  # nothing to do, and that is fine
    assert trainer.step_count == 0


@pytest.mark.parametrize("weight, error", [
    (np.full((4, 5), np.nan), ArgumentError), (np.full((4, 5), np.inf), ArgumentError),
    (np.ones((4, 5), np.complex64), ArgumentTypeError), (np.full((4, 5), "w"), ArgumentTypeError),
    ("weights", ArgumentTypeError), (np.ones((4, 5), bool), ArgumentTypeError),
])
def test_connect_refuses_weights_that_are_not_finite_reals(weight, error):
    net = Network(5, 3)
    g = net.add_group(4, inputs=[], outputs=[OUTPUT])
    before = full_state(net)
    with pytest.raises(error):
        net.connect(INPUT, g, weight=weight)
    assert_same_state(full_state(net), before)
    net.connect(INPUT, g, weight=np.ones((4, 5), np.int64))  # integers are real numbers


def test_numpy_ids_are_normalised_and_bools_refused(tmp_path):
    net = Network(5, 3)
    g = net.add_group(4, inputs=[np.int64(INPUT)], outputs=[np.int32(OUTPUT)])
    h = net.add_group(np.int16(3), inputs=[np.uint8(g)], outputs=[OUTPUT])
    assert all(type(x) is int for e in net.edges for x in e) and type(h) is int
    net.save(tmp_path / "n.npz")
    net.copy()
    before = full_state(net)
    for call in (lambda: net.add_group(3, inputs=[True]), lambda: net.connect(False, g),
                 lambda: net.disconnect(g, True), lambda: net.remove_group(np.bool_(True))):
        with pytest.raises(ArgumentTypeError, match="a group id is an int"):
            call()
    assert_same_state(full_state(net), before)


# ---------------------------------------------------------------------------- atomic graph edits
def test_add_group_closing_a_cycle_or_running_out_of_memory_changes_nothing(monkeypatch):
    net = small()
    a, b = net.hidden_groups[0], net.hidden_groups[-1]
    assert net._out[a] and b in dag_reach(net, a)
    before = full_state(net)
    with pytest.raises(GraphError, match="would close the cycle"):
        net.add_group(3, inputs=[b], outputs=[a])
    assert_same_state(full_state(net), before)
    with pytest.raises(GraphError, match="wider than genlab's limit"):
        net.add_group(2**40, inputs=[a])
    calls = []

    def draw_then_fail(rng, shape, fan_in):
        calls.append(shape)
        if len(calls) == 2:
            raise MemoryError("no room for a block")
        return rng.normal(size=shape)

    kind = net.kind(a)
    monkeypatch.setattr(type(kind), "draw_edge", lambda self, spec, rng, shape, fan_in: draw_then_fail(rng, shape, fan_in))
    with pytest.raises(MemoryError):
        net.add_group(3, inputs=[INPUT, a], outputs=[OUTPUT])
    assert_same_state(full_state(net), before)


def dag_reach(net, g):
    from genlab.dag import reach

    return reach(g, net._out)


EDITS = st.lists(st.tuples(st.sampled_from(["add", "connect", "disconnect", "remove", "reroute"]),
                           st.lists(st.integers(-2, 14), min_size=3, max_size=3),
                           st.lists(st.integers(-1, 14), max_size=3), st.lists(st.integers(-1, 14), max_size=3)),
                 min_size=1, max_size=25)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 1000), edits=EDITS)
def test_random_edit_sequences_are_atomic(seed, edits):
    """Every edit either succeeds or raises a genlab error leaving the network exactly as it was."""
    net = Network.random_dag(levels=2, per_level=2, width=(1, 4), fan_in=(1, 2), seed=seed, n_inputs=3,
                             n_outputs=2)
    for name, (a, b, c), ins, outs in edits:
        before = full_state(net)
        try:
            if name == "add":
                net.add_group(c, inputs=ins, outputs=outs)
            elif name == "connect":
                net.connect(a, b)
            elif name == "disconnect":
                net.disconnect(a, b)
            elif name == "remove":
                net.remove_group(a)
            else:
                net.reroute(a, b, c)
        except GenlabError:
            assert_same_state(full_state(net), before)
        assert not [g for g in net.groups if g >= net._next_id]


# ---------------------------------------------------------------------------- the trainer and its network
def test_the_network_always_holds_the_trained_parameters(tmp_path):
    net = small()
    trainer = Trainer(net, backend="serial")
    trainer.step(X, Y)
    engine = trainer.engine.params
    for (s, d), w in net.weights.items():  # read straight from the network the user holds
        np.testing.assert_array_equal(w, engine[("W", s, d)])
    saved = Network.load(net.save(tmp_path / "n.npz"))
    for k, w in saved.weights.items():
        np.testing.assert_array_equal(w, engine[("W", *k)])
    with pytest.raises(ValueError, match="read-only"):
        net.weights[net.edges[0]][:] = 0  # in-place edits of what the trainer wrote are refused


def test_edits_while_a_trainer_holds_the_network_are_followed():
    net = small()
    trainer = Trainer(net, backend="serial")
    trainer.step(X, Y)
    g = net.add_group(3, inputs=[INPUT], outputs=[OUTPUT])
    trainer.step(X, Y)  # the engine reloaded: the new group trains
    assert g in trainer.engine.order and ("W", INPUT, g) in trainer.engine.grads
    e = net.edges[0]
    net.weights[e] = np.zeros_like(net.weights[e])  # a replaced block is taken up too
    trainer.step(X, Y)  # one Adam step (lr 1e-3) from the zeros
    assert np.abs(trainer.engine.params[("W", *e)]).max() <= 1.1e-3
    src = net.inputs(g)[0]
    net.disconnect(src, g)  # g now has no input: the network cannot run
    before = {k: v.copy() for k, v in net.weights.items()}
    with pytest.raises(StaleNetworkError, match="cannot run"):
        trainer.step(X, Y)
    assert trainer.step_count == 3 and before.keys() == net.weights.keys()
    net.connect(src, g)
    trainer.step(X, Y)


def test_the_trainers_dtype_is_the_networks():
    net = small(dtype=np.float32)
    trainer = Trainer(net, backend="serial", dtype="float64",
                      growth=GrowthPolicy(threshold=0.0, every=2, cooldown=0, max_groups=20))
    trainer.fit(X, Y, epochs=2, progress=False)
    assert trainer.history.events and net.dtype == np.float64
    params = trainer.engine.params
    for (s, d), w in net.weights.items():
        assert w.dtype == np.float64
        np.testing.assert_array_equal(w, params[("W", s, d)])  # no rounding through float32 at growth


def test_two_trainers_on_one_network_hand_it_over():
    net = small()
    first = Trainer(net, backend="serial")
    first.step(X, Y)
    second = Trainer(net, backend="serial")  # takes the network with first's parameters
    np.testing.assert_array_equal(second.logits(X), first.logits(X))
    second.step(X, Y)
    first.step(X, Y)  # first takes it back, reloading second's parameters
    np.testing.assert_array_equal(Trainer(net.copy(), backend="serial").logits(X), first.logits(X))


def test_a_reset_takes_the_network_back_from_the_trainer_holding_it():
    net = small()
    first = Trainer(net, backend="serial")
    start = {k: v.copy() for k, v in net.weights.items()}
    first.step(X, Y)
    second = Trainer(net, backend="serial")
    second.step(X, Y)  # second holds newer parameters than the network's arrays
    first.reset()
    assert net.holding.holder is first
    for k, v in start.items():
        np.testing.assert_array_equal(net.weights[k], v)  # the start, not second's parameters
    second.step(X, Y)  # second takes it back from the start first reset to
    assert net.holding.holder is second


@pytest.mark.parametrize("grow", [False, True])
def test_a_reset_drops_the_steps_it_undoes(grow):
    """Steps the network has not been read since are not written over the start a reset puts back."""
    net = small()
    trainer = Trainer(net, backend="serial", growth=GrowthPolicy(threshold=-1.0, every=2 if grow else None,
                                                                  cooldown=0, max_groups=20))
    start = net.copy()
    for _ in range(3):
        trainer.step(X, Y)
    assert len(net.groups) > len(start.groups) if grow else True
    trainer.reset()
    assert net.groups == start.groups and net.weights.keys() == start.weights.keys()
    for k, v in start.weights.items():
        np.testing.assert_array_equal(net.weights[k], v)


def test_a_dropped_trainer_hands_its_last_steps_over_and_leaves_the_network_free():
    import gc

    net = small()
    trainer = Trainer(net, backend="serial")
    trainer.step(X, Y)
    trainer.step(X, Y)  # not yet read: the network's arrays lag behind
    logits = trainer.logits(X)
    del trainer
    gc.collect()
    assert net.holding.holder is None  # held weakly: the trainer is gone
    np.testing.assert_array_equal(Trainer(net, backend="serial").logits(X), logits)
    clone = pickle.loads(pickle.dumps(net))
    assert clone.holding.holder is None and clone.weights.keys() == net.weights.keys()


# ---------------------------------------------------------------------------- growth and pruning rules
def test_pruning_waits_for_enough_rows():
    """One step of batch 1: every hidden group looks constant. None may be judged on that."""
    net = small(3)
    trainer = Trainer(net, backend="serial", optimizer="sgd", lr=0.0,
                      growth=GrowthPolicy(threshold=1e9, prune=True, every=None))
    groups = net.groups
    trainer.step(X[:1], Y[:1])
    assert trainer.grow() == [] and net.groups == groups


def test_max_depth_holds_when_several_groups_deepen_at_once():
    net = Network.mlp([5, 4, 4, 4, 3])  # a chain of 3 hidden groups
    trainer = Trainer(net, backend="serial", growth=GrowthPolicy(
        threshold=-1.0, every=None, cooldown=0, max_groups=40, mode="auto", max_depth=4))
    from genlab.growth import depth_through

    for _ in range(4):
        trainer.step(X, Y)
        trainer.grow()
        assert max(depth_through(trainer.net).values()) <= 4


# ---------------------------------------------------------------------------- checkpoints
def _run(epochs, optimizer="adam", dtype="float32", checkpoint_after=None, tmp_path=None):
    data = genlab.datasets.load("iris")
    policy = GrowthPolicy(threshold=0.0, every=6, cooldown=4, max_groups=14, prune=True, mode="alternate")
    trainer = Trainer(Network.mlp([4, 6, 3], seed=2), backend="serial", seed=5, optimizer=optimizer, dtype=dtype,
                      growth=policy)
    if checkpoint_after is None:
        trainer.fit(*data.train, epochs=epochs, progress=False)
        return trainer
    trainer.fit(*data.train, epochs=checkpoint_after, progress=False)
    path = trainer.save(tmp_path / "run.ckpt", metadata={"note": "half way"})
    del trainer
    resumed = Trainer.load(path, backend="serial")
    assert resumed.metadata == {"note": "half way"}
    resumed.fit(*data.train, epochs=epochs - checkpoint_after, progress=False)
    return resumed


@pytest.mark.parametrize("optimizer, dtype", [("adam", "float32"), ("sgd", "float32"), ("adam", "float64")])
def test_a_resumed_run_equals_an_uninterrupted_one_bit_for_bit(tmp_path, optimizer, dtype):
    whole = _run(5, optimizer, dtype)
    resumed = _run(5, optimizer, dtype, checkpoint_after=2, tmp_path=tmp_path)
    assert whole.history.events and resumed.history.to_dict() == whole.history.to_dict()
    assert resumed.net.edges == whole.net.edges and resumed.net.history == whole.net.history
    for k, w in whole.net.weights.items():
        np.testing.assert_array_equal(resumed.net.weights[k], w)
    for k, st_ in whole.engine.state.items():
        for name, v in st_.items():
            np.testing.assert_array_equal(resumed.engine.state[k][name], v)


def test_a_checkpoint_is_a_network_file_and_reset_goes_back_to_the_start(tmp_path):
    start = Network.mlp([5, 4, 3], seed=1)
    trainer = Trainer(start.copy(), backend="serial")
    trainer.fit(X, Y, epochs=2, progress=False)
    path = trainer.save(tmp_path / "c.npz")
    assert Network.load(path).edges == trainer.net.edges
    resumed = Trainer.load(path, backend="serial")
    resumed.reset()
    for k, w in start.weights.items():
        np.testing.assert_array_equal(resumed.net.weights[k], w)
    with pytest.raises(FileFormatError, match="no trainer"):
        Trainer.load(start.save(tmp_path / "plain.npz"))


def test_damaged_checkpoints_are_refused(tmp_path):
    trainer = Trainer(small(), backend="serial")
    trainer.fit(X, Y, epochs=1, progress=False)
    path = trainer.save(tmp_path / "c.npz")
    raw = path.read_bytes()
    for n in range(0, len(raw), max(1, len(raw) // 60)):
        path.write_bytes(raw[:n])
        with pytest.raises(FileFormatError):
            Trainer.load(path, backend="serial")
    with np.load(io.BytesIO(raw)) as f:
        arrays = dict(f)
    meta = json.loads(arrays["__trainer__"].tobytes())
    for edit in (lambda m: m.update(step_count=-1), lambda m: m.update(batch_size=0),
                 lambda m: m["optimizer"].update(lr=-1), lambda m: m.update(ema=[[99, 1.0]]),
                 lambda m: m.update(rng={"bit_generator": "MT19937"})):
        changed = json.loads(json.dumps(meta))
        edit(changed)
        with open(path, "wb") as f:
            np.savez(f, **{**arrays, "__trainer__": np.frombuffer(json.dumps(changed).encode(), np.uint8)})
        with pytest.raises(FileFormatError, match="__trainer__"):
            Trainer.load(path, backend="serial")


def test_what_could_not_be_loaded_back_is_not_saved(tmp_path):
    net = small()
    trainer = Trainer(net, backend="serial")
    trainer.step(X, Y)
    g = net.add_group(3, inputs=[INPUT])  # feeds nothing yet: the network cannot run
    for save in (lambda: net.save(tmp_path / "n.npz"), lambda: trainer.save(tmp_path / "c.npz")):
        with pytest.raises((GraphError, StaleNetworkError), match="do not reach the output"):
            save()
    assert list(tmp_path.iterdir()) == []
    net.connect(g, OUTPUT)
    path = trainer.save(tmp_path / "c.npz")  # the edit is taken up, then saved with its optimizer state
    assert g in Trainer.load(path, backend="serial").net.groups


def test_checkpoint_metadata_must_be_json():
    trainer = Trainer(small(), backend="serial")
    with pytest.raises(ArgumentTypeError, match="JSON"):
        trainer.save("never-written.npz", metadata={"when": object()})
    assert not os.path.exists("never-written.npz")


# ---------------------------------------------------------------------------- the command line
def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "genlab", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "GENLAB_BACKEND": "serial"})


@pytest.mark.parametrize("args", [
    ["train", "--batch-size", "0"], ["train", "--batch-size", "2.5"], ["train", "--max-groups", "2"],
    ["train", "--seed", "-1"], ["demo", "--epochs", "0"], ["train", "--epochs", "-1"], ["train", "--lr", "-1"],
    ["train", "--lr", "inf"], ["train", "--dataset", "mnist"], ["train", "--hidden", "0,4"],
    ["train", "--save", "/no/such/folder/model.npz"], ["train", "--resume", "/no/such/checkpoint.npz"],
    ["train", "--start", "single", "--hidden", "4,4"], ["demo", "--out", "/proc/version/pictures"],
])
def test_bad_flags_are_one_line_and_exit_2_before_any_work(args):
    result = cli(*args, "--quiet")
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""


def test_save_and_resume_from_the_command_line(tmp_path):
    first = cli("train", "--dataset", "iris", "--epochs", "2", "--start", "single", "--grow", "--save", "run.ckpt",
                "--quiet", "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["saved"] == "run.ckpt" and (tmp_path / "run.ckpt").exists()
    again = cli("train", "--resume", "run.ckpt", "--epochs", "1", "--quiet", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    report2 = json.loads(again.stdout)
    assert report2["dataset"] == "iris" and report2["steps"] > report["steps"]
    refused = cli("train", "--resume", "run.ckpt", "--hidden", "8", "--quiet", cwd=tmp_path)
    assert refused.returncode == 2 and "--hidden cannot change it" in refused.stderr
    text = cli("train", "--dataset", "iris", "--epochs", "1", "--save", "plain", "--quiet", cwd=tmp_path)
    assert text.returncode == 0 and "saved" in text.stdout and (tmp_path / "plain").exists()


def test_saving_through_a_symbolic_link_replaces_its_target(tmp_path):
    target = tmp_path / "models" / "current.npz"
    target.parent.mkdir()
    small(1).save(target)
    link = tmp_path / "latest.npz"
    link.symlink_to(target)
    net = small(2)
    assert net.save(link) == link
    assert link.is_symlink() and Network.load(target).edges == net.edges


def test_a_checkpoint_of_a_function_criterion_needs_the_policy_back(tmp_path):
    policy = GrowthPolicy(criterion=lambda stats: stats["grad_std"], every=None)
    trainer = Trainer(small(), backend="serial", growth=policy)
    trainer.step(X, Y)
    path = trainer.save(tmp_path / "c.npz")
    with pytest.raises(ArgumentError, match="criterion was a function"):
        Trainer.load(path, backend="serial")
    resumed = Trainer.load(path, backend="serial", growth=policy)
    assert resumed.step_count == 1 and resumed.growth is policy


JSON_LEAVES = st.recursive(st.none() | st.booleans() | st.integers(-3, 2**40) | st.floats(allow_nan=False)
                           | st.text(max_size=5), lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=6)


def _paths(value, prefix=()):
    """Every place in a JSON document: (path, value)."""
    yield prefix, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _rewrite_member(path, name: str, change) -> None:
    """Member `name` of the .npz at `path` replaced by change(member), the file written again."""
    with np.load(path) as f:
        arrays = dict(f)
    arrays[name] = change(arrays[name])
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _replace_one_value(member: np.ndarray, data) -> np.ndarray:
    """A JSON member with one of its values (drawn) replaced by any JSON value (drawn)."""
    doc = json.loads(member.tobytes())
    where = data.draw(st.sampled_from([p for p, _ in _paths(doc) if p]))
    node = doc
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = data.draw(JSON_LEAVES)
    return np.frombuffer(json.dumps(doc).encode(), np.uint8)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_tampering_with_the_metadata_is_refused_or_harmless(tmp_path_factory, data):
    """Replace any one value of the metadata with any JSON value: loading gives a valid network
    or FileFormatError, never another exception."""
    folder = tmp_path_factory.mktemp("tamper")
    net = small()
    net.connect(net.hidden_groups[-1], net.hidden_groups[0], delay=1)
    path = net.save(folder / "n.npz")
    _rewrite_member(path, "__meta__", lambda member: _replace_one_value(member, data))
    try:
        loaded = Network.load(path)
    except FileFormatError:
        return
    loaded.validate()


def test_a_width_beyond_genlabs_limit_in_a_file_is_a_file_format_error(tmp_path):
    """Found by the property above: an output width of 2**24 + 1 in the metadata was a GraphError."""
    from genlab.checks import MAX_WIDTH

    path = small().save(tmp_path / "n.npz")

    def widen(member):
        doc = json.loads(member.tobytes())
        doc["widths"]["1"] = MAX_WIDTH + 1
        return np.frombuffer(json.dumps(doc).encode(), np.uint8)

    _rewrite_member(path, "__meta__", widen)
    with pytest.raises(FileFormatError, match="describes an invalid network: the output group of 16777217"):
        Network.load(path)


@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_any_tampering_with_a_checkpoint_is_refused_or_harmless(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("tamper_ckpt")
    trainer = Trainer(small(), backend="serial", growth=GrowthPolicy(threshold=0.0, every=2, cooldown=0, prune=True))
    trainer.fit(X, Y, epochs=1, progress=False)
    path = trainer.save(folder / "c.npz")
    _rewrite_member(path, "__trainer__", lambda member: _replace_one_value(member, data))
    try:
        resumed = Trainer.load(path, backend="serial")
    except (FileFormatError, ArgumentError):
        return
    resumed.step(X, Y)


def test_blocks_replaced_by_hand_are_checked_before_training_or_saving(tmp_path):
    net = small()
    e = net.edges[0]
    net.weights[e] = np.full_like(net.weights[e], np.nan)
    with pytest.raises(ArgumentError, match=re.escape(f"weight block {e}")):
        Trainer(net, backend="serial")
    with pytest.raises(ArgumentError, match="not finite"):
        net.save(tmp_path / "n.npz")
    assert list(tmp_path.iterdir()) == []
    net.weights[e] = np.ones(net.weights[e].shape, np.int64)  # integers: saved in the network's dtype
    loaded = Network.load(net.save(tmp_path / "n.npz"))
    assert loaded.weights[e].dtype == np.float32 and (loaded.weights[e] == 1).all()
    trainer = Trainer(net, backend="serial")
    net.weights[e] = np.full(net.weights[e].shape, np.inf)
    with pytest.raises(StaleNetworkError, match="not finite"):
        trainer.step(X, Y)


def test_settings_changed_after_construction_are_checked_too():
    policy = GrowthPolicy()
    for name, value in (("noise", float("nan")), ("threshold", "high"), ("mode", "sideways"), ("max_groups", 2),
                        ("every", 0), ("criterion", "luck")):
        with pytest.raises(GenlabError, match=name.replace("criterion", "growth criterion").replace("mode", "growth mode")):
            setattr(policy, name, value)
    policy.threshold = 1e-2  # what the lab's slider does
    assert policy.threshold == 1e-2 and policy.noise == 1.0
    trainer = Trainer(small(), backend="serial")
    for value in (0, 2.5, "8"):
        with pytest.raises(GenlabError, match="batch_size"):
            trainer.batch_size = value
    trainer.batch_size = np.int64(16)
    assert trainer.batch_size == 16 and type(trainer.batch_size) is int


def test_a_member_the_format_does_not_name_is_refused_and_never_unpickled(tmp_path):
    """A pickled object array (or anything else) added to a saved network or a checkpoint: the
    file is refused, naming the member, before anything reads it."""
    import zipfile

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    trainer = Trainer(small(), backend="serial", seed=0)
    trainer.fit(X, Y, epochs=1, progress=False)
    for path, load in ((small().save(tmp_path / "n.npz"), Network.load),
                       (trainer.save(tmp_path / "c.ckpt"), lambda p: Trainer.load(p, backend="serial"))):
        with np.load(path) as f:
            arrays = dict(f)
        arrays["evil"] = np.array([Boom()], dtype=object)
        with open(path, "wb") as f:
            np.savez(f, **arrays)
        with pytest.raises(FileFormatError, match="unexpected member 'evil.npy'"):
            load(path)
        with zipfile.ZipFile(path, "a") as z:  # not even an .npy member
            z.writestr("notes.txt", "hello")
        with pytest.raises(FileFormatError, match="unexpected member"):
            load(path)
    Network.load(trainer.save(tmp_path / "ok.ckpt"))  # a checkpoint's own members are its format's


def test_numbers_beyond_the_float_type_are_refused_with_where_they_are():
    """Inputs float32 cannot hold, inputs so large the outputs overflow, and given weights float32
    cannot hold: each a genlab error naming the place, never a silent NaN or infinity."""
    trainer = Trainer(small(), backend="serial", seed=0)
    x = X.copy()
    x[3, 2] = 1e39
    for call in (lambda: trainer.predict(x), lambda: trainer.evaluate(x, Y), lambda: trainer.step(x, Y)):
        with pytest.raises(genlab.DataError, match=r"beyond what float32 holds .* at row 3, column 2 \(1e\+39\)"):
            call()
    x[3] = 3e38  # float32 holds it, but not the sums it makes
    ones = Network.mlp([5, 8, 3], seed=0)
    for w in ones.weights.values():
        w[...] = 1.0
    trainer = Trainer(ones, backend="serial", seed=0)
    for call in (lambda: trainer.predict(x), lambda: trainer.evaluate(x, Y)):
        with pytest.raises(genlab.DataError, match="outputs for row 3 of X are not finite: its values reach 3e"):
            call()
    before = {k: w.copy() for k, w in trainer.net.weights.items()}
    with pytest.raises(genlab.TrainingError, match="not applied .*scale the inputs down"):
        trainer.step(x, Y)
    assert all(np.array_equal(before[k], w) for k, w in trainer.net.weights.items())
    net = Network(3, 2, seed=0)
    g = net.add_group(4, inputs=[net.input], outputs=[net.output])
    weight = np.zeros((2, 3))
    weight[1, 2] = 1e300
    with pytest.raises(genlab.ArgumentError, match=r"holds 1e\+300 at index \[1, 2\], beyond what float32 holds"):
        net.connect(net.input, net.output, weight=weight)
    assert (net.input, net.output) not in net.weights and g in net.widths
    assert float64_ok(weight)


def float64_ok(weight) -> bool:
    net = Network(3, 2, seed=0, dtype=np.float64)
    net.add_group(4, inputs=[net.input], outputs=[net.output])
    net.connect(net.input, net.output, weight=weight)  # float64 holds 1e300
    return net.weights[(net.input, net.output)][1, 2] == 1e300


@pytest.mark.parametrize("width, fan_in, says", [
    ((5, 2), 2, r"width's range \(5, 2\) is empty"), (4, (3, 1), r"fan_in's range \(3, 1\) is empty"),
    ((0, 3), 2, "width's bounds must be"), (4, (1, 2, 3), "fan_in must be an int or a"), ("4", 2, "width must be"),
])
def test_random_dag_ranges_are_checked(width, fan_in, says):
    with pytest.raises((genlab.ArgumentError, genlab.ArgumentTypeError), match=says):
        Network.random_dag(levels=2, per_level=2, width=width, fan_in=fan_in, seed=0)


def test_a_folder_that_refuses_the_temporary_file_is_a_save_error(tmp_path, monkeypatch):
    """os.access may say yes where the folder still refuses a new file (a read-only mount, or any
    folder for root): the temporary file's creation failing is a SaveError too, not a traceback."""
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    path = tmp_path / "n.npz"
    path.write_bytes(b"before")
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(genlab.SaveError, match="Permission denied.*the file there before is unchanged"):
        small().save(path)
    assert path.read_bytes() == b"before"


class _Restorable:
    """An engine as guard.careful sees it: one parameter, a log of what was done to it."""

    def __init__(self, after: float):
        from genlab.guard import StepGuard
        from genlab.optim import SGD

        self.guard, self.optimizer = StepGuard(np.float32), SGD(lr=0.5)
        self.value, self.after, self.log = 1.0, after, []

    @property
    def params(self):
        return {("b", 3): np.array([self.value])}

    def backup_state(self):
        self.log.append("backup")
        return self.value

    def restore_state(self, saved):
        self.log.append("restore")
        self.value = saved

    def exact_bounds(self):
        return abs(self.value) if np.isfinite(self.value) else np.inf, 0.0

    def apply(self):
        self.log.append("apply")
        self.value = self.after
        return "applied"


def test_the_careful_update_is_one_function_for_every_engine():
    """guard.careful: backup, apply, exact bounds; a non-finite result is put back (the bounds
    measured again, of what was put back) and refused naming where; a finite one keeps its bounds;
    a step that refuses itself (apply raises) is not put back."""
    from genlab.guard import careful

    fine = _Restorable(after=2.0)
    assert careful(fine, fine.apply) == "applied" and fine.log == ["backup", "apply"] and fine.guard.param == 2.0
    bad = _Restorable(after=np.inf)
    with pytest.raises(TrainingError, match=r"would have made group 3's own parameters non-finite; it was not "
                                            r"applied \(try a learning rate of 0.05 or less\)"):
        careful(bad, bad.apply)
    assert bad.log == ["backup", "apply", "restore"] and bad.value == 1.0 and bad.guard.param == 1.0
    refused = _Restorable(after=3.0)

    def refuses():
        refused.log.append("refused")
        raise TrainingError("the loss became nan")

    with pytest.raises(TrainingError, match="the loss became nan"):
        careful(refused, refuses)
    assert refused.log == ["backup", "refused"] and refused.value == 1.0


def test_every_engine_that_steps_takes_the_careful_update_from_the_guard():
    """The serial, CUDA and recurrent CUDA engines implement guard.Restorable and call careful."""
    import inspect

    from genlab.engines import SerialEngine
    from genlab.engines.cuda import CudaEngine
    from genlab.engines.cuda.recurrent import RecurrentCudaEngine

    for cls in (SerialEngine, CudaEngine, RecurrentCudaEngine):
        assert all(callable(getattr(cls, name)) for name in ("backup_state", "restore_state", "exact_bounds")), cls
        assert "careful(self" in inspect.getsource(cls.step), cls
