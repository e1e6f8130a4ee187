"""The PyTorch baselines of genlab.bench compute the same function as the serial engine."""

import numpy as np
import pytest
import torch

from genlab import Network
from genlab.bench import torch_group_model, torch_level_model
from genlab.engines import SerialEngine
from genlab.optim import SGD


@pytest.mark.parametrize("make", [torch_group_model, torch_level_model])
@pytest.mark.parametrize("seed", range(3))
def test_torch_models_match_the_serial_engine(make, seed):
    net = Network.random_dag(5, 6, (1, 12), (1, 4), seed=seed, n_inputs=7, n_outputs=4, dtype=np.float64)
    rng = np.random.default_rng(seed)
    for b in net.biases.values():
        b[:] = rng.normal(size=b.shape) * 0.1
    x, y = rng.normal(size=(10, 7)), rng.integers(0, 4, 10)
    ref = SerialEngine(net, SGD(), dtype="float64")
    logits = ref.forward(x)
    loss = ref.backward(y)
    params, forward = make(net, torch.device("cpu"), torch.float64)
    out = forward(torch.from_numpy(x))
    np.testing.assert_allclose(out.detach().numpy(), logits, rtol=1e-10, atol=1e-12)
    torch_loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(y))
    assert torch_loss.item() == pytest.approx(loss, rel=1e-12)
    torch_loss.backward()
    total = sum(float((p.grad ** 2).sum()) for p in params.parameters())  # padding entries get no gradient
    assert total == pytest.approx(sum(float((g ** 2).sum()) for g in ref.grads.values()), rel=1e-9)


def test_step_cost_counts_flops_and_fewest_bytes():
    from genlab.bench import step_cost

    net = Network.mlp([4, 3, 2])
    flops, nbytes = step_cost(net, batch=5)
    assert flops == 6 * 5 * (4 * 3 + 3 * 2)                      # 2 forward + 4 backward per weight and row
    assert nbytes == 4 * (4 * 5 * (4 + 3 + 2) + 7 * net.n_params)  # activations and gradients; Adam's traffic


def test_chart_and_help_need_no_gpu(tmp_path):
    import subprocess
    import sys

    from PIL import Image

    from genlab.bench import chart

    summary = {"device": "a GPU", "workloads": {"W1": {"genlab_level": 1.5, "serial": 400.0, "compile_s": 12.0},
                                                "W5": {"genlab_level": {"total_s": 1.0, "growth_event_ms": 4.0}}}}
    chart(summary, tmp_path / "chart.png")
    assert Image.open(tmp_path / "chart.png").format == "PNG"
    result = subprocess.run([sys.executable, "-m", "genlab", "bench", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--workload" in result.stdout and "torch_compile" in result.stdout
