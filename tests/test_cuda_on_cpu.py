"""The CUDA engine without a GPU: its host side on the stand-in GPU (tests/fake_cuda.py) with every
launch running the kernel's own source on the CPU (tests/cpu_cuda/emulator.py), against the
float64 serial engine. The GPU tests (pytest -m gpu) remain the word on a GPU's behaviour; these
run in CI, so a change to a kernel's indexing or an engine's plumbing fails here first.

Every executor but `cluster` (thread-block clusters are not emulated) across the three width
tiers, growth replayed by the growth kernels, pruning folds, conv and attention groups, and the
recurrent engine through its unrolled DAG.
"""

import numpy as np
import pytest

from genlab import GrowthPolicy, Network, Trainer
from genlab.engines import SerialEngine
from genlab.optim import SGD, Adam

EXECUTORS = ["level", "level_push", "level_batch", "dataflow", "dataflow_batch", "dataflow_rows"]
TIERS = {"tile": (1, 20), "mid": (50, 70), "wide": (257, 260)}  # 32 x 32 tiles, wide.cu's 64 and 128 tiles


def batch(net, n, seed=0, steps=None):
    rng = np.random.default_rng(seed)
    shape = (n, steps, net.n_inputs) if steps else (n, *net.input_shape)
    return rng.normal(size=shape).astype(np.float32), rng.integers(0, net.n_outputs, n)


def assert_steps_match(gpu, ref, x, y, steps=3):
    for _ in range(steps):
        loss, correct = gpu.step(x, y)
        ref_loss, ref_correct = ref.step(x, y)
        assert loss == pytest.approx(ref_loss, rel=1e-4) and correct == ref_correct
    for g, s in ref.grad_std.items():
        assert gpu.grad_std[g] == pytest.approx(s, rel=1e-3, abs=1e-7), g
    for key, p in ref.params.items():
        np.testing.assert_allclose(gpu.params[key], p, rtol=1e-3, atol=1e-4, err_msg=str(key))


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("executor", EXECUTORS)
def test_every_executor_trains_as_the_serial_engine(cpu_gpu, executor, tier):
    from genlab.engines.cuda import CudaEngine

    per_level = 2 if tier == "wide" else 3  # (the wide tier is the slowest to emulate)
    net = Network.random_dag(levels=2, per_level=per_level, width=TIERS[tier], fan_in=2, seed=1, n_inputs=12,
                             n_outputs=3)
    x, y = batch(net, 40)
    gpu = CudaEngine(net, Adam(lr=0.01), executor=executor)
    assert_steps_match(gpu, SerialEngine(net, Adam(lr=0.01), dtype="float64"), x, y)


@pytest.mark.parametrize("executor", ["level", "level_batch"])
def test_split_k_over_a_groups_edges_trains_as_the_serial_engine(cpu_gpu, executor):
    """wide.cu's split-K (executors/split.py): a source of width 60 read by 12 consumers of 55
    (660 values of k: three parts of about 256 in its backward), a group reading 9 of them (495:
    two parts in its forward), a batch of 70 (a full and a partial tile of 64): the task lists
    hold a task a part, the parts' sums are gathered by the last block of each tile, and the
    tickets are left at zero for the next launch."""
    from genlab.engines.cuda import CudaEngine
    from genlab.engines.cuda.executors import split

    net = Network(n_inputs=12, n_outputs=3, seed=4)
    a = net.add_group(60, inputs=[net.input])
    readers = [net.add_group(55, inputs=[a]) for _ in range(12)]
    c = net.add_group(60, inputs=readers[:9])
    for g in [c, *readers[9:]]:
        net.connect(g, net.output)
    net.init_params(4)
    x, y = batch(net, 70, seed=5)
    gpu = CudaEngine(net, Adam(lr=0.01), executor=executor)
    assert_steps_match(gpu, SerialEngine(net, Adam(lr=0.01), dtype="float64"), x, y, steps=2)
    L = gpu.layout
    for index, name, most in ((0, "forward_tasks", 2), (1, "backward_tasks", 3)):
        n = max(start + count for start, count in L.tiers["mid_"][index])
        tasks = np.empty((n, 4), np.int32)
        gpu.drv.memcpy_dtoh(tasks, getattr(gpu.dev.tasks.tiers["mid_"], name))
        assert tasks[:, 3].max() == most and (tasks[:, 2] < tasks[:, 3]).all()  # (part, parts)
    tickets = np.empty(split._slots(L, gpu.executor.tiers()[1], gpu.batch_cap), np.int32)
    gpu.drv.memcpy_dtoh(tickets, gpu.dev.rows.split_tickets)
    assert not tickets.any()


