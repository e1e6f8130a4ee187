"""Group kinds beyond dense: convolution groups over image grids, attention groups over token
sequences. The serial engine is the reference: its gradients are checked against finite
differences in float64 and against PyTorch (conv2d, scaled_dot_product_attention)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import genlab
import genlab.starts
from genlab import DataError, FileFormatError, GraphError, GrowthPolicy, Network, Trainer
from genlab.engines import SerialEngine
from genlab.growth import duplicate_depth, duplicate_width
from genlab.kinds import InexactFold
from genlab.optim import SGD
from genlab.pruning import prune_group


def image_net(seed=1, dtype=np.float64):
    """conv(3) -> conv(4, 1x1, stride 2, also from the input) -> conv(5) -> dense(6, also from conv a) -> output."""
    net = Network(input_shape=(2, 6, 5), n_outputs=4, seed=seed, dtype=dtype)
    a = net.add_group(3, inputs=[net.input], kind="conv", kernel=3)
    b = net.add_group(4, inputs=[a, net.input], kind="conv", kernel=1, stride=2)
    c = net.add_group(5, inputs=[b], kind="conv", kernel=3)
    net.add_group(6, inputs=[c, a], outputs=[net.output])
    net.connect(b, net.output)
    return net


def sequence_net(seed=2, dtype=np.float64):
    """attention(4, 2 heads, positions) -> dense(6, also from the input) -> attention(6, 3 heads, also
    from a) -> output."""
    net = Network(input_shape=(5, 3), n_outputs=4, seed=seed, dtype=dtype)
    a = net.add_group(4, inputs=[net.input], kind="attention", heads=2, positions=True)
    d = net.add_group(6, inputs=[a, net.input])
    b = net.add_group(6, inputs=[d, a], kind="attention", heads=3)
    net.connect(b, net.output)
    net.connect(a, net.output)
    return net


NETS = {"image": (image_net, (7, 2, 6, 5)), "sequence": (sequence_net, (7, 5, 3))}


def batch(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape), rng.integers(0, 4, shape[0])


# ---------------------------------------------------------------------------- the interface
def test_the_interface_from_the_issue():
    net = Network(input_shape=(1, 8, 8), n_outputs=10)
    c = net.add_group(8, inputs=[net.input], kind="conv", kernel=3)
    s = net.add_group(16, inputs=[c], kind="conv", kernel=3, stride=2)
    d = net.add_group(32, inputs=[s], outputs=[net.output])
    assert net.sample_shape(c) == (8, 8, 8) and net.sample_shape(s) == (16, 4, 4)
    assert net.weights[(c, s)].shape == (16, 8, 3, 3) and net.weights[(s, d)].shape == (32, 16 * 4 * 4)
    seq = Network(input_shape=(8, 8), n_outputs=10)
    a = seq.add_group(16, inputs=[seq.input], kind="attention", heads=2)
    seq.connect(a, seq.output)
    assert seq.sample_shape(a) == (8, 16) and seq.biases[a].shape == (16 + 4 * 16 * 16,)
    assert Network(n_inputs=4, n_outputs=3).input_shape == (4,)
    odd = Network(input_shape=(1, 7, 5), n_outputs=2)
    g = odd.add_group(2, inputs=[odd.input], kind="conv", stride=2)
    assert odd.sample_shape(g) == (2, 4, 3)  # stride 2 halves the grid, rounding up


@pytest.mark.parametrize("edit, message", [
    (lambda: Network(4, 2).add_group(3, inputs=[0], kind="conv"), "a conv group runs in a network of image inputs"),
    (lambda: Network(input_shape=(1, 4, 4), n_outputs=2).add_group(3, inputs=[0], kind="attention"),
     "an? attention group runs in a network of sequence inputs"),
    (lambda: Network(input_shape=(1, 4, 4), n_outputs=2).add_group(3, inputs=[0], kind="conv", kernel=2),
     "kernel is odd"),
    (lambda: Network(input_shape=(1, 4, 4), n_outputs=2).add_group(3, inputs=[0], kind="conv", stride=0),
     "stride is a whole number"),
    (lambda: Network(input_shape=(1, 4, 4), n_outputs=2).add_group(3, inputs=[0], kind="conv", dilation=2),
     "a conv group takes kernel and stride; got dilation"),
    (lambda: Network(input_shape=(4, 3), n_outputs=2).add_group(6, inputs=[0], kind="attention", heads=4),
     r"width \(6\) is a multiple of its heads \(4\)"),
    (lambda: Network(input_shape=(4, 3), n_outputs=2).add_group(6, inputs=[0], heads=2), "a dense group takes no options"),
    (lambda: Network(input_shape=(4, 3, 2, 1), n_outputs=2), "input_shape has 1"),
    (lambda: Network(4, 2, input_shape=(4,)), "not both"),
])
def test_bad_kinds_and_options_are_clear_errors(edit, message):
    with pytest.raises(GraphError, match=message):
        edit()


def test_edges_into_conv_groups_need_a_grid_that_fits():
    net = Network(input_shape=(1, 8, 8), n_outputs=2)
    half = net.add_group(2, inputs=[net.input], kind="conv", stride=2)
    full = net.add_group(2, inputs=[net.input], kind="conv")
    dense = net.add_group(3, inputs=[full])
    before = (net.edges, dict(net.grids))
    with pytest.raises(GraphError, match="group 2's grid is 4x4 but conv group 3 reads 8x8 maps"):
        net.connect(half, full)
    with pytest.raises(GraphError, match="a conv group reads conv groups or the image input, and group 4 is dense"):
        net.add_group(2, inputs=[dense], kind="conv")
    lonely = net.add_group(2, kind="conv")
    with pytest.raises(GraphError, match="has no inputs yet, so its grid is unknown"):
        net.connect(lonely, dense)
    with pytest.raises(GraphError, match="recurrent edges"):
        net.connect(full, full, delay=1)
    assert net.edges == before[0] and {g: v for g, v in net.grids.items() if g != lonely} == before[1]


# ---------------------------------------------------------------------------- the reference
@pytest.mark.parametrize("form", NETS)
def test_gradients_match_finite_differences(form):
    make, shape = NETS[form]
    net = make()
    x, y = batch(shape)
    engine = SerialEngine(net, SGD(0.1), dtype="float64")
    engine.forward(x)
    engine.backward(y)
    rng = np.random.default_rng(1)
    for key, p in engine.params.items():
        for i in rng.choice(p.size, size=min(5, p.size), replace=False):
            old, eps = p.flat[i], 1e-6
            p.flat[i] = old + eps
            engine.forward(x)
            up = engine.backward(y)
            p.flat[i] = old - eps
            engine.forward(x)
            down = engine.backward(y)
            p.flat[i] = old
            assert engine.grads[key].flat[i] == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-8), key


@pytest.mark.parametrize("form", NETS)
def test_forward_and_gradients_match_pytorch(form):
    torch = pytest.importorskip("torch")
    make, shape = NETS[form]
    net = make()
    x, y = batch(shape, seed=3)
    module = genlab.to_torch(net)
    logits = module(torch.from_numpy(x))
    torch.nn.functional.cross_entropy(logits, torch.from_numpy(y)).backward()
    engine = SerialEngine(net, SGD(0.1), dtype="float64")
    np.testing.assert_allclose(engine.forward(x), logits.detach().numpy(), rtol=1e-10, atol=1e-12)
    engine.backward(y)
    for (s, d) in net.weights:
        np.testing.assert_allclose(engine.grads[("W", s, d)], module.weights[f"W_{s}_{d}"].grad.numpy(), atol=1e-12)
    for g in net.biases:
        np.testing.assert_allclose(engine.grads[("b", g)], module.biases[f"b_{g}"].grad.numpy(), atol=1e-12)


def test_conv_matches_torch_conv2d_with_stride_and_odd_grids():
    torch = pytest.importorskip("torch")
    from genlab.kinds.conv import conv, conv_input_grad

    rng = np.random.default_rng(0)
    for kernel, stride, (h, w) in [(3, 1, (5, 7)), (3, 2, (7, 4)), (5, 2, (6, 6)), (1, 3, (7, 8))]:
        x, weight = rng.normal(size=(2, 3, h, w)), rng.normal(size=(4, 3, kernel, kernel))
        xt = torch.from_numpy(x).requires_grad_()
        out = torch.nn.functional.conv2d(xt, torch.from_numpy(weight), stride=stride, padding=kernel // 2)
        np.testing.assert_allclose(conv(x, weight, stride), out.detach().numpy(), atol=1e-12)
        dz = rng.normal(size=out.shape)
        out.backward(torch.from_numpy(dz))
        np.testing.assert_allclose(conv_input_grad(dz, weight, stride, x.shape), xt.grad.numpy(), atol=1e-12)


# ---------------------------------------------------------------------------- growth and pruning
@pytest.mark.parametrize("form", NETS)
@pytest.mark.parametrize("grow", [duplicate_depth, duplicate_width])
def test_growth_preserves_the_function_for_every_kind(form, grow):
    make, shape = NETS[form]
    x, _ = batch(shape)
    for g in make().hidden_groups:
        net = make()
        before = SerialEngine(net, SGD(0.1), dtype="float64").forward(x)
        new = grow(net, g, step=3, seed=7)
        net.validate()
        assert net.kinds[new] == net.kinds[g] and net.sample_shape(new) == net.sample_shape(g)
        after = SerialEngine(net, SGD(0.1), dtype="float64").forward(x)
        if grow is duplicate_depth:
            np.testing.assert_array_equal(after, before)  # the identity is exact
        else:
            np.testing.assert_allclose(after, before, rtol=1e-12, atol=1e-12)  # split halves, noise cancels


def test_a_depth_copy_of_a_strided_conv_keeps_its_grid():
    net = image_net()
    new = duplicate_depth(net, 3, step=0, seed=0)
    assert net.options[new] == {"kernel": 1, "stride": 1} and net.sample_shape(new) == net.sample_shape(3)


def test_a_depth_copy_of_attention_starts_as_the_identity_and_can_learn():
    net = sequence_net()
    new = duplicate_depth(net, 2, step=0, seed=0)
    own = net.biases[new]
    d = net.widths[new]
    assert not own[d + 3 * d * d:].any() and own[d:d + 3 * d * d].std() > 0  # Wo = 0, Wq, Wk, Wv drawn
    x, y = batch(NETS["sequence"][1])
    engine = SerialEngine(net, SGD(0.1), dtype="float64")
    engine.forward(x)
    engine.backward(y)
    assert np.abs(engine.grads[("b", new)][d + 3 * d * d:]).max() > 0  # Wo learns


def test_pruning_folds_exactly_into_dense_consumers_and_refuses_conv_borders():
    net = image_net()
    x, _ = batch(NETS["image"][1])
    a, c, dense = 2, 4, 5
    constant = np.random.default_rng(0).uniform(0.5, 1.0, net.sample_shape(c)).ravel()
    # c feeds only the dense group (reading it flattened): folding its constant output is exact
    expected = net.biases[dense] + net.weights[(c, dense)] @ constant
    net_a = net.copy()
    prune_group(net_a, c, constant)
    assert c not in net_a.widths
    np.testing.assert_allclose(net_a.biases[dense], expected, rtol=1e-12)
    # a constant feeding a 1x1 conv group folds too
    ones = net.copy()
    prune_group(ones, a, np.ones(int(np.prod(net.sample_shape(a)))))
    assert a not in ones.widths
    # a constant feeding a 3x3 conv group: zero padding makes the borders differ, no bias adds it
    with pytest.raises(InexactFold, match="differs at the borders"):
        prune_group(net.copy(), 3, np.ones(int(np.prod(net.sample_shape(3)))))  # 3 feeds conv group 4 (3x3)
    # ... unless it is zero (a dead group), which adds nothing anywhere
    small = Network(input_shape=(1, 5, 5), n_outputs=2, dtype=np.float64)
    dead = small.add_group(2, inputs=[small.input], kind="conv")
    reader = small.add_group(2, inputs=[dead, small.input], kind="conv", outputs=[small.output])
    x = np.random.default_rng(0).normal(size=(3, 1, 5, 5))
    small.biases[dead] = np.full(2, -1e3)  # relu: always zero
    before = SerialEngine(small, SGD(), dtype="float64").forward(x)
    prune_group(small, dead, np.zeros(2 * 5 * 5))
    assert dead not in small.widths and small.inputs(reader) == [small.input]
    np.testing.assert_allclose(SerialEngine(small, SGD(), dtype="float64").forward(x), before, atol=1e-12)


def test_a_grower_skips_groups_it_cannot_fold(caplog):
    net = image_net(dtype=np.float32)
    grower = genlab.growth.Grower(GrowthPolicy(prune=True, threshold=1e9))
    grower.rows = grower.batches = 10**6

    class Report:  # an engine whose every group was constant at one
        pinned = frozenset()  # (Engine.pinned: no group it needs kept)

        def prune_report(self, judge):
            return {g: np.ones(int(np.prod(net.sample_shape(g)))) for g in net.hidden_groups}, {}

    grower.engine_tracks = True
    with caplog.at_level("INFO", logger="genlab.growth"):
        grower._prune(net, 5, Report(), [])
    assert "is not pruned" in caplog.text and "borders" in caplog.text
    net.validate()


# ---------------------------------------------------------------------------- files, data, training, drawing
@pytest.mark.parametrize("form", NETS)
def test_save_and_load_keep_shapes_options_and_grids(tmp_path, form):
    net = NETS[form][0]()
    back = Network.load(net.save(tmp_path / "net.npz"))
    assert (back.input_shape, back.options, back.grids, back.kinds) == (net.input_shape, net.options, net.grids, net.kinds)
    x, _ = batch(NETS[form][1])
    np.testing.assert_array_equal(SerialEngine(back, SGD(), dtype="float64").forward(x),
                                  SerialEngine(net, SGD(), dtype="float64").forward(x))


def test_a_file_with_bad_options_is_refused(tmp_path):
    import json

    path = image_net().save(tmp_path / "net.npz")
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    for field, value, message in (("options", {"2": {"kernel": 4, "stride": 1}}, "kernel is odd"),
                                  ("grids", {"2": [6]}, "not a conv group's"),
                                  ("input_shape", [3, 6, 5], "does not give the input group's width")):
        arrays["__meta__"] = np.frombuffer(json.dumps({**meta, field: value}).encode(), np.uint8)
        np.savez(path, **arrays)
        with pytest.raises(FileFormatError, match=message):
            Network.load(path)


def test_the_datasets_for_kinds():
    images, rows = genlab.datasets.load("digits_images"), genlab.datasets.load("digits_rows")
    assert images.X_train.shape[1:] == (1, 8, 8) and images.image and images.sample_shape == (1, 8, 8)
    assert rows.X_train.shape[1:] == (8, 8) and rows.sequence
    assert abs(float(images.X_train.mean())) < 1e-5 and abs(float(images.X_train.std()) - 1) < 1e-4  # per channel


def test_training_checks_the_sample_shape():
    net = Network.conv_chain((1, 8, 8), [2], 3)
    trainer = Trainer(net, backend="serial")
    with pytest.raises(DataError, match=r"reads samples of shape \(1, 8, 8\)"):
        trainer.step(np.zeros((4, 64)), np.zeros(4, int))


@pytest.mark.parametrize("name, kind", [("digits_images", "conv"), ("digits_rows", "attention")])
def test_a_single_group_of_each_kind_learns_and_grows_its_kind(name, kind):
    data = genlab.datasets.load(name)
    net = genlab.starts.build(data, kind, None, True, seed=0)
    trainer = Trainer(net, backend="serial", optimizer="adam", lr=0.01, seed=0,
                      growth=GrowthPolicy(threshold=0.0, every=20, cooldown=20, max_groups=6))
    trainer.fit(*data.train, epochs=3, progress=False)
    grown = trainer.net
    assert len(grown.groups) > 3 and {grown.kinds[g] for g in grown.hidden_groups} == {kind}
    assert trainer.evaluate(*data.test)["accuracy"] > 0.5


def test_the_lab_draws_each_kind_with_its_label_and_shape():
    net = Network.conv_chain((1, 8, 8), [8, 16], 10, strides=[1, 2])
    source = genlab.viz.draw(net).source
    assert "conv 8ch 3x3" in source and "conv 16ch 3x3 /2" in source and "box3d" in source and "1x8x8" in source
    seq = Network.attention_chain((8, 8), [16], 10, heads=2)
    source = genlab.viz.draw(seq).source
    assert "attn 2 heads +pos, 16" in source and "hexagon" in source


@pytest.mark.parametrize("name, kind, label", [("digits_images", "conv", "conv 8ch 3x3"),
                                               ("digits_rows", "attention", "attn 2 heads +pos, 16")])
def test_the_lab_heatmap_and_animation_work_with_every_kind(name, kind, label):
    from genlab import Lab

    data = genlab.datasets.load(name)
    trainer = Trainer(genlab.starts.build(data, kind, None, True, seed=0), backend="serial", seed=0,
                      growth=GrowthPolicy(threshold=0.0, every=None, cooldown=0, max_groups=8))
    lab = Lab(trainer, data, refresh_every=10, min_interval=0.0)
    lab.n.value = 20
    lab.run_button.click()
    lab.grow_button.click()
    assert trainer.history.events and label in lab.dag.value and " duplicated " in lab.message.value
    assert bytes(lab.heat.value[:8]) == b"\x89PNG\r\n\x1a\n"
    frames = genlab.animation.frames(trainer.history)
    assert len(frames) == 2 and label in frames[-1].source and genlab.kinds.KINDS[kind].node_shape in frames[-1].source
    with pytest.raises(DataError, match="the data's samples have shape"):
        Lab(Trainer(Network.conv_chain((1, 4, 4), [2], 10), backend="serial"), data)


@pytest.mark.parametrize("form", NETS)
def test_a_checkpoint_of_a_network_with_kinds_resumes_bit_for_bit(tmp_path, form):
    make, shape = NETS[form]
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, *shape[1:])), rng.integers(0, 4, 64)
    policy = lambda: GrowthPolicy(threshold=0.0, every=3, cooldown=2, max_groups=9)
    straight = Trainer(make(dtype=np.float32), backend="serial", optimizer="adam", seed=0, batch_size=16, growth=policy())
    straight.fit(x, y, epochs=3, progress=False)
    first = Trainer(make(dtype=np.float32), backend="serial", optimizer="adam", seed=0, batch_size=16, growth=policy())
    first.fit(x, y, epochs=1, progress=False)
    first.save(tmp_path / "run.npz")
    resumed = Trainer.load(tmp_path / "run.npz", backend="serial")
    resumed.fit(x, y, epochs=2, progress=False)
    assert len(straight.net.groups) > len(make().groups)  # it grew, before and after the checkpoint
    assert resumed.net.edges == straight.net.edges and resumed.net.options == straight.net.options
    for key, w in straight.net.weights.items():
        np.testing.assert_array_equal(resumed.net.weights[key], w)
    for g, b in straight.net.biases.items():
        np.testing.assert_array_equal(resumed.net.biases[g], b)


def test_your_own_images_as_arrays():
    images = genlab.datasets.load("digits_images")
    own = genlab.datasets.from_arrays(images.X_train, images.y_train)
    assert own.image and own.sample_shape == (1, 8, 8) and len(own.y_train) + len(own.y_test) == len(images.y_train)
    with pytest.raises(DataError, match="NaN or infinite"):
        genlab.datasets.from_arrays(np.full((4, 1, 2, 2), np.nan), [0, 1, 0, 1])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), image=st.booleans(),
       moves=st.lists(st.tuples(st.sampled_from(["depth", "width"]), st.integers(0, 10**6)), min_size=1, max_size=6))
def test_random_growth_sequences_on_mixed_kinds_keep_the_function_and_the_file(tmp_path_factory, seed, image, moves):
    """Any sequence of depth- and width-wise copies of any groups of a random network of conv or
    attention and dense groups: the network stays valid, computes the same function (float64), and
    a save/load round trip gives it back exactly."""
    from conftest import random_image_net, random_sequence_net

    net, x = (random_image_net if image else random_sequence_net)(seed)
    net.astype(np.float64)
    before, groups = SerialEngine(net, SGD(), dtype="float64").forward(x), len(net.groups)
    for step, (move, pick) in enumerate(moves):
        g = net.hidden_groups[pick % len(net.hidden_groups)]
        (duplicate_depth if move == "depth" else duplicate_width)(net, g, step=step, seed=seed)
    net.validate()
    assert len(net.groups) == groups + len(moves)
    np.testing.assert_allclose(SerialEngine(net, SGD(), dtype="float64").forward(x), before, rtol=1e-9, atol=1e-9)
    back = Network.load(net.save(tmp_path_factory.mktemp("grown") / "net.npz"))
    assert (back.edges, back.options, back.grids, back.kinds) == (net.edges, net.options, net.grids, net.kinds)
    for key, w in net.weights.items():
        np.testing.assert_array_equal(back.weights[key], w)


def test_positions_tell_the_order_of_the_tokens():
    """Without positions an attention group and the output's average see a set of tokens: the
    logits do not change when the tokens are shuffled; with them they do, and the encoding is
    the sinusoidal one."""
    from genlab.kinds.attention import positions

    x = np.random.default_rng(0).normal(size=(6, 5, 3))
    shuffled = x[:, [3, 0, 4, 1, 2]]
    for encoded in (False, True):
        net = Network(input_shape=(5, 3), n_outputs=4, seed=1, dtype=np.float64)
        net.add_group(4, inputs=[net.input], outputs=[net.output], kind="attention", heads=2, positions=encoded)
        net.init_params(1)
        engine = SerialEngine(net, SGD(), dtype="float64")
        moved = np.abs(engine.forward(x) - engine.forward(shuffled)).max()
        assert (moved > 1e-3) if encoded else (moved < 1e-12)
    p = positions(5, 4)
    assert p[0].tolist() == [0.0, 1.0, 0.0, 1.0] and p[3, 0] == pytest.approx(np.sin(3.0))
    assert p[3, 3] == pytest.approx(np.cos(3.0 / 100.0))
    with pytest.raises(GraphError, match="positions is True .* or False, got 'yes'"):
        net.add_group(4, inputs=[net.input], kind="attention", positions="yes")
    assert "+pos" in net.kind(2).label(net.spec(2))


def test_attention_with_positions_learns_the_rows_of_digits():
    """digits_rows as 8 tokens: the order of the rows is what tells digits apart (0.73 without)."""
    data = genlab.datasets.load("digits_rows")
    net = Network.attention_chain(data.sample_shape, [32], data.n_classes, seed=0)
    assert net.options[2] == {"heads": 2, "positions": True} and net.options.get(3) is None
    trainer = Trainer(net, backend="serial", seed=0)
    trainer.fit(*data.train, epochs=25, progress=False)
    assert trainer.evaluate(*data.test)["accuracy"] >= 0.9
