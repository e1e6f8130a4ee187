import os

import numpy as np
import pytest

import genlab


EMULATE = os.environ.get("GENLAB_EMULATE_GPU") == "1"  # gpu tests on the CPU-emulated GPU (tests/cpu_cuda)


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run only where the CUDA engine can run (or, with GENLAB_EMULATE_GPU=1,
    on the CPU-emulated GPU: slowly, and without what it does not emulate)."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items or EMULATE:
        return
    from genlab.backends import cuda_status

    ok, why = cuda_status()
    if not ok:
        skip = pytest.mark.skip(reason=f"no CUDA engine here: {why}")
        for item in gpu_items:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _emulated_gpu_for_gpu_tests(request):
    if EMULATE and "gpu" in request.keywords:
        request.getfixturevalue("cpu_gpu")


@pytest.fixture
def fake_gpu(monkeypatch):
    """PyCUDA and genlab's kernel launcher replaced by checking stand-ins (tests/fake_cuda.py): the
    host side of a CUDA engine runs here, each launch checked against its kernel's parameters."""
    from fake_cuda import install

    return install(monkeypatch)


@pytest.fixture
def fresh_executor_cache(tmp_path, monkeypatch):
    """executor="auto" starts with no cached choice, in a cache of its own (tmp_path)."""
    from genlab.engines.cuda import choice

    monkeypatch.setenv("GENLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(choice, "_CACHE", None)


@pytest.fixture
def cpu_gpu(monkeypatch):
    """The stand-in GPU whose launches run the kernels' own source on the CPU
    (tests/cpu_cuda/emulator.py): a CUDA engine computes real numbers without a GPU, slowly."""
    from fake_cuda import install

    return install(monkeypatch, executes=True)


def snapshot(net):
    """Everything a failed operation must leave as it was: topology and parameter values."""
    return (dict(net.widths), [(g, net.inputs(g), net.outputs(g)) for g in net.groups],
            {k: v.copy() for k, v in net.weights.items()}, {k: v.copy() for k, v in net.biases.items()})


def assert_unchanged(net, before):
    widths, adjacency, weights, biases = snapshot(net)
    assert widths == before[0]
    assert adjacency == before[1]
    assert weights.keys() == before[2].keys() and biases.keys() == before[3].keys()
    for k in weights:
        np.testing.assert_array_equal(weights[k], before[2][k])
    for k in biases:
        np.testing.assert_array_equal(biases[k], before[3][k])


def tangle(net, a, b, widths, seed, scale):
    """Recurrence at its most varied, added to a network whose hidden groups a -> b are stacked
    recurrent layers: a back edge b -> a of delay 2, a group c reading b one step back and
    feeding the output, a group d reading the input one step late and feeding b; biases drawn
    with `scale`."""
    from genlab import INPUT, OUTPUT

    net.connect(b, a, delay=2)
    c = net.add_group(widths[0], outputs=[OUTPUT])
    net.connect(b, c, delay=1)
    d = net.add_group(widths[1], outputs=[b])
    net.connect(INPUT, d, delay=1)
    rng = np.random.default_rng(seed)
    for bias in net.biases.values():
        bias[:] = rng.normal(size=bias.shape) * scale
    return net


def recurrent_cases() -> dict:
    """Recurrent networks for the wavefront kernel's tests: a 2-layer stack, a tangle of delays
    (tangle), a group wider than a block's threads, groups of 100 and 70 (a thread then holds
    two rows of a 4-row block)."""
    stack = genlab.Network.elman(5, [7, 6], 4, seed=3)
    tangled = genlab.Network.elman(6, [12, 9], 4, seed=1)
    tangle(tangled, *tangled.hidden_groups, widths=(5, 3), seed=1, scale=0.2)
    wide = genlab.Network.elman(3, [40, 300], 5, seed=4)
    broad = genlab.Network.elman(4, [100, 70], 3, seed=5)
    return {"stack": stack, "tangled": tangled, "wide": wide, "broad": broad}


# Random networks that mix group kinds (tests/test_kinds.py, tests/test_cuda_kinds.py)
def random_image_net(seed):
    """Conv groups (1x1, 3x3, 5x5; stride 1 or 2) reading spatial groups of their grid, dense groups
    reading anything flattened, the output reading a few of them."""
    rng = np.random.default_rng(seed)
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(3, 10)), int(rng.integers(3, 10))
    net = genlab.Network(input_shape=(c, h, w), n_outputs=int(rng.integers(2, 12)), seed=seed)
    spatial, dense = [net.input], []
    for _ in range(int(rng.integers(2, 7))):
        if rng.random() < 0.7 or not dense and len(spatial) < 2:
            first = int(rng.choice(spatial))
            grid = net.sample_shape(first)[1:]
            same = [g for g in spatial if g != first and net.sample_shape(g)[1:] == grid]
            extra = list(rng.choice(same, size=min(len(same), int(rng.integers(0, 3))), replace=False)) if same else []
            spatial.append(net.add_group(int(rng.integers(1, 7)), inputs=[first, *map(int, extra)], kind="conv",
                                         kernel=int(rng.choice([1, 3, 5])), stride=int(rng.choice([1, 1, 2]))))
        else:
            pool = spatial + dense
            inputs = rng.choice(pool, size=min(len(pool), int(rng.integers(1, 4))), replace=False)
            dense.append(net.add_group(int(rng.integers(1, 40)), inputs=list(map(int, inputs))))
    _finish(net, rng)
    return net, rng.normal(size=(int(rng.integers(1, 70)), c, h, w))


def random_sequence_net(seed):
    """Attention groups (1 to 4 heads, every other one with position encodings) and token-wise
    dense groups reading earlier groups."""
    rng = np.random.default_rng(seed)
    t, f = int(rng.integers(1, 10)), int(rng.integers(1, 7))
    net = genlab.Network(input_shape=(t, f), n_outputs=int(rng.integers(2, 12)), seed=seed)
    groups = [net.input]
    for _ in range(int(rng.integers(2, 7))):
        inputs = list(map(int, rng.choice(groups, size=min(len(groups), int(rng.integers(1, 4))), replace=False)))
        if rng.random() < 0.6:
            heads = int(rng.integers(1, 5))
            groups.append(net.add_group(heads * int(rng.integers(1, 9)), inputs=inputs, kind="attention", heads=heads,
                                        positions=(len(groups) + seed) % 2 == 0))
        else:
            groups.append(net.add_group(int(rng.integers(1, 40)), inputs=inputs))
    _finish(net, rng)
    return net, rng.normal(size=(int(rng.integers(1, 70)), t, f))


def _finish(net, rng):
    for g in net.hidden_groups:
        if not net.outputs(g) or rng.random() < 0.3:
            net.connect(g, net.output)
    for g, b in net.biases.items():
        net.biases[g] = (b + rng.normal(size=b.shape) * 0.1).astype(np.float32)
