"""Whether the level kernels may take the device state's buffers as one struct: forward_level,
backward_level, weight_grad and bias_grad against variants that take every buffer from a struct
`Net` (passed by value, as the persistent kernels take theirs), on the launches of real steps
(W1, W3 and a random DAG of mixed widths, level executor), same arguments, CUDA events around each
kernel's launches of a step, alternated, median of many. The variants also run against the
originals' outputs (bit for bit: same code, other parameter passing).

    python benchmarks/kernels/struct_params.py [--json out.json]

nvcc drops the read-only (ld.global.nc) loads when the pointers come from a struct: forward_level's
PTX has 56 of them with __restrict__ parameters and 4 from a struct (by value, copied into
__restrict__ locals, or __grid_constant__ alike), so this measures what that costs.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import pycuda.driver as drv  # noqa: E402

from genlab import Network  # noqa: E402
from genlab.engines.cuda import CudaEngine, runtime  # noqa: E402
from genlab.engines.cuda.executors import passes  # noqa: E402
from genlab.optim import Adam  # noqa: E402

NET = """
struct Net {
    const int *width, *act_off, *bias_off, *in_ptr, *in_src, *in_dst, *in_woff, *out_ptr, *out_dst, *out_woff;
    const float* params;
    float *act, *dz, *grads;
    double *stats, *wstats, *gradsq;
};
extern "C" __global__ void forward_level_s(const Net n, const int* __restrict__ tasks, int batch, int ld,
    int output_slot, int chunk, int split, float* __restrict__ parts, int cap)
{
    forward_tile(tasks + 4 * blockIdx.x, blockIdx.y * TILE, n.width, n.act_off, n.bias_off, n.in_ptr, n.in_src,
                 n.in_woff, n.params, n.act, batch, ld, output_slot, chunk, split, parts, cap);
}
extern "C" __global__ void backward_level_s(const Net n, const int* __restrict__ tasks, int batch, int ld, int chunk)
{
    backward_tile(tasks[2 * blockIdx.x], tasks[2 * blockIdx.x + 1], blockIdx.y * TILE, n.width, n.act_off, n.out_ptr,
                  n.out_dst, n.out_woff, n.params, n.act, n.dz, batch, ld, n.stats, chunk);
}
extern "C" __global__ void weight_grad_s(const Net n, const int* __restrict__ tasks, int batch, int ld)
{
    const int* t = tasks + 3 * blockIdx.x;
    weight_grad_tile(t[0], t[1], t[2], n.in_src, n.in_dst, n.in_woff, n.width, n.act_off, n.act, n.dz, n.grads,
                     batch, ld, n.wstats, n.gradsq);
}
extern "C" __global__ void bias_grad_s(const Net n, const int* __restrict__ tasks, int batch, int ld)
{
    bias_grad_tile(tasks[2 * blockIdx.x], tasks[2 * blockIdx.x + 1], n.width, n.act_off, n.bias_off, n.dz, n.grads,
                   batch, ld, n.wstats, n.gradsq);
}
"""
KERNELS = ("forward_level", "backward_level", "weight_grad", "bias_grad")


def module():
    from pycuda.compiler import SourceModule

    src = runtime.source(["forward.cu", "backward.cu"]) + NET
    mod = SourceModule(src, no_extern_c=True, options=["-O3"], include_dirs=[str(runtime.cuda_dir())])
    fns = {}
    for k in KERNELS:
        f = mod.get_function(k + "_s")
        f.prepare(runtime.signature(src, k + "_s"))
        fns[k] = (f, runtime.parameter_names(src, k + "_s"), runtime.signature(src, k + "_s")[0])
    return fns


def record(engine, batch):
    """Every launch of one forward and backward pass: (kernel, grid, {parameter: argument})."""
    seen, launch = [], engine.launch
    original = type(launch).named

    def named(self, name, grid, fields, given, threads=runtime.THREADS, shared=0):
        seen.append((name, grid, dict(zip(runtime.names(name), runtime.by_name(name, fields, given)))))
        return original(self, name, grid, fields, given, threads=threads, shared=shared)

    type(launch).named = named
    try:
        passes.forward(engine, batch)
        passes.backward(engine, batch)
    finally:
        type(launch).named = original
    engine.stream.synchronize()
    return seen


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json")
    parser.add_argument("--reps", type=int, default=60)
    a = parser.parse_args()
    fns = module()
    cases = {"W1": Network.random_dag(16, 128, 16, 4, seed=0), "W3": Network.random_dag(8, 64, 64, 4, seed=0),
             "mixed": Network.random_dag(6, 24, (1, 300), (1, 8), seed=3)}
    out = {"device": runtime.kernels().device.name(), "cases": {}}
    for label, net in cases.items():
        e = CudaEngine(net, Adam(), executor="level")
        rng = np.random.default_rng(0)
        x = rng.normal(size=(256, net.n_inputs)).astype(np.float32)
        y = rng.integers(0, net.n_outputs, 256)
        batch = e.put_batch(x, y)
        launches = [(k, g, args) for k, g, args in record(e, batch) if k in KERNELS]
        stream, start, end = e.stream, drv.Event(), drv.Event()
        res = {}
        for kernel in KERNELS:
            mine = [(g, args) for k, g, args in launches if k == kernel]
            if not mine:
                continue
            f0 = runtime.functions()[kernel]
            f1, names1, dtype = fns[kernel]
            calls0, calls1 = [], []
            for g, args in mine:
                net_s = np.zeros(1, dtype)
                for m in dtype.names:
                    if m in args:
                        net_s[m] = int(args[m])
                calls0.append((g, list(args.values())))
                calls1.append((g, [net_s.tobytes()] + [args[p] for p in names1[1:]]))  # as rows.py passes its struct

            def run(f, calls):
                for g, args in calls:
                    f.prepared_async_call(g, (runtime.THREADS, 1, 1), stream, *args)

            if kernel == "forward_level":  # the same h, bit for bit, from the same inputs
                act, n = e.dev.rows.act, e.layout.n_cols * e.batch_cap
                outs = []
                for f, calls in ((f0, calls0), (f1, calls1)):
                    drv.memset_d32(act, 0, n)
                    e.put_batch(x, y)
                    run(f, calls)
                    stream.synchronize()
                    outs.append(drv.from_device(act, (n,), np.float32))
                res["forward_level_equal"] = bool(np.array_equal(*outs)) and bool(np.abs(outs[0]).sum() > 0)
            times = {0: [], 1: []}
            for rep in range(a.reps):
                for which, (f, calls) in ((0, (f0, calls0)), (1, (f1, calls1))):
                    start.record(stream)
                    run(f, calls)
                    end.record(stream)
                    end.synchronize()
                    times[which].append(end.time_since(start) * 1e3)
            res[kernel] = {"launches": len(mine), "params_us": statistics.median(times[0][5:]),
                           "struct_us": statistics.median(times[1][5:])}
            res[kernel]["struct_over_params"] = res[kernel]["struct_us"] / res[kernel]["params_us"]
        out["cases"][label] = res
        print(label, json.dumps(res), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


main()
