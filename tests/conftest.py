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
