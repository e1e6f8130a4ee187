"""The CUDA engine against the serial engine, kernel by kernel, on fresh random inputs.

Outputs are poisoned with NaN before each run, so an element a kernel fails to write fails the
comparison. References are computed by the serial engine in float64 from the same float32
parameters; errors are relative, ||gpu - ref|| / ||ref||.
"""

import copy

import numpy as np
import pytest

from genlab import INPUT, OUTPUT, BackendError, GrowthPolicy, Network, Trainer
from genlab.engines import SerialEngine
from genlab.engines.cuda.executors import EXECUTORS as REGISTRY
from genlab.engines.cuda.constants import MT, SPLIT_PARTS, SPLIT_TILES
from genlab.operations import Noise
from genlab.optim import SGD, Adam

pytestmark = pytest.mark.gpu


EXECUTORS = list(REGISTRY)  # every executor of the registry


def cuda_engine(net, optimizer=None, executor="level"):
    from genlab.engines.cuda import CudaEngine

    return CudaEngine(net, optimizer or SGD(), executor=executor)


def poison(engine):
    drv = engine.drv
    d, L = engine.dev, engine.layout
    for buf, n in ((d.rows.act, L.n_cols * engine.batch_cap), (d.rows.dz, L.n_cols * engine.batch_cap),
                   (d.parameters.grads, L.n_params), (d.ranges.range_min, L.n_cols), (d.ranges.range_max, L.n_cols)):
        drv.memset_d32(buf, 0x7FC00000, n)  # quiet NaN


def assert_params_match(gpu, ref, rtol, atol):
    """Every parameter of the GPU engine against the serial engine's, by key."""
    params = gpu.params
    assert params.keys() == ref.params.keys()
    for key, p in ref.params.items():
        np.testing.assert_allclose(params[key], p, rtol=rtol, atol=atol, err_msg=str(key))


def assert_adam_close(got: dict, want: dict, lr, rtol, atol, share=0.01):
    """Parameters after steps of Adam, by key: within (rtol, atol) but for at most `share` of a
    block's elements, which must be within lr / 10. Adam's step lr m / (sqrt(v) + eps) is
    ill-conditioned where a gradient lies near 0: there a float32 sum that ends within rounding of
    0 (3.01e-8 against float64's 3.06e-8 in test_row_executor_with_its_update_at_the_end's first
    step, summing terms of ~1e-3) moves the element by 0.751 lr instead of 0.754 lr, and the
    serial engine in float32 misses (rtol, atol) on that element as the GPU does. A wrong update
    (applied twice, at another step's rate, or not at all) moves most elements by ~lr."""
    assert got.keys() == want.keys()
    for key, w in want.items():
        g = np.asarray(got[key], np.float64)
        off = ~np.isclose(g, w, rtol=rtol, atol=atol)
        assert off.mean() <= share, f"{key}: {int(off.sum())} of {off.size} elements off"
        np.testing.assert_allclose(g, w, rtol=0, atol=lr / 10, err_msg=str(key))


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert np.isfinite(a).all(), "unwritten or non-finite elements"
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


def random_case(seed, levels, per_level, width, fan_in, batch):
    rng = np.random.default_rng(seed)
    n_in, n_out = int(rng.integers(1, 80)), int(rng.integers(2, 40))
    net = Network.random_dag(levels, per_level, width=width, fan_in=fan_in, seed=seed, n_inputs=n_in, n_outputs=n_out)
    for b in net.biases.values():
        b[:] = rng.normal(size=b.shape) * 0.1
    x = rng.normal(size=(batch, n_in)).astype(np.float32)
    y = rng.integers(0, n_out, batch)
    away_from_kinks(net, x)
    return net, x, y


def away_from_kinks(net, x, margin=1e-4):
    """Shift hidden groups' biases so that no pre-activation lies within `margin` x its group's
    largest of ReLU's kink: float32 on the GPU (with its fused multiply-adds) or on the CPU
    emulator (without) then masks the same elements as the float64 reference, whose gradients
    would otherwise differ by a whole dL/dh wherever one element fell on the other side. Each
    neuron's shift is the middle of the widest gap among its batch's pre-activations near 0."""
    h = {INPUT: x.astype(np.float64).reshape(len(x), -1)}
    for g in net.topological_order()[1:]:
        b = net.biases[g]
        z = b.astype(np.float64) + sum(h[s] @ net.weights[(s, g)].astype(np.float64).T for s in net.inputs(g))
        if g != OUTPUT:
            near = margin * max(np.abs(z).max(), 1e-12)
            for j in np.flatnonzero((np.abs(z) < near).any(axis=0)):
                points = np.sort(np.concatenate([z[:, j][np.abs(z[:, j]) < 20 * near], [-20 * near, 20 * near]]))
                widest = int(np.argmax(np.diff(points)))
                b[j] -= np.float32((points[widest] + points[widest + 1]) / 2)
            z = b.astype(np.float64) + sum(h[s] @ net.weights[(s, g)].astype(np.float64).T for s in net.inputs(g))
        h[g] = np.maximum(z, 0) if g != OUTPUT else z


