"""genlab.precision: the names, the rounding the serial engine shares with the tensor cores, and
the trainer's precision= through engines, checkpoints and the executors' choice."""

import numpy as np
import pytest

from genlab import ArgumentError, ArgumentTypeError, BackendError, Network, Trainer
from genlab.engines import SerialEngine
from genlab.kinds import KINDS
from genlab.optim import SGD
from genlab.precision import PRECISIONS, Precision, Rounded, parse, rounded


def bits(*values):
    return np.array(values, np.uint32).view(np.float32)


def test_names_parse_and_bad_names_say_the_choices():
    assert PRECISIONS == ("fp32", "3xtf32", "tf32", "bf16")
    assert [parse(n) for n in PRECISIONS] == list(Precision)
    assert parse("BF16") is Precision.BF16 and parse(Precision.TF32) is Precision.TF32
    with pytest.raises(ArgumentError, match="fp32, 3xtf32, tf32, bf16"):
        parse("fp16")
    with pytest.raises(ArgumentTypeError, match="precision"):
        parse(32)


def test_codes_are_the_kernels_constants():
    from genlab.engines.cuda.constants import SHARED

    assert {SHARED[f"PRECISION_{p.name}"] for p in Precision} == set(range(len(Precision)))
    assert all(SHARED[f"PRECISION_{p.name}"] == p.code for p in Precision)


def test_tf32_rounds_to_nearest_ties_away_from_zero():
    one = 0x3F800000
    # 1 + half a TF32 step (bit 12) is a tie: away from zero, either sign; just below it stays
    x = bits(one | 0x1000, (one | 0x1000) | 0x80000000, one | 0x0FFF, one | 0x3000, one | 0x1001)
    out = Precision.TF32.round(x).view(np.uint32)
    assert out.tolist() == [one | 0x2000, (one | 0x2000) | 0x80000000, one, one | 0x4000, one | 0x2000]


def test_bf16_rounds_to_nearest_ties_to_even():
    one = 0x3F800000
    x = bits(one | 0x8000, one | 0x18000, one | 0x8001, one | 0x7FFF)
    out = Precision.BF16.round(x).view(np.uint32)
    assert out.tolist() == [one, one | 0x20000, one | 0x10000, one]


@pytest.mark.parametrize("precision", [Precision.TF32, Precision.BF16])
def test_rounding_matches_arithmetic_on_random_bit_patterns(precision):
    """Every finite float32 (normal or subnormal, either sign) against the rule done in float64:
    the nearest multiple of the value's unit in the last kept place, ties away from zero (TF32)
    or to the even multiple (bfloat16)."""
    rng = np.random.default_rng(7)
    x = rng.integers(0, 2**32, 200000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x = x[np.isfinite(x)]
    exponent = np.maximum(np.frexp(x.astype(np.float64))[1] - 1, -126)  # subnormals share the smallest
    unit = np.ldexp(1.0, exponent - precision.mantissa_bits)
    scaled = np.abs(x.astype(np.float64)) / unit  # exact: a power-of-two division
    low = np.floor(scaled)
    tie = scaled - low == 0.5
    up = (scaled - low > 0.5) | (tie & (True if precision is Precision.TF32 else (low % 2 == 1)))
    expected = np.sign(x) * (low + up) * unit
    with np.errstate(over="ignore"):
        expected = expected.astype(np.float32)  # the largest values round to infinity, as the hardware's
    got = precision.round(x)
    np.testing.assert_array_equal(got, expected)


def test_bf16_agrees_with_torch_on_random_values():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = (rng.normal(size=20000) * np.exp(rng.normal(size=20000) * 8)).astype(np.float32)
    expected = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(Precision.BF16.round(x), expected)


@pytest.mark.parametrize("precision", [Precision.TF32, Precision.BF16])
def test_rounding_keeps_specials_dtype_and_bounds_the_error(precision):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, 3.0], np.float64)
    out = precision.round(x)
    assert out.dtype == np.float64
    assert np.isposinf(out[2]) and np.isneginf(out[3]) and np.isnan(out[4])
    assert np.signbit(out[1]) and out[0] == 0 and out[6] == 3.0
    assert np.isnan(precision.round(bits(0x7F800001, 0xFF800001))).all()  # a NaN's payload in the dropped bits
    rng = np.random.default_rng(1)
    y = rng.normal(size=1000).astype(np.float32)
    error = np.abs(precision.round(y) - y) / np.abs(y)
    assert error.max() <= 2.0 ** -(precision.mantissa_bits + 1)
    assert (precision.round(y) != y).mean() > 0.9  # it does round


def test_fp32_and_3xtf32_leave_values_alone():
    x = np.random.default_rng(2).normal(size=50).astype(np.float32)
    assert Precision.FP32.round(x) is x and Precision.TF32X3.round(x) is x


