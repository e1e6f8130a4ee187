"""Conv and attention groups on the CUDA engine (the level executor) against the serial engine,
on random networks that mix kinds, with fresh random inputs; outputs poisoned with NaN first."""

import numpy as np
import pytest

from genlab import BackendError, GrowthPolicy, Network, Trainer
from genlab.engines import SerialEngine
from genlab.optim import SGD, Adam

from conftest import random_image_net, random_sequence_net
from test_cuda_engine import assert_params_match, poison, rel

pytestmark = pytest.mark.gpu


CASES = [(random_image_net, seed) for seed in range(8)] + [(random_sequence_net, seed) for seed in range(8)]


def cuda_engine(net, optimizer=None, executor="level"):
    from genlab.engines.cuda import CudaEngine

    return CudaEngine(net, optimizer or SGD(), executor=executor)


def assert_passes_match(net, x, seed):
    """A forward and backward pass on CUDA (outputs poisoned first) against the float64 serial
    engine: logits, loss and every gradient. Returns (serial engine, CUDA engine)."""
    y = np.random.default_rng(seed).integers(0, net.n_outputs, len(x))
    ref, gpu = SerialEngine(net, SGD(), dtype="float64"), cuda_engine(net)
    gpu.ensure_batch(len(x) * gpu.layout.kinds.tokens)
    poison(gpu)
    assert rel(gpu.forward(x), ref.forward(x)) <= 1e-5
    assert gpu.backward(y) == pytest.approx(ref.backward(y), rel=1e-5)
    grads = gpu.grads
    for key, g in ref.grads.items():
        assert np.linalg.norm(grads[key] - g) <= 1e-4 * np.linalg.norm(g) + 1e-7, key
    return ref, gpu


@pytest.mark.parametrize("make, seed", CASES)
def test_forward_backward_and_statistics_match_serial(make, seed):
    net, x = make(seed)
    ref, gpu = assert_passes_match(net, x, seed)
    for name in ("grad_std", "weight_grad_norm", "taylor"):
        for g, value in ref.stats[name].items():
            assert gpu.stats[name][g] == pytest.approx(value, rel=1e-4, abs=1e-9), (name, g, net.kinds[g])


@pytest.mark.parametrize("make, seed", CASES[::2])
def test_training_steps_match_serial(make, seed):
    net, x = make(100 + seed)
    y = np.random.default_rng(seed).integers(0, net.n_outputs, len(x))
    optimizer = Adam(lr=0.01)
    ref, gpu = SerialEngine(net, optimizer, dtype="float64"), cuda_engine(net, optimizer)
    for _ in range(3):
        (a, ca), (b, cb) = ref.step(x, y), gpu.step(x, y)
        assert b == pytest.approx(a, rel=1e-4) and cb == ca
    assert_params_match(gpu, ref, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("per_block", [3, 8])
@pytest.mark.parametrize("seed", range(4))
def test_attention_blocks_of_several_samples_match_serial(monkeypatch, per_block, seed):
    """Several samples an attention block (the last block fewer), weights staged and gradients
    summed in shared memory, against the serial engine's gradients."""
    from genlab.kinds.attention import cuda

    monkeypatch.setattr(cuda, "SAMPLES", per_block)
    monkeypatch.setattr(cuda, "BLOCKS", 1)
    assert_passes_match(*random_sequence_net(200 + seed), seed)


def random_stride_one_net(seed):
    """Conv groups of kernels 1, 3 and 5, stride 1, up to 8 channels on a grid up to 12 x 12 (so
    that every one of them runs conv_backward_staged), read by conv groups and by the output."""
    rng = np.random.default_rng(seed)
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(3, 13)), int(rng.integers(3, 13))
    net = Network(input_shape=(c, h, w), n_outputs=int(rng.integers(2, 12)), seed=seed)
    groups = [net.input]
    for _ in range(int(rng.integers(2, 8))):
        inputs = rng.choice(groups, size=min(len(groups), int(rng.integers(1, 4))), replace=False)
        groups.append(net.add_group(int(rng.integers(1, 9)), inputs=list(map(int, inputs)), kind="conv",
                                    kernel=int(rng.choice([1, 3, 5]))))
    for g in groups[1:]:
        if not net.outputs(g) or rng.random() < 0.3:
            net.connect(g, net.output)
    net.init_params(seed)
    return net, rng.normal(size=(int(rng.integers(1, 90)), c, h, w))


