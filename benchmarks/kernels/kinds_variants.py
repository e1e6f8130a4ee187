"""attention.cu's and conv.cu's numbered variants: each builds the kind's kernels with other
#defines or host settings, checks them against the float64 serial engine (outputs poisoned first;
attention blocks of several samples forced, the last one short), then times the forward
launches, the backward launches, the gradients and the whole step's graph on the kind's
`genlab.bench.kinds` workload (512 groups in 8 levels, batch 256).

    python benchmarks/kernels/kinds_variants.py [--variants 0 3 ...] [--json out.json]

The variants (attention: ATT_BLOCKS, blocks an SM holds, so registers a thread, and samples a
block, genlab.kinds.attention.cuda.SAMPLES; conv: conv_forward_staged and conv_backward_staged or not, staging
buffers (CONV_BUFFERS), blocks an SM; the weight gradients' warp tiles are timed against the tree
before them by kinds_checks.sh's BASE run; variants 23-25 were register-staged loads a thread
in flight, CONV_STAGE_ILP 1/4/16, before cp.async replaced them):
"""

import argparse
import json

import numpy as np
from harness import check_passes, done, use_variant

from genlab.bench import time_graph
from genlab.bench.kinds import case, layered
from genlab.engines.cuda import CudaEngine
from genlab.engines.cuda.executors import kinds, passes
from genlab.kinds.attention import cuda as attention
from genlab.kinds.conv import cuda as conv_cuda
from genlab.optim import Adam

VARIANTS = {  # number: (ATT_BLOCKS, samples a block)
    0: (4, 1), 1: (4, 4), 2: (4, 8), 3: (4, 16), 4: (6, 8), 5: (8, 8), 6: (6, 16), 7: (2, 8),
}
CONV_VARIANTS = {  # number: (forward staged, backward staged, #defines of conv.cu, edits of conv.cu)
    20: (False, False, {}, []), 21: (True, False, {}, []), 22: (True, True, {}, []),
    26: (True, True, {"CONV_BUFFERS": 1}, []),
    27: (True, True, {}, [("__launch_bounds__(THREADS, 2) conv_weight_grad", "__launch_bounds__(THREADS, 3) conv_weight_grad")]),
    28: (True, True, {}, [("__launch_bounds__(THREADS, 4) conv_forward_staged", "__launch_bounds__(THREADS, 3) conv_forward_staged"),
                          ("__launch_bounds__(THREADS, 4) conv_backward_staged", "__launch_bounds__(THREADS, 3) conv_backward_staged")]),
    29: (True, True, {"CONV_FWD_PAIRS": 1}, []),
    30: (True, True, {"CONV_FWD_PAIRS": 1},
         [("__launch_bounds__(THREADS, 4) conv_forward_staged", "__launch_bounds__(THREADS, 3) conv_forward_staged")]),
    31: (True, True, {"CONV_FWD_PAIRS": 0}, []),  # the forward one sample a phase (the default before pairs)
}
CONV_EDITS = {27: "conv_weight_grad at 3 blocks an SM", 28: "the staged forward and backward at 3 blocks an SM",
              30: "the staged forward at 3 blocks an SM"}
CONV_KERNELS = ("conv_forward", "conv_forward_staged", "conv_backward", "conv_backward_staged", "conv_weight_grad")
__doc__ += "\n".join([f"    {n}: attention, ATT_BLOCKS {b}, {s} samples a block" for n, (b, s) in VARIANTS.items()] +
                     [f"    {n}: conv, forward {'staged' if f else 'not staged'}, backward {'staged' if b else 'not staged'}"
                      + "".join(f", {k} {v}" for k, v in defines.items()) + (f", {CONV_EDITS[n]}" if n in CONV_EDITS else "")
                      for n, (f, b, defines, _) in CONV_VARIANTS.items()])
