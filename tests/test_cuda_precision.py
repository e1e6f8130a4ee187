"""The CUDA engine's precisions (genlab.precision) against the serial engine in the same precision.

The serial engine rounds the dense products' operands as the tensor cores do, so a precision's
GPU run matches it to that precision's tolerance, and lies much further from the fp32 serial run
where the precision rounds (tf32, bf16): a kernel that silently computed in fp32, or rounded
another operand, fails. 3xtf32 matches the fp32 serial engine at fp32's tolerance. Every
executor that offers the precision, every tier of widths (TILE tiles, wide.cu's 64 and 128).
"""

import numpy as np
import pytest

from genlab import BackendError, Network, Trainer
from genlab.engines import SerialEngine
from genlab.engines.cuda.executors import EXECUTORS
from genlab.optim import SGD
from genlab.precision import Precision
from test_cuda_engine import poison, random_case, rel

pytestmark = pytest.mark.gpu

ROUNDING = [Precision.TF32, Precision.BF16]
TENSOR = [Precision.TF32X3, *ROUNDING]
OFFERING = [name for name, cls in EXECUTORS.items() if Precision.TF32 in cls.precisions]
CASES = [  # (levels, per_level, width range, fan-in range, batch)
    (4, 6, (1, 40), (1, 8), 33),      # TILE tiles, partial tiles, split-K output
    (3, 4, (48, 200), (1, 4), 70),    # wide.cu's 64 x 64 tiles (level executors)
    (2, 3, (256, 300), (1, 3), 130),  # wide.cu's 128 x 128 tiles
]


def engines(net, precision, executor, optimizer=None):
    from genlab.engines.cuda import CudaEngine

    optimizer = optimizer or SGD()
    return (CudaEngine(net, optimizer, executor=executor, precision=precision),
            SerialEngine(net, optimizer, dtype="float64", precision=precision),
            SerialEngine(net, optimizer, dtype="float64"))


def flat(grads, keys):
    return np.concatenate([grads[k].ravel() for k in keys])


def test_offering_executors_are_the_tiles():
    assert {"level", "level_push", "level_batch", "dataflow", "dataflow_batch"} <= set(OFFERING)
    assert "dataflow_rows" not in OFFERING and "cluster" not in OFFERING


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("executor", OFFERING)
@pytest.mark.parametrize("precision", TENSOR, ids=lambda p: p.value)
def test_forward_and_backward_match_serial_in_the_same_precision(precision, executor, case):
    net, x, y = random_case(31 + CASES.index(case), *case)
    gpu, ref, fp32 = engines(net, precision, executor)
    gpu.ensure_batch(len(x))
    poison(gpu)
    logits, ref_logits, fp32_logits = gpu.forward(x), ref.forward(x), fp32.forward(x)
    loss = gpu.backward(y)
    assert loss == pytest.approx(ref.backward(y), rel=precision.tolerance)
    fp32.backward(y)
    keys = sorted(ref.grads, key=str)
    grads, ref_grads, fp32_grads = flat(gpu.grads, keys), flat(ref.grads, keys), flat(fp32.grads, keys)
    assert rel(logits, ref_logits) <= precision.tolerance
    assert rel(grads, ref_grads) <= 10 * precision.tolerance
    for name in ("grad_std", "weight_grad_norm"):
        for g, value in ref.stats[name].items():
            assert gpu.stats[name][g] == pytest.approx(value, rel=100 * precision.tolerance, abs=1e-9), (name, g)
    if precision in ROUNDING:  # the rounding is there: fp32's products lie further away
        # (not by much more: an activation the two engines sum in another order now and then
        # rounds the other way, and that spreads; test_one_product_is_exact has no such step)
        assert rel(grads, fp32_grads) >= 3 * rel(grads, ref_grads)
        assert rel(logits, fp32_logits) >= 3 * rel(logits, ref_logits)
    else:  # 3xtf32: fp32's accuracy
        assert rel(logits, fp32_logits) <= 1e-5 and rel(grads, fp32_grads) <= 1e-4


@pytest.mark.parametrize("classes", [10, 100, 300])
@pytest.mark.parametrize("executor", OFFERING)
@pytest.mark.parametrize("precision", TENSOR, ids=lambda p: p.value)
def test_one_product_is_exact(precision, executor, classes):
    """Logits straight from the input (x W^T + b) and their weight gradient (dz^T x): operands
    both engines hold alike, so the GPU matches the serial engine in its precision to float32's
    summation error, far closer than to fp32's products where the precision rounds."""
    rng = np.random.default_rng(classes)
    net = Network(57, classes)
    net.connect(0, 1)
    net.biases[1][:] = rng.normal(size=classes) * 0.1
    x, y = rng.normal(size=(70, 57)).astype(np.float32), rng.integers(0, classes, 70)
    gpu, ref, fp32 = engines(net, precision, executor)
    gpu.ensure_batch(len(x))
    poison(gpu)
    logits, ref_logits, fp32_logits = gpu.forward(x), ref.forward(x), fp32.forward(x)
    gpu.backward(y), ref.backward(y), fp32.backward(y)
    key = ("W", 0, 1)
    # dz comes out of the softmax in float32 on the GPU, float64 on the host: it rounds the other
    # way now and then, so the weight gradient gets the precision's tolerance
    assert rel(logits, ref_logits) <= 1e-6 and rel(gpu.grads[key], ref.grads[key]) <= precision.tolerance
    if precision in ROUNDING:
        assert rel(logits, fp32_logits) >= 100 * max(rel(logits, ref_logits), 1e-7)
        assert rel(gpu.grads[key], fp32.grads[key]) >= 10 * max(rel(gpu.grads[key], ref.grads[key]), 1e-6)


