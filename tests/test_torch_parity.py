"""genlab's serial engine against PyTorch (CPU build) from the same initial weights, in float64."""

import numpy as np
import pytest
import torch

from genlab import Network, Trainer


def torch_mlp(net):
    """The same chain of groups as torch Linear layers, weights copied."""
    chain, g = [], net.input
    while g != net.output:
        (nxt,) = net.outputs(g)
        layer = torch.nn.Linear(net.widths[g], net.widths[nxt]).double()
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(net.weights[(g, nxt)]))
            layer.bias.copy_(torch.from_numpy(net.biases[nxt]))
        chain.append((nxt, layer))
        g = nxt
    return chain


def torch_forward(chain, x, out):
    h = x
    for g, layer in chain:
        h = layer(h)
        if g != out:
            h = torch.relu(h)
            h.retain_grad()
        yield g, h


@pytest.mark.parametrize("optimizer, options", [("sgd", {"lr": 0.1, "momentum": 0.9}),
                                                ("adam", {"lr": 0.01})])
def test_mlp_matches_pytorch_for_ten_steps(optimizer, options):
    net = Network.mlp([8, 16, 12, 3], seed=5, dtype=np.float64)
    for b in net.biases.values():
        b[:] = np.random.default_rng(1).normal(size=b.shape) * 0.1
    chain = torch_mlp(net)
    params = [p for _, layer in chain for p in layer.parameters()]
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=options["lr"], momentum=options["momentum"])
    else:
        opt = torch.optim.Adam(params, lr=options["lr"])
    trainer = Trainer(net, backend="serial", optimizer=optimizer, dtype="float64", **options)
    rng = np.random.default_rng(0)
    for _ in range(10):
        x, y = rng.normal(size=(20, 8)), rng.integers(0, 3, 20)
        ours = trainer.step(x, y)["loss"]
        opt.zero_grad()
        outputs = dict(torch_forward(chain, torch.from_numpy(x), net.output))
        loss = torch.nn.functional.cross_entropy(outputs[net.output], torch.from_numpy(y))
        loss.backward()
        assert ours == pytest.approx(loss.item(), rel=1e-5, abs=0)
        # the growth statistic: std of dL/dh of each hidden group, as PyTorch's autograd sees it
        for g in net.hidden_groups:
            assert trainer.engine.grad_std[g] == pytest.approx(outputs[g].grad.std(unbiased=False).item(), rel=1e-9)
        opt.step()
    trained = trainer.net
    for g, layer in chain:
        (src,) = trained.inputs(g)
        np.testing.assert_allclose(trained.weights[(src, g)], layer.weight.detach().numpy(), rtol=1e-9, atol=1e-12)
