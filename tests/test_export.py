"""genlab.to_torch: the same function as the network, as a torch.nn.Module, and ONNX from it."""

import warnings

import numpy as np
import pytest
import torch

import genlab
from genlab import GraphError, GrowthPolicy, Network, Trainer
from genlab.engines import SerialEngine
from genlab.optim import SGD


def case(seed, dtype=np.float32, width=(1, 40)):
    rng = np.random.default_rng(seed)
    net = Network.random_dag(4, 5, width, (1, 5), seed=seed, n_inputs=int(rng.integers(2, 30)),
                             n_outputs=int(rng.integers(2, 9)), dtype=dtype)
    for b in net.biases.values():
        b[:] = rng.normal(size=b.shape) * 0.1
    x = rng.normal(size=(17, net.n_inputs)).astype(dtype)
    return net, x, rng.integers(0, net.n_outputs, 17)


@pytest.mark.parametrize("seed", range(4))
def test_the_module_computes_the_networks_function_in_float32(seed):
    net, x, _ = case(seed)
    module = genlab.to_torch(net)
    got = module(torch.from_numpy(x)).detach().numpy()
    want = SerialEngine(net, SGD(), dtype="float64").forward(x)
    assert got.dtype == np.float32
    assert np.abs(got - want).max() <= 2e-6 * max(np.abs(want).max(), 1.0)


def test_float64_networks_give_float64_modules_and_the_same_gradients():
    net, x, y = case(7, dtype=np.float64)
    module = genlab.to_torch(net)
    ref = SerialEngine(net, SGD(), dtype="float64")
    logits = module(torch.from_numpy(x))
    np.testing.assert_allclose(logits.detach().numpy(), ref.forward(x), rtol=1e-12, atol=1e-12)
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y))
    loss.backward()
    assert loss.item() == pytest.approx(ref.backward(y), rel=1e-12)
    for (kind, *ids), grad in ref.grads.items():
        name = f"W_{ids[0]}_{ids[1]}" if kind == "W" else f"b_{ids[0]}"
        param = module.weights[name] if kind == "W" else module.biases[name]
        np.testing.assert_allclose(param.grad.numpy(), grad, rtol=1e-9, atol=1e-12, err_msg=name)


def test_a_grown_network_exports_and_the_network_is_left_alone():
    data = genlab.datasets.load("iris", seed=0)
    net = Network.mlp([data.n_features, 4, data.n_classes], seed=0)
    trainer = Trainer(net, backend="serial", seed=0,
                      growth=GrowthPolicy(threshold=0.0, every=5, cooldown=0, max_groups=8, mode="alternate"))
    trainer.fit(data.X_train, data.y_train, epochs=2, progress=False)
    grown = trainer.net
    assert len(grown.groups) > 3
    module = genlab.to_torch(grown)
    np.testing.assert_allclose(module(torch.from_numpy(data.X_test.astype(np.float32))).detach().numpy(),
                               trainer.logits(data.X_test), rtol=1e-5, atol=1e-5)
    before = {k: v.copy() for k, v in grown.weights.items()}
    with torch.no_grad():
        for p in module.parameters():
            p.add_(1.0)  # the module owns copies
    for k, v in before.items():
        np.testing.assert_array_equal(grown.weights[k], v)
    assert set(module.state_dict()) == {f"weights.W_{s}_{d}" for s, d in grown.weights} | \
        {f"biases.b_{g}" for g in grown.biases}


def test_an_invalid_network_is_refused():
    net = Network(3, 2)
    net.add_group(4, inputs=[net.input])  # feeds nothing: the output is cut off
    with pytest.raises(GraphError):
        genlab.to_torch(net)


def test_onnx_export_runs_in_onnxruntime_with_any_batch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    net, x, _ = case(3)
    module = genlab.to_torch(net)
    assert not module.training  # eval mode: exported as it predicts, without the exporter's warning about it
    path = tmp_path / "net.onnx"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.onnx.export(module, (torch.from_numpy(x[:2]),), str(path), dynamic_shapes=({0: torch.export.Dim("batch")},))
    assert not [w for w in caught if "training mode" in str(w.message)]
    session = ort.InferenceSession(str(path))
    (out,) = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(out, module(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_to_onnx_writes_a_model_onnxruntime_runs_quietly(tmp_path, capfd):
    """One call: any batch, the logits to_torch gives, for a DAG and for a recurrent network (a
    fixed number of steps), written atomically, with none of the exporter's own notes."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    net, x, _ = case(3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = genlab.to_onnx(net, tmp_path / "net.onnx")
    assert path == tmp_path / "net.onnx" and caught == []
    out = capfd.readouterr()
    assert "torch.onnx" not in out.out + out.err and "torchvision" not in out.err
    session = ort.InferenceSession(str(path))
    for batch in (1, 5):
        (logits,) = session.run(None, {session.get_inputs()[0].name: x[:batch]})
        np.testing.assert_allclose(logits, genlab.to_torch(net)(torch.from_numpy(x[:batch])).detach().numpy(),
                                   rtol=1e-5, atol=1e-6)
    rnn = Network.elman(3, [5], 2, seed=0)
    seq = np.random.default_rng(0).normal(size=(4, 6, 3)).astype(np.float32)
    session = ort.InferenceSession(str(genlab.to_onnx(rnn, tmp_path / "rnn.onnx", steps=6)))
    (logits,) = session.run(None, {session.get_inputs()[0].name: seq})
    np.testing.assert_allclose(logits, genlab.to_torch(rnn)(torch.from_numpy(seq)).detach().numpy(), rtol=1e-5,
                               atol=1e-6)  # (to_torch is checked against the serial engine above)


def test_to_onnx_refuses_bad_arguments_and_keeps_the_file_there(tmp_path):
    net, _, _ = case(3)
    rnn = Network.elman(3, [5], 2, seed=0)
    with pytest.raises(genlab.ArgumentError, match="pass steps="):
        genlab.to_onnx(rnn, tmp_path / "rnn.onnx")
    with pytest.raises(genlab.ArgumentError, match="steps= is for recurrent networks"):
        genlab.to_onnx(net, tmp_path / "net.onnx", steps=4)
    there = tmp_path / "net.onnx"
    there.write_bytes(b"before")
    with pytest.raises(genlab.SaveError, match="does not exist"):
        genlab.to_onnx(net, tmp_path / "missing" / "net.onnx")
    (tmp_path / "folder.onnx").mkdir()
    with pytest.raises(genlab.SaveError, match="it is a folder"):
        genlab.to_onnx(net, tmp_path / "folder.onnx")
    assert there.read_bytes() == b"before" and not list(tmp_path.glob(".*.tmp"))
