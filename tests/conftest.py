import numpy as np
import pytest


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run only where the CUDA engine can run."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    from genlab.backends import cuda_status

    ok, why = cuda_status()
    if not ok:
        skip = pytest.mark.skip(reason=f"no CUDA engine here: {why}")
        for item in gpu_items:
            item.add_marker(skip)


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