CASES = [  # (levels, per_level, width range, fan-in range, batch)
    (3, 4, (1, 300), (1, 16), 1),
    (4, 6, (1, 300), (1, 16), 33),
    (2, 16, (1, 40), (1, 16), 1024),
    (6, 5, (1, 70), (1, 4), 257),
    (1, 1, (300, 300), (1, 1), 100),
    (8, 3, (31, 33), (2, 3), 64),
    (3, 3, (250, 420), (1, 3), 300),  # wide groups (>= 256: cuda/wide.cu in the pull level executors)
    (3, 8, (48, 130), (4, 12), 200),  # wide fan-in and fan-out of 64 x 64 tiles: split-K (executors/split.py)
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("executor", ["level", "level_push", "level_batch", "dataflow_rows"])
def test_forward_backward_and_statistics_match_serial(case, seed, executor):
    """forward() and backward() one by one: the level kernels, pull or push, either layout, and
    with the row executor's task lists (CH neurons a task instead of TILE)."""
    net, x, y = random_case(seed * 100 + CASES.index(case), *case)
    ref = SerialEngine(net, SGD(), dtype="float64")
    gpu = cuda_engine(net, executor=executor)
    gpu.pruning = (True, None)
    gpu.ensure_batch(len(x))
    poison(gpu)
    logits = gpu.forward(x)
    assert rel(logits, ref.forward(x)) <= 1e-5
    loss = gpu.backward(y)
    assert loss == pytest.approx(ref.backward(y), rel=1e-5)
    grads, ref_grads = gpu.grads, ref.grads
    flat = lambda g: np.concatenate([g[k].ravel() for k in sorted(ref_grads, key=str)])
    assert rel(flat(grads), flat(ref_grads)) <= 1e-5
    for key, g in ref_grads.items():  # block by block, with a floor for blocks of dead groups
        assert np.linalg.norm(grads[key] - g) <= 1e-4 * np.linalg.norm(g) + 1e-7, key
    for name in ("grad_std", "weight_grad_norm", "taylor"):
        for g, value in ref.stats[name].items():
            assert gpu.stats[name][g] == pytest.approx(value, rel=1e-4, abs=1e-9), (name, g)
    for g in net.hidden_groups:  # float32 activations: error relative to the group's scale
        scale = max(np.abs(ref.stats["h_max"][g]).max(), 1e-3)
        np.testing.assert_allclose(gpu.stats["h_min"][g], ref.stats["h_min"][g], rtol=1e-5, atol=1e-5 * scale)
        np.testing.assert_allclose(gpu.stats["h_max"][g], ref.stats["h_max"][g], rtol=1e-5, atol=1e-5 * scale)


def assert_step_matches(gpu, ref, net, x, y, tolerance=1e-5):
    """One training step on both engines: loss, correct count, gradients, statistics, ranges."""
    (a, ca), (b, cb) = ref.step(x, y), gpu.step(x, y)
    assert b == pytest.approx(a, rel=tolerance) and cb == ca
    grads, ref_grads = gpu.grads, ref.grads
    for key, g in ref_grads.items():
        assert np.linalg.norm(grads[key] - g) <= 1e-4 * np.linalg.norm(g) + 1e-7, key
    for name in ("grad_std", "weight_grad_norm", "taylor"):
        for g, value in ref.stats[name].items():
            assert gpu.stats[name][g] == pytest.approx(value, rel=1e-4, abs=1e-9), (name, g)
    for g in net.hidden_groups:
        scale = max(np.abs(ref.stats["h_max"][g]).max(), 1e-3)
        np.testing.assert_allclose(gpu.stats["h_min"][g], ref.stats["h_min"][g], rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("case", CASES)
def test_every_executor_trains_like_serial(case, executor):
    """Whole steps (the dataflow kernel runs forward to update in one launch): three steps, each
    checked against the float64 serial engine from the same parameters."""
    net, x, y = random_case(500 + CASES.index(case), *case)
    optimizer = SGD(lr=0.05, momentum=0.9)
    ref, gpu = SerialEngine(net, optimizer, dtype="float64"), cuda_engine(net, optimizer, executor)
    ref.pruning = gpu.pruning = (True, None)
    gpu.ensure_batch(len(x))
    poison(gpu)
    for _ in range(3):
        assert_step_matches(gpu, ref, net, x, y)
    assert_params_match(gpu, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("executor", ["dataflow", "dataflow_rows"])
@pytest.mark.parametrize("grid", [1, 3, 1000])
def test_persistent_executors_are_correct_whatever_the_grid(grid, executor):
    """Blocks only wait for tasks taken earlier, so one block, a few, or more than fit at once
    all finish the step, and the same way."""
    net, x, y = random_case(23, 5, 6, (1, 70), (1, 5), 100)
    optimizer = SGD(lr=0.05)
    ref, gpu = SerialEngine(net, optimizer, dtype="float64"), cuda_engine(net, optimizer, executor)
    ref.pruning = gpu.pruning = (True, None)
    assert gpu.executor.grid >= gpu.device.get_attribute(gpu.drv.device_attribute.MULTIPROCESSOR_COUNT)
    gpu.executor.grid = grid
    assert_step_matches(gpu, ref, net, x, y)
    assert_params_match(gpu, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("wide", [True, False])
def test_cluster_records_hold_wide_fan_ins_and_unaligned_rows(wide):
    """The cluster executor's records hold 18 edges inline and the rest after the records; rows
    not on 16 bytes are read one by one, a batch of 45 is a partial row block; an output group
    fed by 40 sinks is summed in parts that the loss adds: every path against the float64
    serial engine."""
    from genlab.engines.cuda.executors.cluster_plan import INLINE

    if wide:
        net, x, y = random_case(77, 4, 12, (1, 40), (INLINE + 2, 30), 45)
        assert max(len(net.inputs(g)) for g in net.groups if g != INPUT) > INLINE
    else:
        net = Network.random_dag(2, 40, 8, 2, seed=5, n_inputs=21, n_outputs=3)
        rng = np.random.default_rng(5)
        x, y = rng.normal(size=(45, 21)).astype(np.float32), rng.integers(0, 3, 45)
    optimizer = SGD(lr=0.05, momentum=0.9)
    ref, gpu = SerialEngine(net, optimizer, dtype="float64"), cuda_engine(net, optimizer, "cluster")
    ref.pruning = gpu.pruning = (True, None)
    gpu.ensure_batch(len(x))
    poison(gpu)
    for _ in range(3):
        assert_step_matches(gpu, ref, net, x, y)
    assert_params_match(gpu, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("executor", ["dataflow", "level_batch", "dataflow_rows", "cluster"])
def test_executors_keep_matching_serial_through_growth(executor):
    """Growth changes the layout under the executor: 40 steps with growth every 4."""
    data = np.random.default_rng(3)
    X = data.normal(size=(1024, 10)).astype(np.float32)
    y = (X[:, :2].sum(axis=1) > 0).astype(np.int64)
    net = Network.random_dag(levels=2, per_level=2, width=5, fan_in=2, seed=2, n_inputs=10, n_outputs=2)
    policy = dict(threshold=0.0, every=4, cooldown=4, max_groups=24, mode="alternate")
    ref = Trainer(net.copy(), backend="serial", optimizer="sgd", lr=0.05, seed=0, growth=GrowthPolicy(**policy))
    gpu = Trainer(net.copy(), backend="cuda", optimizer="sgd", lr=0.05, seed=0, growth=GrowthPolicy(**policy),
                  executor=executor)
    assert gpu.engine.executor.name == executor
    for step in range(40):
        xb, yb = X[(step * 64) % 1024:][:64], y[(step * 64) % 1024:][:64]
        a, b = ref.step(xb, yb), gpu.step(xb, yb)
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
    assert len(gpu.history.events) >= 5 and ref.net.edges == gpu.net.edges
    for a, b in zip(ref.history.grad_std, gpu.history.grad_std):  # in ascending group id, growth or not
        assert list(b) == list(a) == sorted(a)
        assert list(b.values()) == pytest.approx(list(a.values()), rel=1e-3, abs=1e-7)
    for key in ref.net.weights:
        np.testing.assert_allclose(gpu.net.weights[key], ref.net.weights[key], rtol=1e-3, atol=1e-5)


def test_loss_kernel_counts_correct_predictions():
    net, x, y = random_case(7, 2, 3, (4, 9), (1, 2), 300)
    ref = SerialEngine(net, SGD(), dtype="float64")
    gpu = cuda_engine(net)
    logits = ref.forward(x)
    y[:100] = np.argmax(logits[:100], axis=1)  # some right, some wrong
    gpu.forward(x)
    gpu.backward(y)
    loss, correct, _ = gpu.read_scalars()
    assert correct == int(np.sum(np.argmax(logits, axis=1) == y))
    assert loss == pytest.approx(ref.backward(y), rel=1e-5)


@pytest.mark.parametrize("executor", ["level", "dataflow", "dataflow_rows"])
@pytest.mark.parametrize("optimizer", [SGD(lr=0.05, momentum=0.9), SGD(lr=0.1, momentum=0.0), Adam(lr=1e-2)])
def test_optimizer_kernels_match_serial(optimizer, executor):
    net, x, y = random_case(11, 3, 4, (2, 50), (1, 4), 64)
    ref = SerialEngine(net, optimizer, dtype="float32")
    gpu = cuda_engine(net, optimizer, executor)
    for _ in range(3):
        ref.step(x, y)
        gpu.step(x, y)
    assert_params_match(gpu, ref, rtol=1e-4, atol=1e-6)


def test_fifty_adam_steps_match_serial():
    net, _, _ = random_case(3, 4, 8, (4, 64), (1, 6), 1)
    rng = np.random.default_rng(5)
    ref = Trainer(net.copy(), backend="serial", optimizer="adam", lr=3e-3, seed=0)
    gpu = Trainer(net.copy(), backend="cuda", optimizer="adam", lr=3e-3, seed=0)
    for _ in range(50):
        x = rng.normal(size=(128, net.n_inputs)).astype(np.float32)
        y = rng.integers(0, net.n_outputs, 128)
        a, b = ref.step(x, y), gpu.step(x, y)
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
    assert_adam_close(gpu.net.weights, ref.net.weights, 3e-3, rtol=1e-4, atol=1e-5)


def test_graph_replay_with_changing_batch_sizes_matches_serial():
    net, _, _ = random_case(19, 3, 5, (2, 40), (1, 5), 1)
    ref, gpu = SerialEngine(net, SGD(lr=0.05)), cuda_engine(net, SGD(lr=0.05))
    rng = np.random.default_rng(2)
    for batch in (5, 64, 1, 300, 64, 5, 1024, 300):
        x = rng.normal(size=(batch, net.n_inputs)).astype(np.float32)
        y = rng.integers(0, net.n_outputs, batch)
        (a, ca), (b, cb) = ref.step(x, y), gpu.step(x, y)
        assert b == pytest.approx(a, rel=1e-5) and ca == cb
    assert_params_match(gpu, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("executor", ["level", "dataflow", "dataflow_rows"])
def test_a_diverging_step_is_refused_on_the_device(executor):
    from genlab import TrainingError

    net, x, y = random_case(23, 2, 4, (3, 20), (1, 3), 16)
    gpu = cuda_engine(net, SGD(lr=1e30, momentum=0.0), executor)
    for _ in range(10):
        before = gpu.params
        try:
            gpu.step(x * 100, y)
        except TrainingError as e:
            assert "the step was not applied" in str(e)
            after = gpu.params
            assert all(np.array_equal(before[k], after[k]) for k in before)
            return
    pytest.fail("a learning rate of 1e30 should make the loss overflow")


def test_reload_carries_optimizer_state_like_serial():
    net, x, y = random_case(13, 2, 3, (3, 20), (1, 3), 32)
    ref, gpu = SerialEngine(net, Adam(lr=1e-2)), cuda_engine(net, Adam(lr=1e-2))
    for e in (ref, gpu):
        e.step(x, y)
    grown = net.copy()
    gpu.write_back(grown)
    g = grown.add_group(5, inputs=[INPUT], outputs=[OUTPUT])
    for e in (ref, gpu):
        e.load(grown)
        e.step(x, y)
    assert ("W", INPUT, g) in gpu.params
    assert_params_match(gpu, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("relative, threshold", [(False, 0.5), (True, 0.3), (True, -0.5), (False, -1.0)])
@pytest.mark.parametrize("seed", range(3))
def test_growth_rules_on_the_gpu_match_the_reference(relative, threshold, seed):
    from genlab.growth import Scores

    net = Network.random_dag(levels=5, per_level=40, width=(2, 8), fan_in=(1, 4), seed=seed, n_inputs=6, n_outputs=3)
    gpu = cuda_engine(net)
    rng = np.random.default_rng(seed)
    L = gpu.layout
    ema = rng.random(len(L.groups))
    ema[rng.random(len(ema)) < 0.1] = 0.5  # ties, broken by group id
    seen = (rng.random(len(ema)) < 0.9).astype(np.int32)
    gpu.drv.memcpy_htod(gpu.dev.scores.ema, ema)
    gpu.drv.memcpy_htod(gpu.dev.scores.seen, seen)
    reference = Scores()
    reference.ema = {g: ema[s] for s, g in enumerate(L.groups) if seen[s] and g in net.hidden_groups}
    eligible = {g for g in net.hidden_groups if rng.random() < 0.8}
    expected = reference.choose(net.inputs, set(net.hidden_groups), eligible, threshold, relative)
    got = gpu.choose_growth(eligible, threshold, relative)
    assert [g for g, _ in got] == [g for g, _ in expected] and len(expected) > 0
    assert [v for _, v in got] == [v for _, v in expected]


def device_array(gpu, buf, n):
    out = np.empty(n, np.int32)
    if not n:  # an empty list may have no buffer
        return out
    gpu.drv.memcpy_dtoh(out, buf)
    return out


def split_parts(k: int, tile: int) -> int:
    """The reference for topology.cu's split_parts: the parts a tile whose edges hold k values of
    k is cut into, in a tier of `tile`-neuron tasks (the MT tier's tiles only)."""
    return max(1, min(SPLIT_PARTS, -(-k // (SPLIT_TILES * tile)))) if tile == MT else 1


def check_topology(gpu, net):
    """The CSR, levels and forward tasks the GPU built against the network they describe."""
    L = gpu.layout
    n, E = len(L.groups), L.n_edges
    in_ptr, out_ptr = device_array(gpu, gpu.dev.csr.in_ptr, n + 1), device_array(gpu, gpu.dev.csr.out_ptr, n + 1)
    in_src, in_woff = device_array(gpu, gpu.dev.csr.in_src, E), device_array(gpu, gpu.dev.csr.in_woff, E)
    out_dst, out_woff = device_array(gpu, gpu.dev.csr.out_dst, E), device_array(gpu, gpu.dev.csr.out_woff, E)
    level = device_array(gpu, gpu.dev.csr.level, n)
    expected_level = net.levels()
    for g in net.groups:
        s = L.slot[g]
        ins = [L.groups[x] for x in in_src[in_ptr[s]:in_ptr[s + 1]]]
        outs = [L.groups[x] for x in out_dst[out_ptr[s]:out_ptr[s + 1]]]
        assert ins == net.inputs(g) and outs == net.outputs(g), g
        assert list(in_woff[in_ptr[s]:in_ptr[s + 1]]) == [L.offsets[("W", src, g)] for src in ins]
        assert list(out_woff[out_ptr[s]:out_ptr[s + 1]]) == [L.offsets[("W", g, d)] for d in outs]
        assert level[s] == expected_level[g], g
    depth = expected_level[OUTPUT]
    tiers = gpu.executor.tiers()
    bounds = [t.lowest for t in tiers[1:]] + [2**31]
    for (pre, _, lo, chunk), hi in zip([(t.prefix, t.suffix, t.lowest, t.size) for t in tiers], bounds):
        mine = lambda w, lo=lo, hi=hi: lo <= w < hi
        if not lo or any(mine(w) for w in net.widths.values()):
            assert pre in L.tiers
        else:
            assert pre not in L.tiers
            continue
        levels = L.tiers[pre][0]
        assert len(levels) == depth
        tasks = device_array(gpu, gpu.dev.tasks.tiers[pre].forward_tasks, 4 * sum(c for _, c in levels)).reshape(-1, 4)
        for lv, (start, count) in enumerate(levels, start=1):
            got = sorted(map(tuple, tasks[start:start + count]))
            want = []
            for g in (g for g in net.groups if expected_level[g] == lv and mine(net.widths[g])):
                s = L.slot[g]
                e0, e1 = in_ptr[s], in_ptr[s + 1]
                if lo:  # (slot, j0, part, parts): split-K by the sources' widths
                    n = split_parts(sum(net.widths[src] for src in net.inputs(g)), chunk)
                    want += [(s, j0, q, n) for j0 in range(0, net.widths[g], chunk) for q in range(n)]
                    continue
                step = min(gpu.executor.split, e1 - e0) if g == OUTPUT else e1 - e0
                want += [(s, j0, a, min(a + step, e1)) for j0 in range(0, net.widths[g], chunk)
                         for a in range(e0, e1, step)]
            assert got == sorted(want), (pre, lv)
        levels = L.tiers[pre][1]  # deepest hidden level first
        ints = 4 if lo else 2  # (slot, k0, part, parts) in the wider tiers, (slot, k0) in the first
        lists = gpu.dev.tasks.tiers[pre]
        tasks = device_array(gpu, lists.backward_tasks, ints * (levels[-1][0] + levels[-1][1]) if levels else 0)
        for down, (start, count) in enumerate(levels, start=1):
            got = sorted(map(tuple, tasks.reshape(-1, ints)[start:start + count]))
            groups = [g for g in net.hidden_groups if expected_level[g] == depth - down and mine(net.widths[g])]
            want = [(L.slot[g], k0) for g in groups for k0 in range(0, net.widths[g], chunk)] if not lo else \
                [(L.slot[g], k0, q, n) for g in groups
                 for n in [split_parts(sum(net.widths[d] for d in net.outputs(g)), chunk)]
                 for k0 in range(0, net.widths[g], chunk) for q in range(n)]
            assert got == sorted(want), (pre, down)
        n_weight = L.tiers[pre][2]
        tasks = (device_array(gpu, gpu.dev.tasks.tiers[pre].weight_tasks, 3 * n_weight).reshape(-1, 3) if n_weight
                 else np.zeros((0, 3)))
        in_dst = device_array(gpu, gpu.dev.csr.in_dst, E)
        want = []
        for e in range(E):
            wd, ws = L.width[in_dst[e]], L.width[in_src[e]]
            if mine(min(wd, ws)):
                tile = chunk if lo else 32
                want += [(e, j0, k0) for j0 in range(0, wd, tile) for k0 in range(0, ws, tile)]
        assert sorted(map(tuple, tasks)) == sorted(want), pre


@pytest.mark.parametrize("executor, widths", [("level", (1, 70)), ("level", (30, 400)), ("dataflow_rows", (1, 70)),
                                              ("dataflow_rows", (100, 400))])
def test_topology_is_built_on_the_gpu_at_load_and_after_growth(executor, widths):
    """The task lists of each tier of widths (the level executor's: narrow, MID and WIDE neurons or
    more, wide.cu's 64- and 128-neuron tasks; the row executor's: one tier of 16-neuron tasks)."""
    from genlab.growth import duplicate_depth, duplicate_width

    net = Network.random_dag(levels=5, per_level=12, width=widths, fan_in=(1, 5), seed=31, n_inputs=9, n_outputs=4)
    gpu = cuda_engine(net, executor=executor)
    check_topology(gpu, net)
    rng = np.random.default_rng(3)
    for step in range(6):
        log = [Noise(0, step)]
        chosen = []
        for g in rng.permutation(net.hidden_groups):  # never a group and its direct input, as select() ensures
            if len(chosen) < 3 and not any(c in net.inputs(g) or g in net.inputs(c) for c in chosen):
                chosen.append(int(g))
        for g in chosen:
            (duplicate_depth if rng.random() < 0.5 else duplicate_width)(net, g, step, 0, log=log)
        gpu.apply_growth(net.copy(), log)
        check_topology(gpu, net)


@pytest.mark.parametrize("preserve", [True, False])
def test_growth_operations_on_the_gpu_match_the_host(preserve):
    from genlab.growth import duplicate_depth, duplicate_width

    net, x, y = random_case(29, 3, 4, (2, 40), (1, 4), 32)
    # SGD with momentum: its state (velocity) follows the same rules as Adam's, without Adam's
    # amplification of rounding in near-zero gradients
    gpu = cuda_engine(net, SGD(lr=0.05, momentum=0.9))
    ref = SerialEngine(net, SGD(lr=0.05, momentum=0.9))
    rng = np.random.default_rng(0)
    for step in range(1, 8):
        gpu.step(x, y)
        ref.step(x, y)
        ref.write_back(net)
        log = [Noise(5, step)]
        chosen = rng.choice(net.hidden_groups, size=2, replace=False)
        for g in chosen:  # two at once, as a growth step does (when neither feeds the other)
            if g in net.inputs(chosen[1]) or chosen[1] in net.inputs(g):
                continue
            if rng.random() < 0.5:
                duplicate_depth(net, int(g), step, 5, preserve, log)
            else:
                duplicate_width(net, int(g), step, 5, preserve, 0.7, log)
        gpu.apply_growth(net.copy(), log)
        ref.apply_growth(net, log)
        assert_params_match(gpu, ref, rtol=1e-5, atol=1e-6)
    gpu.step(x, y)  # optimizer state: old parameters kept theirs, new ones started fresh
    ref.step(x, y)
    assert_params_match(gpu, ref, rtol=1e-4, atol=1e-5)


def test_pruning_on_the_gpu_folds_constant_groups_exactly():
    net, x, y = random_case(37, 4, 4, (3, 12), (1, 3), 64)
    consts = [g for g in net.hidden_groups if len(net.outputs(g)) > 1][:2]
    for g in consts:  # constant, positive outputs: folded into the consumers' biases
        for s in net.inputs(g):
            net.weights[(s, g)][:] = 0
        net.biases[g][:] = np.linspace(0.5, 1.5, net.widths[g])
    policy = GrowthPolicy(threshold=1e9, prune=True, every=None)
    results = {}
    for backend in ("serial", "cuda"):
        trainer = Trainer(net.copy(), backend=backend, optimizer="sgd", lr=0.0, growth=policy)
        before = trainer.logits(x)
        for _ in range(4):  # observe the ranges over 256 rows, change no parameter
            trainer.step(x, y)
        events = trainer.grow()
        assert {e.source for e in events} >= set(consts) and {e.kind for e in events} == {"prune"}
        np.testing.assert_allclose(trainer.logits(x), before, rtol=1e-5, atol=1e-5)
        results[backend] = (sorted(e.source for e in events), trainer.net)
    assert results["cuda"][0] == results["serial"][0]
    for key, w in results["serial"][1].biases.items():
        np.testing.assert_allclose(results["cuda"][1].biases[key], w, rtol=1e-5, atol=1e-6)


GROWTH_POLICIES = [
    dict(threshold=0.0, every=5, cooldown=10, max_groups=30, mode="alternate", prune=True),
    dict(threshold=0.0, every=4, cooldown=8, max_groups=40, mode="auto", max_depth=4, preserve=False),
    dict(threshold=0.2, relative=True, every=5, cooldown=5, max_groups=36, mode="width", criterion="taylor"),
]


@pytest.mark.parametrize("policy", GROWTH_POLICIES)
def test_growth_on_the_gpu_matches_serial_event_by_event(policy):
    data = np.random.default_rng(0)
    X = data.normal(size=(2048, 12)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) > 0).astype(np.int64) + (X[:, 3] > 1)
    net = Network.random_dag(levels=2, per_level=3, width=6, fan_in=2, seed=1, n_inputs=12, n_outputs=3)
    net.biases[net.hidden_groups[1]][:] = -1e3  # a dead group, to be pruned when pruning is on
    ref = Trainer(net.copy(), backend="serial", lr=1e-2, seed=0, growth=GrowthPolicy(**policy))
    gpu = Trainer(net.copy(), backend="cuda", lr=1e-2, seed=0, growth=GrowthPolicy(**policy))
    kinds = set()
    for step in range(200):
        xb, yb = X[(step * 64) % 2048:][:64], y[(step * 64) % 2048:][:64]
        ref.step(xb, yb)
        gpu.step(xb, yb)
        a, b = ref.history.events, gpu.history.events
        assert [(e["kind"], e["source"], e["new"]) for e in a] == [(e["kind"], e["source"], e["new"]) for e in b]
        if a and a[-1]["step"] == step + 1:
            kinds |= {e["kind"] for e in a if e["step"] == step + 1}
            assert ref.net.edges == gpu.net.edges and ref.net.widths == gpu.net.widths
            for key in ref.net.weights:
                np.testing.assert_allclose(gpu.net.weights[key], ref.net.weights[key], rtol=1e-3, atol=1e-4)
        if len(a) >= 20 and ref.grower.budget_reached_at:
            break
    expected = {"prune"} if policy.get("prune") else set()
    expected |= {"width"} if policy["mode"] == "width" else {"depth", "width"}
    assert len(ref.history.events) >= 20 and kinds == expected
    assert ref.grower.budget_reached_at == gpu.grower.budget_reached_at is not None


def test_out_of_memory_is_a_clear_error_and_loses_nothing():
    import pycuda.driver as drv

    net, x, y = random_case(17, 2, 4, (50, 60), (1, 2), 16)
    gpu = cuda_engine(net)
    before = gpu.forward(x)
    free, _ = drv.mem_get_info()
    hog = drv.mem_alloc(free - (64 << 20))  # leave 64 MiB
    try:
        big = Network.mlp([64, 6000, 6000, 10])  # 36M parameters: ~700 MiB with gradients and state
        with pytest.raises(BackendError, match="out of GPU memory"):
            gpu.load(big)
        np.testing.assert_array_equal(gpu.forward(x), before)  # the engine is intact
        with pytest.raises(BackendError, match="out of GPU memory"):
            Trainer(big, backend="cuda")
        assert big.widths[2] == 6000 and big.weights[(2, 3)].shape == (6000, 6000)
    finally:
        hog.free()


def test_cuda_trains_digits_like_serial():
    from genlab import datasets

    data = datasets.load("digits", seed=0)
    results = {}
    for backend in ("serial", "cuda"):
        trainer = Trainer(Network.mlp([64, 64, 32, 10], seed=0), backend=backend, seed=0)
        trainer.fit(*data.train, epochs=10, progress=False)
        results[backend] = trainer.evaluate(*data.test)["accuracy"]
    assert abs(results["cuda"] - results["serial"]) <= 0.01


@pytest.mark.parametrize("optimizer", [SGD(lr=0.05, momentum=0.9), Adam(lr=1e-2)])
def test_row_executor_applies_each_deferred_update_once(optimizer):
    """The row executor leaves a step's update to the next step's forward items (cuda/rows.cu):
    whatever runs between steps (a forward pass, a new learning rate, a traced step, a read of
    the parameters), each update is applied once, with its own step's learning rate."""
    net, x, y = random_case(31, 4, 5, (1, 70), (1, 6), 300)
    ref = SerialEngine(net, copy.deepcopy(optimizer), dtype="float64")
    gpu = cuda_engine(net, copy.deepcopy(optimizer), "dataflow_rows")
    ref.pruning = gpu.pruning = (True, None)
    for _ in range(2):
        assert_step_matches(gpu, ref, net, x, y)
    assert gpu.executor.pending is not None
    assert rel(gpu.forward(x), ref.forward(x)) <= 1e-5  # the forward pass applies the pending update first
    assert gpu.executor.pending is None
    assert_step_matches(gpu, ref, net, x, y)
    ref.optimizer.lr = gpu.optimizer.lr = optimizer.lr / 3  # the pending update keeps the old rate
    for _ in range(2):
        assert_step_matches(gpu, ref, net, x, y)
    gpu.trace_step(x, y)  # a traced step applies the pending update in its forward items too
    ref.step(x, y)
    assert gpu.executor.pending is not None
    assert_step_matches(gpu, ref, net, x, y)
    share = 0.01 if isinstance(optimizer, Adam) else 0  # SGD's step is linear in the gradient: no element off
    assert_adam_close(gpu.params, ref.params, optimizer.lr, rtol=1e-4, atol=1e-6, share=share)
    gpu.step(x, y)
    ref.step(x, y)
    gpu.write_back(net)  # the last step's update is in what the network gets
    written = {key: net.weights[key[1:]] if key[0] == "W" else net.biases[key[1]] for key in ref.params}
    assert_adam_close(written, ref.params, optimizer.lr, rtol=1e-4, atol=1e-6, share=share)


def test_row_executor_with_its_update_at_the_end_matches_serial():
    """defer_update=False (the update as the launch's last items, kept for comparisons) and
    switching between the two: the same steps."""
    net, x, y = random_case(37, 3, 5, (1, 40), (1, 5), 100)
    ref, gpu = SerialEngine(net, Adam(lr=1e-2), dtype="float64"), cuda_engine(net, Adam(lr=1e-2), "dataflow_rows")
    ref.pruning = gpu.pruning = (True, None)
    for defer in (False, False, True, False, True, True):
        gpu.executor.defer_update = defer
        assert_step_matches(gpu, ref, net, x, y)
        assert (gpu.executor.pending is not None) == defer
    assert_adam_close(gpu.params, ref.params, 1e-2, rtol=1e-4, atol=1e-6)


def test_row_executor_trace_is_a_complete_timeline_of_a_correct_step():
    """trace_step runs a real step (it matches serial) and times every work item once."""
    net, x, y = random_case(29, 4, 6, (1, 40), (1, 5), 300)
    optimizer = Adam(lr=1e-2)
    ref, gpu = SerialEngine(net, optimizer, dtype="float64"), cuda_engine(net, optimizer, "dataflow_rows")
    trace = gpu.trace_step(x, y)
    ref.step(x, y)
    assert_params_match(gpu, ref, rtol=1e-4, atol=1e-6)
    n = len(trace["item"])
    assert sorted(trace["item"]) == list(range(n))
    kinds = {k: int(np.sum(trace["kind"] == k)) for k in set(trace["kind"])}
    L = gpu.layout
    assert kinds["forward"] == L.n_forward_tasks and kinds["loss"] == 1
    assert kinds["backward"] == kinds["weight"] == L.n_backward_tasks
    assert np.all(trace["taken"] <= trace["ready"]) and np.all(trace["ready"] <= trace["done"])
    hidden = {L.slot[g] for g in net.hidden_groups}
    assert set(trace["slot"][trace["kind"] == "backward"]) == hidden
    with pytest.raises(BackendError, match="dataflow_rows"):
        cuda_engine(net, optimizer, "level").trace_step(x, y)


@pytest.mark.parametrize("policy", [
    dict(every=4, cooldown=4, max_groups=16),                                   # the default rule: top 1, fresh siblings
    dict(top=2, every=3, cooldown=0, max_groups=16, sibling="split", mode="alternate"),
    dict(relative=True, threshold=0.5, every=4, cooldown=0, max_groups=12, mode="width"),  # a lone group grows
])
def test_growth_rules_on_cuda_match_serial(policy):
    """The rule's cut is computed from the smoothed scores the GPU holds; the same groups grow and
    the parameters stay equal to the serial engine's through growth and a named growth step."""
    data = np.random.default_rng(5)
    X = data.normal(size=(512, 12)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) > 0).astype(np.int64)
    net = Network.mlp([12, 6, 2], seed=4)
    ref = Trainer(net.copy(), backend="serial", lr=1e-2, seed=0, growth=GrowthPolicy(**policy))
    gpu = Trainer(net.copy(), backend="cuda", lr=1e-2, seed=0, growth=GrowthPolicy(**policy))
    for step in range(24):
        xb, yb = X[(step * 32) % 512:][:32], y[(step * 32) % 512:][:32]
        a, b = ref.step(xb, yb), gpu.step(xb, yb)
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
    scores_ref, scores_gpu = ref.engine.smoothed_scores(), gpu.engine.smoothed_scores()
    assert sorted(scores_gpu) == sorted(g for g in scores_ref if g in ref.net.hidden_groups)
    for g, s in scores_gpu.items():
        assert s == pytest.approx(scores_ref[g], rel=1e-3, abs=1e-9)
    named = ref.net.hidden_groups[:1]
    assert [(e.source, e.kind) for e in ref.grow(groups=named)] == [(e.source, e.kind) for e in gpu.grow(groups=named)]
    made = lambda t: [(e["step"], e["kind"], e["source"], e["new"]) for e in t.history.events]
    assert len(made(gpu)) >= 4 and made(gpu) == made(ref)
    assert ref.net.edges == gpu.net.edges
    for key in ref.net.weights:
        np.testing.assert_allclose(gpu.net.weights[key], ref.net.weights[key], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("executor", ["level", "level_batch", "dataflow", "dataflow_rows"])
def test_an_output_reading_many_groups_repeats_bit_for_bit(executor):
    """An output group reading 40 groups, its in-edges cut into parts (executors/output_parts.py):
    two engines of one executor take the same steps to the same parameters, bit for bit, however
    the parts' blocks were scheduled (they were added with atomics before, in the order they
    finished). The reported loss is a sum over batch tiles in double precision, added with atomics
    (loss.cu's softmax_rows): equal to a few units in the last place, not bit for bit."""
    net = Network.random_dag(2, 40, (3, 20), (1, 3), seed=11)
    assert len(net.inputs(OUTPUT)) > REGISTRY[executor].split
    rng = np.random.default_rng(12)
    x, y = rng.normal(size=(300, 64)).astype(np.float32), rng.integers(0, 10, 300)
    runs = []
    for _ in range(2):
        engine = cuda_engine(net, Adam(lr=0.01), executor)
        runs.append(([engine.step(x, y)[0] for _ in range(4)], engine.params))
    for key, value in runs[0][1].items():
        np.testing.assert_array_equal(value, runs[1][1][key], err_msg=str(key))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-14, atol=0)
