"""The wavefront kernels of recurrent networks (cuda/wavefront.cu): each numbered variant checked
against backpropagation through time on the float64 serial engine (outputs poisoned with NaN
first), then timed on stacked RNNs beside cuDNN's nn.RNN of the same shape.

    python benchmarks/kernels/recurrence.py [--json OUT.json] [--quick]

Variants: launch choices of one build: 1 rows and staging chosen per shape; 2 weights read from
global memory (L1/L2) instead of shared memory; 3-7 1, 2, 4, 8 and 16 batch rows a block; 13
chunks of one step (each edge waits and stages its source step by step: the hand-off before
chunks); 14 chunks of up to 16 steps; 18-21 a block's steps released 1, 2, 4 and 8 at a time
(the default: 1). Builds (#defines of cuda/wavefront.cu): 8 a block's edge to itself read back
through L2 after waiting for its own flag (WF_SELF_SMEM 0; 1, from shared memory, is the
default); 9 registers cut for two blocks an SM (WF_MIN_BLOCKS 2: more blocks, fewer rows each);
10 both; 11 the first version's product loop (every accumulator of WF_ROWS x WF_COLS predicated,
k not unrolled: the baseline of the loop sized to the thread's rows); 12 k unrolled 8; 15 the
flag's release as a fence and an add (WF_RELEASE_ADD 0; 1, one red.release, is the default); 16
that and WF_SELF_SMEM 0; 17 the release by thread 0 (WF_PUBLISH_LAST 0; the default: by the
block's last thread); 22 the product of a thread of one or two rows dealt round 4 / rows
independent sums (WF_CHAINS 1, the default since it was timed: 22 is the default build); 23 a
narrow cell's spare row groups summing slices of k, added in order (WF_SPLIT_K 1); 24 both; 25
one sum a thread (WF_CHAINS 0, the default before).
Times: `pass` is one training pass on the GPU alone (forward, loss, backward through time, the
weight gradients; no optimizer), a CUDA graph replayed; `step` is Trainer-level engine.step
(host work, the optimizer and the guard included), CUDA events around many steps. cuDNN's step
is nn.RNN (ReLU) + Linear + Adam, eager and captured in a CUDA graph.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from conftest import tangle  # noqa: E402
from harness import compare, failures, use_variant  # noqa: E402

from genlab import Network  # noqa: E402
from genlab.bench import time_graph  # noqa: E402
from genlab.bench.recurrence import case, torch_rnn  # noqa: E402
from genlab.bench.timing import time_cuda  # noqa: E402
from genlab.engines import SerialEngine  # noqa: E402
from genlab.engines.cuda.recurrent import RecurrentCudaEngine  # noqa: E402
from genlab.errors import BackendError  # noqa: E402
from genlab.optim import SGD, Adam  # noqa: E402

NAN = 0x7FC00000  # a quiet NaN: an element the kernels fail to write fails the comparison
VARIANTS = {1: {}, 2: {"stage": False}, 3: {"rows": 1}, 4: {"rows": 2}, 5: {"rows": 4}, 6: {"rows": 8},
            7: {"rows": 16}, 8: {}, 9: {}, 10: {}, 11: {}, 12: {}, 13: {"chunk": 1}, 14: {"chunk": 16}, 15: {},
            16: {}, 17: {}, 18: {"release_every": 1}, 19: {"release_every": 2}, 20: {"release_every": 4},
            21: {"release_every": 8},
            22: {}, 23: {}, 24: {}, 25: {}}  # engine options
BUILDS = {8: {"WF_SELF_SMEM": 0}, 9: {"WF_MIN_BLOCKS": 2}, 10: {"WF_SELF_SMEM": 0, "WF_MIN_BLOCKS": 2},
          11: {"WF_FULL_TILE": 1, "WF_UNROLL": 1}, 12: {"WF_UNROLL": 8}, 15: {"WF_RELEASE_ADD": 0},
          16: {"WF_SELF_SMEM": 0, "WF_RELEASE_ADD": 0}, 17: {"WF_PUBLISH_LAST": 0},
          22: {"WF_CHAINS": 1}, 23: {"WF_SPLIT_K": 1}, 24: {"WF_SPLIT_K": 1, "WF_CHAINS": 1},
          25: {"WF_CHAINS": 0}}
SHAPES = [  # (layers, steps, hidden, batch); features = hidden / 2, as genlab.bench.recurrence
    (2, 64, 64, 64), (4, 64, 64, 64), (8, 64, 64, 64), (2, 64, 128, 64), (4, 64, 128, 64), (2, 16, 64, 1),
    (2, 256, 64, 64), (2, 64, 64, 16), (2, 64, 256, 64), (2, 64, 512, 64), (2, 64, 1024, 16),
]


def check(number: int, options: dict) -> None:
    """One pass of three networks (a stack, a tangle of delays, a group wider than a block) against
    the float64 serial engine: loss, every gradient, the statistics."""
    knotted = Network.elman(6, [12, 9], 4, seed=1)
    tangle(knotted, *knotted.hidden_groups, widths=(5, 3), seed=1, scale=0.2)
    cases = {"stack": Network.elman(5, [7, 6], 4, seed=3), "tangled": knotted,
             "wide": Network.elman(3, [40, 300], 5, seed=4)}
    rng = np.random.default_rng(number)
    for name, net in cases.items():
        try:
            engine = RecurrentCudaEngine(net, SGD(lr=0.0), executor="wavefront", **options)
        except Exception as error:  # a variant that cannot run a case says so and fails
            failures.append(f"v{number} {name}")
            print(f"  FAIL v{number} {name}: {error}")
            continue
        x = rng.normal(size=(37, 6, net.n_inputs)).astype(np.float32)
        y = rng.integers(0, net.n_outputs, 37)
        runner = engine.runner
        try:
            runner.put(x, y)
        except BackendError as error:  # more blocks than the GPU holds at once: not this variant's case
            print(f"  skip v{number} {name}: {error}")
            continue
        for buffer in ("act", "dz", "partials"):  # an element the kernels fail to write fails the checks
            engine.drv.memset_d32(getattr(runner.b, buffer), NAN, runner.b.sizes[buffer] // 4)
        engine.forward(x)
        loss = engine.backward(y)
        ref = SerialEngine(net, SGD(lr=0.0), dtype="float64")
        ref.forward(x)
        want = ref.backward(y)
        compare(f"v{number} {name}: loss", loss, want, 1e-5)
        grads = engine.grads
        compare(f"v{number} {name}: gradients", np.concatenate([grads[k].ravel() for k in ref.grads]),
                np.concatenate([g.ravel() for g in ref.grads.values()]), 1e-4)
        compare(f"v{number} {name}: grad_std", [engine.stats["grad_std"][g] for g in ref.stats["grad_std"]],
                list(ref.stats["grad_std"].values()), 1e-4)


def cudnn_step_ms(net: Network, layers: int, x: np.ndarray, y: np.ndarray) -> dict:
    import torch

    from genlab.bench.baselines import _graphed

    device = torch.device("cuda")
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    out = {}
    for graphed in (False, True):
        rnn, head = torch_rnn(net, layers, device)
        opt = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=1e-3, capturable=graphed)

        def step():
            opt.zero_grad(set_to_none=not graphed)
            torch.nn.functional.cross_entropy(head(rnn(xt)[0][:, -1]), yt).backward()
            opt.step()
        try:
            out["cudnn_graph_ms" if graphed else "cudnn_ms"] = time_cuda(_graphed(step) if graphed else step, 50)
        except RuntimeError as error:
            out["cudnn_graph_error"] = str(error).splitlines()[0][:200]
    return out


def timings(number: int, options: dict, shape: tuple) -> dict:
    layers, steps, hidden, batch = shape
    net, x, y = case(layers, steps, hidden, batch)
    try:
        engine = RecurrentCudaEngine(net, Adam(lr=1e-3), executor="wavefront", **options)
        engine.runner.put(x, y)
    except Exception as error:
        return {"error": str(error)[:200]}
    runner = engine.runner
    row = {"rows": runner.now.rows, "row_blocks": runner.now.n_rb, "staged": bool(runner.now.stage),
           "chunk": runner.now.chunk, "release_every": runner.release_every, "blocks":
           runner.plan.n_slots * runner.now.n_rb, "pass_us": time_graph(engine, lambda: runner.enqueue(train=True), 100)}
    row["step_ms"] = time_cuda(lambda: engine.step(x, y), 30, warmup=3)
    features = hidden // 2
    forward = 2 * batch * steps * (hidden * (features + hidden) + (layers - 1) * hidden * 2 * hidden) \
        + 2 * batch * hidden * net.n_outputs
    row["stages"] = layers + steps - 1  # the wavefront's dependent stages, each way
    row["us_per_stage"] = row["pass_us"] / (2 * row["stages"])  # forward and backward, the gradients' GEMMs included
    row["gflop_per_s"] = 3 * forward / (row["pass_us"] * 1e3)  # forward, dL/dh, weight gradients
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write every check and time here")
    parser.add_argument("--quick", action="store_true", help="five shapes: 2, 4 and 8 layers of 64 steps, 2 of 256")
    parser.add_argument("--variants", default=",".join(map(str, VARIANTS)))
    args = parser.parse_args(argv)
    chosen = [int(v) for v in args.variants.split(",")]
    shapes = [*SHAPES[:3], (2, 256, 64, 64), (2, 256, 64, 1)] if args.quick else SHAPES
    timed: dict = {}
    for number in chosen:  # variant by variant: each build compiled once
        use_variant("wavefront.cu", "wavefront_step", BUILDS.get(number, {}), [])
        print(f"== variant {number} {VARIANTS[number]} {BUILDS.get(number, {})}: checks", flush=True)
        check(number, VARIANTS[number])
        for shape in shapes:
            timed[(number, shape)] = timings(number, VARIANTS[number], shape)
    use_variant("wavefront.cu", "wavefront_step", {}, [])
    results = []
    for shape in shapes:
        layers, steps, hidden, batch = shape
        net, x, y = case(layers, steps, hidden, batch)
        row = {"layers": layers, "steps": steps, "hidden": hidden, "batch": batch, **cudnn_step_ms(net, layers, x, y)}
        for number in chosen:
            row[f"v{number}"] = timed[(number, shape)]
        best = min(((row[f"v{n}"]["step_ms"], n) for n in chosen if "step_ms" in row[f"v{n}"]), default=(np.inf, None))
        row["best_variant"], row["best_step_ms"] = best[1], best[0]
        row["cudnn_over_wavefront"] = min(row.get("cudnn_graph_ms", np.inf), row["cudnn_ms"]) / best[0]
        print(json.dumps(row), flush=True)
        results.append(row)
    if args.json:
        import torch

        Path(args.json).write_text(json.dumps({"device": torch.cuda.get_device_name(), "variants": VARIANTS,
                                               "builds": BUILDS, "failures": failures, "rows": results},
                                              indent=1) + "\n")
    print(f"{len(failures)} check(s) failed: {', '.join(failures)}" if failures else "every variant matches BPTT")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