@pytest.mark.parametrize("executor", ["level", "level_batch", "dataflow", "dataflow_batch", "dataflow_rows"])
def test_an_executors_own_split_of_the_output_group_trains_as_the_serial_engine(cpu_gpu, monkeypatch, executor):
    """Executor.split is each executor's: the output group's 7 in-edges cut 3 at a time (3 forward
    tasks, each writing its own part, output_parts.py) by this executor only, the task lists and
    the kernels reading the same value; the logits are the parts added in part order."""
    from genlab.engines.cuda import CudaEngine
    from genlab.engines.cuda.constants import SPLIT
    from genlab.engines.cuda.executors import EXECUTORS, Executor

    cls = EXECUTORS[executor]
    monkeypatch.setattr(cls, "split", 3)
    net = Network(n_inputs=10, n_outputs=3, seed=7)
    for width in (5, 9, 16, 3, 12, 7, 20):
        net.connect(net.add_group(width, inputs=[net.input]), net.output)
    net.init_params(7)
    x, y = batch(net, 40, seed=8)
    gpu = CudaEngine(net, Adam(lr=0.01), executor=executor)
    assert gpu.executor.splits_output(gpu.layout)
    assert Executor.split == SPLIT != 3  # the default the others take
    tasks = np.empty((gpu.layout.n_forward_tasks, 4), np.int32)  # (slot, j0, e0, e1)
    gpu.drv.memcpy_dtoh(tasks, gpu.dev.tasks.first.forward_tasks)
    output = tasks[tasks[:, 0] == gpu.layout.output_slot]
    assert sorted(output[:, 3] - output[:, 2]) == [1, 3, 3]
    assert_steps_match(gpu, SerialEngine(net, Adam(lr=0.01), dtype="float64"), x, y)
    parts = np.empty((3, gpu.batch_cap, 3), np.float32)  # (part, row, class) after the last step's forward
    gpu.drv.memcpy_dtoh(parts, gpu.dev.rows.output_parts)
    in_order = (parts[0, :40] + parts[1, :40]) + parts[2, :40]
    logits = np.empty((40, 3), np.float32)  # as the last forward left them
    gpu.rows(gpu.layout.output_slot, 40, logits, to_device=False)
    gpu.stream.synchronize()
    assert np.array_equal(logits, in_order) and not np.array_equal(in_order, parts[0, :40] + (parts[1, :40] + parts[2, :40]))


@pytest.mark.parametrize("executor", ["level", "dataflow_rows"])
def test_an_output_of_a_wider_tier_is_not_cut_into_parts(cpu_gpu, monkeypatch, executor):
    """An output of MT neurons or more is a wide tier's tile on the level executor (whose split-K
    gathers its own parts): no parts there; the row executor, one tier, cuts it."""
    from genlab.engines.cuda import CudaEngine
    from genlab.engines.cuda.executors import EXECUTORS, output_parts

    monkeypatch.setattr(EXECUTORS[executor], "split", 2)
    net = Network(n_inputs=6, n_outputs=50, seed=9)
    for width in (3, 4, 5):
        net.connect(net.add_group(width, inputs=[net.input]), net.output)
    net.init_params(9)
    x, y = batch(net, 20, seed=10)
    gpu = CudaEngine(net, Adam(lr=0.01), executor=executor)
    assert output_parts.count(gpu.executor, gpu.layout) == (1 if executor == "level" else 2)
    assert bool(int(gpu.dev.rows.output_parts)) == (executor != "level")  # NULL where not cut
    assert_steps_match(gpu, SerialEngine(net, Adam(lr=0.01), dtype="float64"), x, y, steps=2)


def conv_net_of_every_kernel():
    """Conv groups of kernels 3, 5, 1 and 3 at stride 2 (11, 5, 9 and 4 channels: partial chunks of
    CONV_CH) on a 7 x 7 input, two in-edges of other channel counts into one; its groups."""
    net = Network(input_shape=(3, 7, 7), n_outputs=4, seed=6)
    a = net.add_group(11, inputs=[net.input], kind="conv", kernel=3)
    b = net.add_group(5, inputs=[net.input], kind="conv", kernel=5)
    c = net.add_group(9, inputs=[a, b], kind="conv", kernel=1)
    d = net.add_group(4, inputs=[c, a], kind="conv", kernel=3, stride=2)
    for g in (c, d):
        net.connect(g, net.output)
    net.init_params(6)
    return net, (a, b, c, d)


