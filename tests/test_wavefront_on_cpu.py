"""cuda/wavefront.cu's own source, run on the CPU: the source as genlab's loader pastes it, with
the emulator's substitutions (tests/cpu_cuda/emulator.py's host_text: dynamic shared memory, the
warp shuffle of block_sum, the PTX acquire load, release add and clock), compiled by g++ against
tests/cpu_cuda/shim.h (a block a process, a CUDA thread a std::thread, global memory shared by
all) and checked against backpropagation through time on the serial
engine: the loss, the correct count, every gradient, the statistics and ranges, the flags each
block published. So the kernels' indexing, hand-offs and reductions are tested without a GPU
(their timing and the GPU's memory model are not: tests/test_cuda_wavefront.py does that)."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import recurrent_cases
from cpu_cuda.emulator import host_text

from genlab.engines import SerialEngine
from genlab.engines.cuda import runtime
from genlab.engines.cuda.wavefront_plan import plan
from genlab.optim import SGD

HERE = Path(__file__).resolve().parent / "cpu_cuda"

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")


def host_source() -> str:
    """wavefront.cu as the loader pastes it, made host C++ (the emulator's substitutions)."""
    src = host_text(runtime.source(["wavefront.cu"]))
    assert "__shfl" not in src and "asm" not in src
    return '#include "shim.h"\n' + src + '\n#include "wavefront_driver.cpp"\n'


BUILDS = {"default": {}, "self-through-l2-one-sum": {"WF_SELF_SMEM": 0, "WF_CHAINS": 0},
          "split-k": {"WF_SPLIT_K": 1}}  # wavefront.cu's build variants


def build(folder: Path, defines: dict) -> Path:
    (folder / "kernels.cpp").write_text(host_source())
    binary = folder / "wavefront_driver"
    flags = [f"-D{name}={value}" for name, value in defines.items()]
    result = subprocess.run(["g++", "-std=c++20", "-O1", "-pthread", "-w", *flags, "-I", str(HERE),
                             str(folder / "kernels.cpp"), "-o", str(binary)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return binary


@pytest.fixture(scope="module", params=list(BUILDS))
def driver(request, tmp_path_factory):
    return build(tmp_path_factory.mktemp("wavefront_cpu"), BUILDS[request.param])


def flat_params(net):
    keys = [("W", s, d) for (s, d) in net.weights] + [("b", g) for g in net.biases]
    arrays = [net.weights[k[1:]] if k[0] == "W" else net.biases[k[1]] for k in keys]
    offsets = dict(zip(keys, np.cumsum([0] + [a.size for a in arrays[:-1]]).tolist()))
    return np.concatenate([a.ravel() for a in arrays]).astype(np.float32), offsets


def run_on_cpu(driver, folder, net, x, y, rows, stage, every_step=False, train=True, tamper=None, chunk=1,
               release_every=1):
    params, offsets = flat_params(net)
    p = plan(net, offsets)
    if tamper is not None:
        tamper(p)
    batch, steps = x.shape[0], x.shape[1]
    items, chunks = p.items(steps)
    arrays = {"width": p.width, "act_off": p.act_off(steps, batch), "bias_off": p.bias_off, "col_off": p.col_off,
              "in_ptr": p.in_ptr, "in_src": p.in_src, "in_delay": p.in_delay, "in_woff": p.in_woff,
              "out_ptr": p.out_ptr, "out_dst": p.out_dst, "out_delay": p.out_delay, "out_woff": p.out_woff,
              "items": items, "labels": np.broadcast_to(np.asarray(y).reshape(batch, -1), (batch, steps))
              if every_step else np.concatenate([y, np.zeros(batch * (steps - 1), int)])}
    for name, a in arrays.items():
        np.ascontiguousarray(a, np.int32).tofile(folder / f"{name}.bin")
    np.ascontiguousarray(x, np.float32).tofile(folder / "x.bin")
    params.tofile(folder / "params.bin")
    n_rb = -(-batch // rows)
    config = {"n_slots": p.n_slots, "steps": steps, "batch": batch, "rows": rows, "n_inputs": p.n_inputs,
              "n_cols": p.n_cols, "every_step": int(every_step), "train": int(train), "stage": int(stage),
              "n_params": p.n_params, "chunks": chunks, "n_items": len(items), "n_in_edges": len(p.in_src),
              "n_out_edges": len(p.out_dst), "shared_floats": p.shared_bytes(rows, stage, chunk) // 4, "seconds": 240,
              "chunk": chunk, "region": p.region(rows, chunk), "release_every": release_every}
    (folder / "config.txt").write_text("".join(f"{k} {v}\n" for k, v in config.items()))
    result = subprocess.run([str(driver), str(folder)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    read = lambda name, dtype: np.fromfile(folder / f"out_{name}.bin", dtype)  # noqa: E731
    scalars = read("scalars", np.float64)
    return {"plan": p, "offsets": offsets, "loss": scalars[0], "correct": int(scalars[1:2].view(np.int32)[0]),
            "gave_up": int(scalars[4:5].view(np.int32)[0]),
            "gradsq": scalars[2], "grads": read("grads", np.float32), "stats": read("stats", np.float64).reshape(-1, 3),
            "hmin": read("hmin", np.float32).reshape(n_rb, -1).min(axis=0),
            "hmax": read("hmax", np.float32).reshape(n_rb, -1).max(axis=0),
            "flags": read("flags", np.int32).reshape(2, p.n_slots, n_rb), "act": read("act", np.float32)}


CASES = {  # name: (network of conftest.recurrent_cases, batch, steps, rows, staged)
    "stack-staged": ("stack", 10, 5, 3, True),
    "tangled-global-weights": ("tangled", 9, 6, 4, False),
    "wide-one-row": ("wide", 3, 4, 1, True),
    "broad-two-rows-a-thread": ("broad", 8, 3, 4, True),
}


@pytest.mark.parametrize("chunk, release_every", [(1, 1), (3, 2)], ids=["step-by-step", "chunks-of-3-released-by-2"])
@pytest.mark.parametrize("name", CASES)
def test_the_kernels_own_source_computes_backpropagation_through_time(driver, tmp_path, name, chunk, release_every):
    """chunk 3: an edge stages up to three of its source's steps at once (fewer where the source has
    not done them, or the sequence ends), so chunks start mid-sequence and end short; release_every 2: a
    block releases its steps two at a time, and what it holds before it waits."""
    case, batch, steps, rows, stage = CASES[name]
    net = recurrent_cases()[case]
    rng = np.random.default_rng(11)
    x = rng.normal(size=(batch, steps, net.n_inputs)).astype(np.float32)
    y = rng.integers(0, net.n_outputs, batch)
    got = run_on_cpu(driver, tmp_path, net, x, y, rows, stage, chunk=chunk, release_every=release_every)
    ref = SerialEngine(net, SGD(lr=0.0), dtype="float64")
    logits = ref.forward(x)
    loss = ref.backward(y)
    p, offsets = got["plan"], got["offsets"]
    assert got["loss"] == pytest.approx(loss, rel=1e-5)
    assert got["correct"] == int((logits.argmax(axis=1) == y).sum())
    for key, g in ref.grads.items():
        mine = got["grads"][offsets[key]:offsets[key] + g.size].reshape(g.shape)
        np.testing.assert_allclose(mine, g, rtol=1e-4, atol=1e-6, err_msg=str(key))
    assert got["gradsq"] == pytest.approx(sum(float(np.sum(g.astype(np.float32) ** 2)) for g in ref.grads.values()),
                                          rel=1e-4)
    n_rb = -(-batch // rows)
    assert (got["flags"][0] == steps).all() and (got["flags"][1] == steps).all()  # every block published every step
    assert got["flags"].shape == (2, p.n_slots, n_rb)
    for s, g in enumerate(p.groups):
        count = steps * batch * int(p.width[s])
        s1, s2, s3 = got["stats"][s]
        mean = s1 / count
        assert np.sqrt(max(s2 / count - mean * mean, 0)) == pytest.approx(ref.stats["grad_std"][g], rel=1e-4, abs=1e-9)
        assert abs(s3 / count) == pytest.approx(ref.stats["taylor"][g], rel=1e-4, abs=1e-9)
        if s < p.n_slots - 1:
            c = slice(int(p.col_off[s]), int(p.col_off[s] + p.width[s]))
            np.testing.assert_allclose(got["hmin"][c], ref.stats["h_min"][g], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got["hmax"][c], ref.stats["h_max"][g], rtol=1e-5, atol=1e-6)


def test_every_step_and_a_forward_only_pass(driver, tmp_path):
    net = recurrent_cases()["tangled"]
    rng = np.random.default_rng(12)
    x = rng.normal(size=(7, 4, 6)).astype(np.float32)
    y = rng.integers(0, 4, (7, 4))
    got = run_on_cpu(driver, tmp_path, net, x, y, rows=2, stage=True, every_step=True, chunk=3, release_every=3)
    ref = SerialEngine(net, SGD(lr=0.0), dtype="float64")
    ref.every_step = True
    ref.forward(x)
    assert got["loss"] == pytest.approx(ref.backward(y), rel=1e-5)
    for key, g in ref.grads.items():
        off = got["offsets"][key]
        np.testing.assert_allclose(got["grads"][off:off + g.size].reshape(g.shape), g, rtol=1e-4, atol=1e-6,
                                   err_msg=str(key))
    forward = run_on_cpu(driver, tmp_path, net, x, y[:, -1], rows=3, stage=False, train=False, chunk=2)
    p = forward["plan"]
    steps, batch, classes = 4, 7, int(p.width[-1])
    start = int(p.col_off[-1]) * steps * batch + (steps - 1) * batch * classes
    logits = forward["act"][start:start + batch * classes].reshape(batch, classes)
    ref.every_step = False
    np.testing.assert_allclose(logits, ref.forward(x), rtol=1e-5, atol=1e-6)
    assert (forward["flags"][1] == 0).all()  # no backward without training


def test_blocks_that_wait_too_long_give_up_and_say_so_instead_of_hanging(tmp_path):
    """Two blocks made to wait for each other (what a block that is not resident looks like to
    the others): with the wait limit at 0.3 s, every block returns and the scalars' give-up word
    is set, where the launch would otherwise never end."""
    binary = build(tmp_path, {"WF_WAIT_LIMIT_NS": "300000000ull"})
    net = recurrent_cases()["stack"]
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 3, net.n_inputs)).astype(np.float32)
    y = rng.integers(0, net.n_outputs, 4)
    fine = run_on_cpu(binary, tmp_path, net, x, y, rows=2, stage=True)
    assert fine["gave_up"] == 0 and (fine["flags"] == 3).all()

    def cycle(p):  # slot 0's edge to itself (delay 1) made an edge from slot 1 without a delay
        e = next(e for e in range(p.in_ptr[0], p.in_ptr[1]) if p.in_src[e] == 0)
        p.in_src[e], p.in_delay[e] = 1, 0  # slot 1 reads slot 0 in the same step: neither can start

    stuck = run_on_cpu(binary, tmp_path, net, x, y, rows=2, stage=True, tamper=cycle)
    assert stuck["gave_up"] == 1 and np.isnan(stuck["loss"])  # the guarded update refuses a NaN loss
    assert (stuck["flags"][0, :2] == 0).all()  # neither hidden slot finished a step