@pytest.mark.parametrize("executor", ["level", "dataflow"])
@pytest.mark.parametrize("precision", TENSOR, ids=lambda p: p.value)
def test_whole_steps_train_like_serial(precision, executor):
    """Three steps (the dataflow executor's one launch): the parameters stay with the serial
    engine's in the same precision."""
    net, x, y = random_case(77, 4, 5, (1, 70), (1, 4), 64)
    optimizer = SGD(lr=0.05, momentum=0.9)
    gpu, ref, _ = engines(net, precision, executor, optimizer)
    for _ in range(3):
        (a, _), (b, _) = ref.step(x, y), gpu.step(x, y)
        assert b == pytest.approx(a, rel=precision.tolerance)
    keys = sorted(ref.params, key=str)
    assert rel(flat(gpu.params, keys), flat(ref.params, keys)) <= precision.tolerance


@pytest.mark.parametrize("executor", sorted(set(EXECUTORS) - set(OFFERING)))
def test_executors_without_tensor_core_items_refuse_other_precisions(executor):
    net, _, _ = random_case(5, 2, 3, (4, 16), (1, 2), 8)
    with pytest.raises(BackendError, match="computes in fp32"):
        engines(net, Precision.BF16, executor)


def test_auto_chooses_among_the_executors_that_offer_the_precision():
    """A narrow network (the row executor's shape) in tf32: auto's trial runs only the tiles'
    executors, and the trainer's steps match a named one's."""
    net = Network.random_dag(5, 8, 16, 3, seed=2, n_inputs=20, n_outputs=4)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(64, 20)).astype(np.float32), rng.integers(0, 4, 64)
    auto = Trainer(net, backend="cuda", optimizer="sgd", lr=0.05, precision="tf32")
    auto.step(x, y)
    chosen = auto.engine.chooser.last
    assert chosen["executor"] in OFFERING and set(chosen["ms"]) <= set(OFFERING)
    assert auto.precision == "tf32"


@pytest.mark.parametrize("executor", ["level", "dataflow"])
def test_growth_keeps_the_precision(executor):
    """Growth rebuilds the layout under the executor: the grown engine still computes in bf16,
    step for step with the serial engine in bf16 (30 steps, growth every 4)."""
    from genlab import GrowthPolicy

    data = np.random.default_rng(3)
    X = data.normal(size=(1024, 10)).astype(np.float32)
    y = (X[:, :2].sum(axis=1) > 0).astype(np.int64)
    net = Network.random_dag(levels=2, per_level=2, width=20, fan_in=2, seed=2, n_inputs=10, n_outputs=2)
    policy = dict(threshold=0.0, every=4, cooldown=4, max_groups=16, mode="alternate")
    ref = Trainer(net.copy(), backend="serial", optimizer="sgd", lr=0.05, growth=GrowthPolicy(**policy),
                  precision="bf16")
    gpu = Trainer(net.copy(), backend="cuda", optimizer="sgd", lr=0.05, growth=GrowthPolicy(**policy),
                  executor=executor, precision="bf16")
    for step in range(30):
        xb, yb = X[(step * 64) % 1024:][:64], y[(step * 64) % 1024:][:64]
        a, b = ref.step(xb, yb), gpu.step(xb, yb)
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3)
    assert len(gpu.history.events) >= 3 and ref.net.edges == gpu.net.edges
    assert gpu.engine.precision is Precision.BF16
    for key in ref.net.weights:
        np.testing.assert_allclose(gpu.net.weights[key], ref.net.weights[key], rtol=1e-2, atol=1e-4)


@pytest.mark.parametrize("executor", ["level", "dataflow"])
@pytest.mark.parametrize("width", [40, 4096])
def test_3xtf32_keeps_float32_accuracy_over_long_sums(executor, width):
    """x W^T over 4096 inputs (wide.cu's 128-wide tiles for a wide output, TILE tiles for a
    narrow one): 3xtf32's error against the exact product stays within twice fp32's; a sum kept
    in the tensor cores' truncating accumulator drifted to 20x."""
    rng = np.random.default_rng(width)
    net = Network(4096, width)
    net.connect(0, 1)
    x = rng.normal(size=(256, 4096)).astype(np.float32)
    exact = SerialEngine(net, SGD(), dtype="float64").forward(x)
    errors = {}
    for precision in (Precision.FP32, Precision.TF32X3):
        from genlab.engines.cuda import CudaEngine

        errors[precision] = rel(CudaEngine(net, SGD(), executor=executor, precision=precision).forward(x), exact)
    assert errors[Precision.TF32X3] <= 2 * errors[Precision.FP32] + 1e-7, errors