def test_conv_groups_with_staged_inputs_train_as_the_serial_engine(cpu_gpu):
    """conv_forward_staged (kernels of 1, 3 and 5, strides 1 and 2, two in-edges of other channel
    counts, 11 channels: a partial chunk of CONV_CH; 49 positions a sample, so that a block's
    range ends inside a sample) and conv_forward where the inputs do not fit (a 20 x 20 grid of
    24 channels), against the serial engine's gradients."""
    from genlab.engines.cuda import CudaEngine
    from genlab.kinds.conv import cuda

    net, (a, b, c, d) = conv_net_of_every_kernel()
    big = Network(input_shape=(24, 20, 20), n_outputs=3, seed=7)
    big.connect(big.add_group(3, inputs=[big.input], kind="conv", kernel=3), big.output)
    big.init_params(7)
    for network, n, staged in ((net, 37, {a, b, c, d}), (big, 5, set())):
        x, y = batch(network, n, seed=8)
        gpu = CudaEngine(network, SGD(lr=0.05), executor="level")
        assert {g for g in network.hidden_groups if cuda.forward_staged(gpu.layout, gpu.layout.slot[g])} == staged
        ref = SerialEngine(network, SGD(lr=0.05), dtype="float64")
        assert_steps_match(gpu, ref, x, y, steps=2)
        for key, g in ref.grads.items():
            np.testing.assert_allclose(gpu.grads[key], g, rtol=1e-3, atol=1e-5, err_msg=str(key))


def test_conv_backward_staged_and_weight_warps_train_as_the_serial_engine(cpu_gpu):
    """conv_backward_staged: consumers of kernels 1, 3 and 5 and dense ones, two to three a group,
    11 channels (a partial chunk of CONV_CH), 49 positions a sample (a block's range ends inside
    a sample); conv_weight_grad's warp tiles over the same edges (kernel 5's tiles outnumber the
    warps: in turns, the last turn shared by every warp); and a level that falls back to
    conv_backward (a consumer of stride 2) beside one that does not."""
    from genlab.engines.cuda import CudaEngine
    from genlab.kinds.conv import cuda

    net = Network(input_shape=(3, 7, 7), n_outputs=4, seed=9)
    a = net.add_group(11, inputs=[net.input], kind="conv", kernel=3)
    b = net.add_group(5, inputs=[net.input], kind="conv", kernel=5)
    c = net.add_group(9, inputs=[a, b], kind="conv", kernel=1)
    e = net.add_group(6, inputs=[a], kind="conv", kernel=5)
    f = net.add_group(4, inputs=[c, e, b], kind="conv", kernel=3)
    g = net.add_group(3, inputs=[f], kind="conv", kernel=3, stride=2)
    for h in (c, f, g):
        net.connect(h, net.output)
    net.init_params(9)
    x, y = batch(net, 37, seed=10)
    gpu = CudaEngine(net, SGD(lr=0.05), executor="level")
    staged = {h for h in net.hidden_groups if cuda.staging(gpu.layout)[gpu.layout.slot[h]][1]}
    assert staged == {a, b, c, e, g}  # (f's consumer g has stride 2)
    ref = SerialEngine(net, SGD(lr=0.05), dtype="float64")
    assert_steps_match(gpu, ref, x, y, steps=2)
    for key, grad in ref.grads.items():
        np.testing.assert_allclose(gpu.grads[key], grad, rtol=1e-3, atol=1e-5, err_msg=str(key))
    # the step's graph: levels (a, b), (c, e) and (g) staged, (f) not
    launched = [name for name, *_ in cpu_gpu.launches]
    assert launched.count("conv_backward_staged") == 3 and launched.count("conv_backward") == 1


def test_the_one_sample_forward_variant_trains_as_the_serial_engine(cpu_gpu, monkeypatch):
    """conv.cu built with CONV_FWD_PAIRS 0 (the harness's variant: one sample a phase; the default
    build's two a phase is what every other conv test runs): kernels of 1, 3 and 5, stride 2, 11
    channels, 49 positions a sample."""
    from genlab.engines.cuda import CudaEngine, runtime

    source = runtime.source
    monkeypatch.setattr(runtime, "source", lambda files=None, *args, **kw: (
        "#define CONV_FWD_PAIRS 0\n" if files == ["conv.cu"] else "") + source(files, *args, **kw))
    net, _ = conv_net_of_every_kernel()
    x, y = batch(net, 37, seed=8)
    ref = SerialEngine(net, SGD(lr=0.05), dtype="float64")
    assert_steps_match(CudaEngine(net, SGD(lr=0.05), executor="level"), ref, x, y, steps=2)