def test_only_kinds_on_the_dense_tiles_are_rounded():
    for name, kind in KINDS.items():
        wrapped = rounded(kind, Precision.BF16)
        assert isinstance(wrapped, Rounded) == (not kind.own_kernels), name
        assert rounded(kind, Precision.FP32) is kind
    assert rounded(KINDS["dense"], Precision.BF16).name == "dense"


def small_case(seed=0):
    net = Network.random_dag(2, 2, 12, 2, seed=seed, n_inputs=9, n_outputs=4)
    rng = np.random.default_rng(seed)
    return net, rng.normal(size=(16, 9)).astype(np.float32), rng.integers(0, 4, 16)


def manual_logits(net, x, r):
    """The network's forward with every product's operands rounded by r (float64 sums)."""
    h = {0: x.astype(np.float64)}
    for g in net.topological_order()[1:]:
        z = net.biases[g].astype(np.float64) + sum(r(h[s]) @ r(net.weights[(s, g)].astype(np.float64)).T
                                                   for s in net.inputs(g))
        h[g] = z if g == 1 else np.maximum(z, 0)
    return h[1]


@pytest.mark.parametrize("precision", [Precision.TF32, Precision.BF16])
def test_serial_engine_rounds_the_products_operands(precision):
    net, x, y = small_case()
    engine = SerialEngine(net, SGD(), dtype="float64", precision=precision)
    logits = engine.forward(x)
    np.testing.assert_allclose(logits, manual_logits(net, x, precision.round), rtol=1e-12, atol=1e-12)
    plain = SerialEngine(net, SGD(), dtype="float64").forward(x)
    assert np.abs(logits - plain).max() > 1e-5  # and that differs from fp32


def test_serial_gradients_use_rounded_operands():
    """The weight gradient is dz^T h with both rounded, dL/dh of a source dz W with both rounded."""
    net, x, y = small_case(3)
    p = Precision.BF16
    engine = SerialEngine(net, SGD(), dtype="float64", precision=p)
    engine.forward(x)
    engine.backward(y)
    dense = KINDS["dense"]
    h, cache = engine._h, engine._cache
    out = 1  # the output group: dz = dlogits
    from genlab.engines.serial import softmax_cross_entropy

    _, dz = softmax_cross_entropy(h[out], y)
    for s in net.inputs(out):
        w_grad, _ = dense.edge_grads(engine.specs[out], p.round(dz), p.round(h[s]), p.round(engine._params[("W", s, out)]))
        np.testing.assert_allclose(engine.grads[("W", s, out)], w_grad, rtol=1e-12)
    assert cache is not None


def test_trainer_takes_the_precision_and_checkpoints_keep_it(tmp_path):
    net, x, y = small_case(4)
    t = Trainer(net, backend="serial", optimizer="sgd", lr=0.1, precision="tf32")
    assert t.precision == "tf32" and t.engine.precision is Precision.TF32
    t.step(x, y)
    path = t.save(tmp_path / "run.npz")
    back = Trainer.load(path, backend="serial")
    assert back.precision == "tf32" and back.engine.precision is Precision.TF32
    np.testing.assert_array_equal(back.logits(x), t.logits(x))
    t.reset()
    assert t.engine.precision is Precision.TF32
    plain = Trainer.load(path, backend="serial", precision="fp32")  # a run trained in tf32, evaluated in fp32
    assert plain.precision == "fp32" and plain.step_count == back.step_count


def test_a_bad_precision_is_refused_before_anything_changes():
    net, _, _ = small_case(5)
    version = net.version
    with pytest.raises(ArgumentError, match="unknown precision"):
        Trainer(net, backend="serial", precision="int8")
    assert net.version == version


def test_runs_that_offer_fp32_only_refuse_others():
    from genlab import DNI

    net, x, y = small_case(6)
    t = Trainer(net.copy(), backend="serial", precision="bf16", decouple=DNI(cuts=[2]))  # DNI's serial engine
    assert t.engine.precision is Precision.BF16
    from genlab.distributed.partitioned import Partitioned

    with pytest.raises(BackendError, match="fp32 only"):
        Partitioned(None).engine("serial", net, SGD(), np.dtype("float32"), None, Precision.TF32)


def test_choice_offers_only_the_executors_of_the_precision():
    from genlab.engines.cuda.choice import Shape, candidates, model

    names = [cls.name for cls in candidates({"dense"}, Precision.TF32)]
    assert "dataflow_rows" not in names and "cluster" not in names and "level" in names
    assert "dataflow_rows" in [cls.name for cls in candidates({"dense"})]
    narrow = Shape(("dense",), 4, 32, 16, 16, 64)
    assert model(narrow) == "dataflow_rows"
    assert model(Shape(("dense",), 4, 32, 16, 16, 64, "tf32")) in names