CASES = {  # kind: (input shape, options, width) of the layered networks a variant is checked on
    "conv": [((2, 9, 7), {"kernel": 3}, 8), ((3, 8, 8), {"kernel": 1, "stride": 2}, 11),
             ((1, 7, 6), {"kernel": 5}, 14), ((3, 16, 16), {"kernel": 3}, 17)],
    "attention": [((7, 5), {"heads": 2}, 8), ((3, 9), {"heads": 1}, 12), ((16, 16), {"heads": 2}, 16)],
}


def build(blocks: int, samples: int) -> None:
    for kernel in ("attention_forward", "attention_backward"):
        use_variant("attention.cu", kernel, {"ATT_BLOCKS": blocks}, [])
    attention.SAMPLES = samples


def check(kind: str) -> None:
    """The kind's cases against the float64 serial engine (attention blocks of several samples
    forced: genlab.kinds.attention.cuda.BLOCKS 1)."""
    saved, attention.BLOCKS = attention.BLOCKS, 1
    try:
        for number, (shape, options, width) in enumerate(CASES[kind]):
            net = layered(kind, 3, 4, width, 2, shape, options, seed=number)
            rng = np.random.default_rng(number)
            x, y = rng.normal(size=(37, *shape)).astype(np.float32), rng.integers(0, 10, 37)
            check_passes(net, x, y, f"{kind} case {number}")
    finally:
        attention.BLOCKS = saved


def timed(net, x, y) -> dict:
    engine = CudaEngine(net, Adam(1e-3), executor="level")
    rows = engine.put_batch(x, y)
    depth = len(engine.layout.forward_levels)
    out = {"forward_us": time_graph(engine, lambda: [kinds.forward(engine, lv, rows) for lv in range(1, depth)], 20),
           "backward_us": time_graph(engine, lambda: [kinds.backward(engine, lv, rows) for lv in range(1, depth)], 20),
           "gradients_us": time_graph(engine, lambda: kinds.gradients(engine, rows, engine.dev.sums.gradsq), 20),
           **({"weight_grad_us": time_graph(engine, lambda: conv_cuda.weight_grad(engine, rows), 20),
               "bias_grad_us": time_graph(engine, lambda: conv_cuda.bias_grad(engine, rows), 20)}
              if conv_cuda.Conv.code in engine.layout.kinds.slots else {}),
           "step_us": time_graph(engine, lambda: (passes.forward(engine, rows), passes.backward(engine, rows),
                                                  passes.update(engine)), 20)}
    print("       " + "  ".join(f"{k} {v:9.1f}" for k, v in out.items()), flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", type=int, nargs="+", default=sorted(VARIANTS) + sorted(CONV_VARIANTS))
    parser.add_argument("--json")
    args = parser.parse_args()
    net, x, y = case("attention")
    conv = case("conv")
    results = {}
    for number in args.variants:
        if number in CONV_VARIANTS:
            conv_cuda.STAGED, conv_cuda.BACKWARD_STAGED, defines, edits = CONV_VARIANTS[number]
            for kernel in CONV_KERNELS:
                use_variant("conv.cu", kernel, defines, edits)
            print(f"variant {number}: conv, forward staged {conv_cuda.STAGED}, backward staged "
                  f"{conv_cuda.BACKWARD_STAGED}, {defines} {CONV_EDITS.get(number, '')}", flush=True)
            check("conv")
            results[number] = {"kind": "conv", "staged": conv_cuda.STAGED,
                               "backward_staged": conv_cuda.BACKWARD_STAGED, "defines": defines,
                               "edits": CONV_EDITS.get(number, ""), **timed(*conv)}
            continue
        blocks, samples = VARIANTS[number]
        print(f"variant {number}: ATT_BLOCKS {blocks}, {samples} samples a block", flush=True)
        build(blocks, samples)
        check("attention")
        results[number] = {"kind": "attention", "att_blocks": blocks, "samples": samples, **timed(net, x, y)}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return done()


if __name__ == "__main__":
    raise SystemExit(main())