def test_conv_maps_too_large_for_two_buffers_are_staged_one_sample_at_a_time(cpu_gpu):
    """16 input channels of 18 x 18 (6400 floats a sample with the halo): conv_forward_staged and
    conv_weight_grad fit one sample's copies, not two (CONV_BUFFERED), so they stage, wait and
    compute sample by sample; 7 samples, so that every block takes several."""
    from genlab.engines.cuda import CudaEngine
    from genlab.kinds.conv import cuda

    net = Network(input_shape=(16, 18, 18), n_outputs=3, seed=12)
    a = net.add_group(4, inputs=[net.input], kind="conv", kernel=3)
    net.connect(a, net.output)
    net.init_params(12)
    x, y = batch(net, 7, seed=13)
    gpu = CudaEngine(net, SGD(lr=0.05), executor="level")
    assert cuda.forward_staged(gpu.layout, gpu.layout.slot[a])
    ref = SerialEngine(net, SGD(lr=0.05), dtype="float64")
    assert_steps_match(gpu, ref, x, y, steps=2)
    for key, grad in ref.grads.items():
        np.testing.assert_allclose(gpu.grads[key], grad, rtol=1e-3, atol=1e-5, err_msg=str(key))


@pytest.mark.parametrize("per_block", [1, 3, 8])
def test_attention_blocks_of_several_samples_staged_or_not_train_as_the_serial_engine(cpu_gpu, monkeypatch, per_block):
    """An attention block takes several samples (the last block fewer: 11 samples), staging its
    weights and summing its gradients in shared memory where they fit (width 6 and 12), reading
    and adding them in global memory where they do not (width 56: 4 x 56 x 57 floats of weights),
    both in one launch, two in-edges into one group."""
    from genlab.engines.cuda import CudaEngine
    from genlab.kinds.attention import cuda

    monkeypatch.setattr(cuda, "SAMPLES", per_block)
    monkeypatch.setattr(cuda, "BLOCKS", 1)
    net = Network(input_shape=(2, 5), n_outputs=4, seed=4)
    a = net.add_group(12, inputs=[net.input], kind="attention", heads=3, positions=True)
    b = net.add_group(56, inputs=[net.input], kind="attention", heads=2)
    c = net.add_group(6, inputs=[a, b], kind="attention", heads=2)
    for g in (b, c):
        net.connect(g, net.output)
    net.init_params(4)
    x, y = batch(net, 11, seed=5)
    gpu = CudaEngine(net, SGD(lr=0.05), executor="level")
    assert cuda.launch_blocks(gpu, np.array([gpu.layout.slot[a], gpu.layout.slot[b]]), 22, False)[1] == per_block
    ref = SerialEngine(net, SGD(lr=0.05), dtype="float64")
    assert_steps_match(gpu, ref, x, y, steps=2)
    for key, g in ref.grads.items():  # (SGD: a gradient off by a factor moves the parameters by it)
        np.testing.assert_allclose(gpu.grads[key], g, rtol=1e-3, atol=1e-5, err_msg=str(key))


@pytest.mark.parametrize("executor", ["level", "dataflow"])
def test_growth_and_pruning_on_the_gpus_kernels_match_serial_event_by_event(cpu_gpu, executor):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(512, 12)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) > 0).astype(np.int64) + (X[:, 3] > 1)
    net = Network.random_dag(levels=2, per_level=3, width=6, fan_in=2, seed=1, n_inputs=12, n_outputs=3)
    net.biases[net.hidden_groups[1]][:] = -1e3  # a dead group: pruned
    policy = dict(threshold=0.0, every=5, cooldown=5, max_groups=14, mode="alternate", prune=True)
    runs = {}
    for backend, options in (("serial", {}), ("cuda", {"executor": executor})):
        trainer = Trainer(net.copy(), backend=backend, lr=1e-2, seed=0, growth=GrowthPolicy(**policy), **options)
        for step in range(25):
            trainer.step(X[step * 16 % 512:][:16], y[step * 16 % 512:][:16])
        runs[backend] = trainer
    a, b = (r.history.events for r in (runs["serial"], runs["cuda"]))
    assert {e["kind"] for e in a} == {"prune", "depth", "width"}
    assert [(e["kind"], e["source"], e["new"]) for e in a] == [(e["kind"], e["source"], e["new"]) for e in b]
    np.testing.assert_allclose(runs["cuda"].logits(X[:64]), runs["serial"].logits(X[:64]), rtol=2e-3, atol=2e-3)


