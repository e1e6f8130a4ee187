import numpy as np
import pytest

from genlab import INPUT, OUTPUT, Network
from genlab.engines import SerialEngine, softmax_cross_entropy
from genlab.optim import SGD, Adam, make_optimizer


def random_batch(net, batch, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, net.n_inputs)), rng.integers(0, net.n_outputs, batch)


def batch_clear_of_kinks(engine, net, batch, seed, margin=1e-3):
    """A batch whose hidden pre-activations all lie `margin` away from ReLU's kink at 0, where the
    loss is not differentiable and finite differences straddle two slopes."""
    for attempt in range(100):
        x, y = random_batch(net, batch, seed * 1000 + attempt)
        engine.forward(x)
        h = engine._h
        if all(np.abs(engine.params[("b", g)] + sum(h[s] @ engine.params[("W", s, g)].T
                                                     for s in engine.inputs[g])).min() > margin
               for g in net.hidden_groups):
            return x, y
    raise AssertionError("no batch clear of kinks")


def test_softmax_cross_entropy_matches_its_definition():
    rng = np.random.default_rng(0)
    logits, y = rng.normal(size=(7, 5)) * 10, rng.integers(0, 5, 7)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    loss, grad = softmax_cross_entropy(logits, y)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(7), y])), rel=1e-12)
    np.testing.assert_allclose(grad, (p - np.eye(5)[y]) / 7, rtol=1e-12, atol=1e-15)
    assert np.isfinite(softmax_cross_entropy(np.array([[1000.0, -1000.0]]), np.array([1]))[0])


@pytest.mark.parametrize("seed", range(4))
def test_gradients_match_central_differences_in_float64(seed):
    net = Network.random_dag(levels=4, per_level=3, width=(1, 6), fan_in=(1, 3), seed=seed,
                             n_inputs=5, n_outputs=3, dtype=np.float64)
    for b in net.biases.values():  # non-zero biases, so their gradients are tested too
        b[:] = np.random.default_rng(seed).normal(size=b.shape) * 0.1
    engine = SerialEngine(net, SGD(), dtype="float64")
    x, y = batch_clear_of_kinks(engine, net, 9, seed)
    engine.forward(x)
    engine.backward(y)
    analytic = {k: g.copy() for k, g in engine.grads.items()}
    assert analytic.keys() == engine.params.keys()
    eps = 1e-4
    loss_at = lambda: softmax_cross_entropy(engine.forward(x), y)[0]
    for key, param in engine.params.items():
        numeric = np.zeros_like(param)
        for i in np.ndindex(param.shape):
            saved, f = param[i], {}
            for k in (-2, -1, 1, 2):
                param[i] = saved + k * eps
                f[k] = loss_at()
            param[i] = saved
            # fourth-order central difference: truncation O(eps^4), round-off ~1e-16/eps
            numeric[i] = (f[-2] - 8 * f[-1] + 8 * f[1] - f[2]) / (12 * eps)
        a = analytic[key]
        assert np.linalg.norm(a - numeric) <= 1e-6 * np.linalg.norm(numeric) + 1e-9, key
        assert np.all(np.abs(a - numeric) <= 1e-6 * np.maximum(np.abs(a), np.abs(numeric)) + 1e-9), key


def test_grad_std_is_the_std_of_dl_dh():
    net = Network.random_dag(levels=3, per_level=2, width=4, fan_in=2, seed=2, n_inputs=3, n_outputs=2,
                             dtype=np.float64)
    engine = SerialEngine(net, SGD(), dtype="float64")
    x, y = random_batch(net, 6, 0)
    engine.forward(x)
    engine.backward(y)
    g = net.hidden_groups[0]
    # dL/dh for group g by finite differences on an offset added to its output
    h_g = engine._h[g]
    grad = np.zeros_like(h_g)
    order = engine.order

    def loss_with(offset):
        h = {INPUT: x}
        for d in order:
            z = engine.params[("b", d)] + sum(h[s] @ engine.params[("W", s, d)].T for s in engine.inputs[d])
            h[d] = z if d == OUTPUT else np.maximum(z, 0) + (offset if d == g else 0)
        return softmax_cross_entropy(h[OUTPUT], y)[0]

    for i in np.ndindex(h_g.shape):
        e = np.zeros_like(h_g)
        e[i] = 1e-6
        grad[i] = (loss_with(e) - loss_with(-e)) / 2e-6
    assert engine.grad_std[g] == pytest.approx(grad.std(), rel=1e-6)
    assert engine.stats["taylor"][g] == pytest.approx(abs(np.mean(h_g * grad)), rel=1e-6)
    np.testing.assert_array_equal(engine.stats["h_min"][g], h_g.min(axis=0))
    np.testing.assert_array_equal(engine.stats["h_max"][g], h_g.max(axis=0))
    assert set(engine.grad_std) == set(net.groups) - {INPUT}


def test_float32_by_default_and_float64_on_request():
    net = Network.mlp([4, 3, 2])
    x, y = random_batch(net, 5, 0)
    for dtype in ("float32", "float64"):
        engine = SerialEngine(net, Adam(), dtype=dtype)
        assert engine.forward(x).dtype == dtype
        engine.backward(y)
        assert all(g.dtype == dtype for g in engine.grads.values())
    with pytest.raises(ValueError, match="float32 or float64"):
        SerialEngine(net, Adam(), dtype="float16")


def test_optimizer_state_survives_reload_for_unchanged_parameters():
    net = Network.mlp([4, 3, 2])
    engine = SerialEngine(net, Adam(), dtype="float64")
    x, y = random_batch(net, 5, 0)
    engine.step(x, y)
    m = engine.state[("W", 2, 1)]["m"].copy()
    engine.write_back(net)
    g = net.add_group(2, inputs=[2], outputs=[OUTPUT])
    engine.load(net)
    np.testing.assert_array_equal(engine.state[("W", 2, 1)]["m"], m)
    assert ("W", g, OUTPUT) not in engine.state  # new parameters start fresh


def test_make_optimizer():
    assert make_optimizer("adam").lr == 1e-3 and make_optimizer("sgd").lr == 0.1
    assert make_optimizer("SGD", lr=0.5, momentum=0.0) == SGD(lr=0.5, momentum=0.0)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop")