@pytest.mark.parametrize("seed", range(8))
def test_staged_conv_backward_and_weight_warps_match_serial(seed):
    """conv_backward_staged (every group of these networks fits it) and conv_weight_grad's warp
    tiles against the serial engine's gradients and statistics."""
    from genlab.kinds.conv import cuda

    net, x = random_stride_one_net(300 + seed)
    ref, gpu = assert_passes_match(net, x, seed)
    assert all(cuda.staging(gpu.layout)[gpu.layout.slot[g]][1] for g in net.hidden_groups)
    for g, value in ref.stats["grad_std"].items():
        assert gpu.stats["grad_std"][g] == pytest.approx(value, rel=1e-4, abs=1e-9), g


def test_a_conv_level_of_two_grids_matches_serial():
    """One level's conv groups on grids of 144 and 36 positions: the launch's blocks are sized for
    the larger, and those past the smaller group's end must stage and write nothing."""
    net = Network(input_shape=(2, 12, 12), n_outputs=3, seed=11)
    a = net.add_group(5, inputs=[net.input], kind="conv", kernel=3)
    b = net.add_group(4, inputs=[net.input], kind="conv", kernel=3, stride=2)
    c = net.add_group(3, inputs=[a], kind="conv", kernel=1)
    for g in (b, c):
        net.connect(g, net.output)
    net.init_params(11)
    assert_passes_match(net, np.random.default_rng(11).normal(size=(50, 2, 12, 12)), 11)


@pytest.mark.parametrize("shape, kind, options", [((1, 8, 8), "conv", {"kernel": 3}), ((8, 8), "attention", {"heads": 2})])
def test_growth_of_other_kinds_on_cuda_matches_serial(shape, kind, options):
    """Growth runs on the host for these kinds; the CUDA trainer grows as the serial one does."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(96, *shape)).astype(np.float32), rng.integers(0, 4, 96)
    runs = {}
    for backend in ("serial", "cuda"):
        net = Network(input_shape=shape, n_outputs=4, seed=0)
        net.add_group(8, inputs=[net.input], outputs=[net.output], kind=kind, **options)
        trainer = Trainer(net, backend=backend, optimizer="adam", lr=0.01, seed=0, batch_size=32,
                          growth=GrowthPolicy(threshold=0.0, every=3, cooldown=3, max_groups=6))
        trainer.fit(x, y, epochs=4, progress=False)
        runs[backend] = trainer.net
    serial, gpu = runs["serial"], runs["cuda"]
    assert gpu.edges == serial.edges and gpu.kinds == serial.kinds and len(gpu.groups) > 3
    for key, w in serial.weights.items():
        np.testing.assert_allclose(gpu.weights[key], w, rtol=1e-3, atol=1e-4)


def test_executors_that_cannot_run_a_kind_say_so_and_big_attention_is_refused():
    net = Network.conv_chain((1, 8, 8), [4], 3)
    with pytest.raises(BackendError, match="the dataflow_rows executor cannot run groups of kind conv"):
        cuda_engine(net, executor="dataflow_rows")
    big = Network.attention_chain((64, 8), [64], 3, heads=1, dense=False)
    with pytest.raises(BackendError, match="needs .* floats of shared memory"):
        cuda_engine(big)


@pytest.mark.parametrize("name, kind", [("digits_images", "conv"), ("digits_rows", "attention")])
def test_a_cuda_checkpoint_of_kinds_resumes_on_cuda_and_on_serial(tmp_path, name, kind):
    """Trainer.save on the GPU (slots, offsets and kind lists described by the placement); the
    resumed CUDA trainer and a serial one compute the same logits, and the CUDA one trains on."""
    import genlab.starts
    from genlab import datasets

    data = datasets.load(name)
    trainer = Trainer(genlab.starts.build(data, kind, None, True, seed=0), backend="cuda", optimizer="adam",
                      lr=3e-3, seed=0, growth=GrowthPolicy(threshold=0.0, every=8, cooldown=4, max_groups=6))
    X, y = data.train
    for step in range(20):
        trainer.step(X[32 * step:32 * step + 32], y[32 * step:32 * step + 32])
    assert trainer.history.events
    path = trainer.save(tmp_path / "kinds.ckpt")
    gpu, serial = Trainer.load(path, backend="cuda"), Trainer.load(path, backend="serial")
    x = data.X_test[:64]
    np.testing.assert_allclose(gpu.logits(x), trainer.logits(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(serial.logits(x), trainer.logits(x), rtol=1e-4, atol=1e-4)
    gpu.step(X[:32], y[:32])
    serial.step(X[:32], y[:32])
    np.testing.assert_allclose(gpu.logits(x), serial.logits(x), rtol=1e-3, atol=1e-3)