def test_conv_and_attention_groups_train_as_the_serial_engine(cpu_gpu):
    from genlab.engines.cuda import CudaEngine

    conv = Network.conv_chain((2, 6, 6), [3, 4], 3, seed=2)
    x, y = batch(conv, 12)
    assert_steps_match(CudaEngine(conv, Adam(lr=0.01), executor="level"),
                       SerialEngine(conv, Adam(lr=0.01), dtype="float64"), x, y, steps=2)
    attention = Network.attention_chain((5, 8), [8], 3, heads=2, seed=3)
    x, y = batch(attention, 10)
    assert_steps_match(CudaEngine(attention, Adam(lr=0.01), executor="level"),
                       SerialEngine(attention, Adam(lr=0.01), dtype="float64"), x, y, steps=2)


@pytest.mark.parametrize("executor", ["level", "dataflow"])
def test_the_recurrent_engine_matches_backpropagation_through_time_and_prunes(cpu_gpu, executor):
    from genlab.engines.cuda.recurrent import RecurrentCudaEngine

    net = Network.elman(5, [7, 6], 4, seed=3)
    x, y = batch(net, 24, steps=5)
    gpu = RecurrentCudaEngine(net, Adam(lr=0.01), executor=executor)
    ref = SerialEngine(net, Adam(lr=0.01), dtype="float64")
    gpu.pruning = ref.pruning = (True, None)
    assert_steps_match(gpu, ref, x, y, steps=2)
    for g in net.hidden_groups:
        np.testing.assert_allclose(gpu.stats["h_min"][g], ref.stats["h_min"][g], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(gpu.stats["h_max"][g], ref.stats["h_max"][g], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("engine", ["dag", "recurrent"])
def test_a_backup_puts_the_parameters_and_the_optimizer_state_back(cpu_gpu, engine):
    """backup_state / restore_state (the careful update's, guard.careful) on the device: steps
    taken after a backup are undone, parameters and Adam's moments alike, and the next step is
    the step the backup's moment would have taken."""
    from genlab.engines.cuda import CudaEngine
    from genlab.engines.cuda.recurrent import RecurrentCudaEngine

    if engine == "dag":
        net = Network.random_dag(3, 3, (2, 9), (1, 3), seed=2, n_inputs=5, n_outputs=3)
        gpu, (x, y) = CudaEngine(net, Adam(lr=0.05), executor="level"), batch(net, 16)
    else:
        net = Network.elman(5, [7, 6], 4, seed=3)
        gpu, (x, y) = RecurrentCudaEngine(net, Adam(lr=0.05), executor="level"), batch(net, 16, steps=4)
    gpu.step(x, y)

    def now():
        return {k: v.copy() for k, v in gpu.params.items()}, gpu.export_state().optimizer

    saved, before = gpu.backup_state(), now()
    first = gpu.step(x, y)
    gpu.step(x, y)
    assert not np.array_equal(now()[0][next(iter(before[0]))], before[0][next(iter(before[0]))])
    gpu.restore_state(saved)
    after = now()
    for key in before[0]:
        np.testing.assert_array_equal(after[0][key], before[0][key])
    assert before[1].keys() == after[1].keys() and before[1]
    for key in before[1]:
        for name in before[1][key]:
            np.testing.assert_array_equal(after[1][key][name], before[1][key][name])
    assert gpu.step(x, y) == first


@pytest.mark.parametrize("options", [{}, {"rows": 4, "stage": False}], ids=["auto", "four-rows-global-weights"])
def test_the_wavefront_executor_matches_backpropagation_through_time(cpu_gpu, options):
    from conftest import tangle

    from genlab.engines.cuda.recurrent import RecurrentCudaEngine

    net = Network.elman(6, [12, 9], 4, seed=1)
    tangle(net, *net.hidden_groups, widths=(5, 3), seed=1, scale=0.2)
    x, y = batch(net, 11, steps=6)
    gpu = RecurrentCudaEngine(net, Adam(lr=0.01), executor="wavefront", **options)
    ref = SerialEngine(net, Adam(lr=0.01), dtype="float64")
    gpu.pruning = ref.pruning = (True, None)
    assert_steps_match(gpu, ref, x, y, steps=2)
    for g in ref.stats["h_min"]:
        if g != net.output:
            np.testing.assert_allclose(gpu.stats["h_min"][g], ref.stats["h_min"][g], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gpu.forward(x), ref.forward(x), rtol=1e-4, atol=1e-4)
