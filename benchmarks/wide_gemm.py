"""The wide kernels (cuda/wide.cu) on one layer of W4 (a 4096 -> 4096 edge, batch 1024) against
cuBLAS through PyTorch: forward, pull backward and weight gradient, each a GEMM of
2 x 1024 x 4096 x 4096 FLOPs. Checks each result against PyTorch's in fp32 (its error is the
precision's), then times it (CUDA events, genlab.bench.time_cuda: median of 30 after 5 warm-up
launches) for each register budget in --blocks and each precision in --precision
(genlab.precision; cuBLAS in fp32, TF32 and bf16 beside them).

    python benchmarks/wide_gemm.py [--blocks 1 2] [--precision fp32 tf32 3xtf32 bf16] [--out results.json]
"""

import argparse
import json

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, nargs="+", default=[2], help="WIDE_BLOCKS values to compile")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--precision", nargs="+", default=["fp32"], help="builds of wide.cu to time")
    parser.add_argument("--out")
    args = parser.parse_args()

    import pycuda.driver as drv
    import torch

    from genlab.bench import time_cuda
    from genlab.engines.cuda import constants as C
    from genlab.engines.cuda import runtime
    from genlab.precision import parse

    device = runtime.kernels().device
    torch.backends.cuda.matmul.allow_tf32 = False
    B, n = args.batch, args.width
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(B, n, device="cuda", generator=gen)
    W = torch.randn(n, n, device="cuda", generator=gen) / n**0.5
    bias = torch.randn(n, device="cuda", generator=gen) * 0.1
    g = torch.randn(B, n, device="cuda", generator=gen)  # dL/dh of the upper group
    params = torch.cat([W.reshape(-1), bias])
    act = torch.cat([x.reshape(-1), torch.zeros(B * n, device="cuda")])
    dz = torch.cat([torch.zeros(B * n, device="cuda"), g.reshape(-1)])
    grads = torch.zeros(n * n, device="cuda")
    stats = torch.zeros(6, dtype=torch.float64, device="cuda")
    wstats = torch.zeros(2, dtype=torch.float64, device="cuda")
    gradsq = torch.zeros(1, dtype=torch.float64, device="cuda")
    i32 = lambda v: torch.tensor(v, dtype=torch.int32, device="cuda")
    width, act_off, bias_off = i32([n, n]), i32([0, B * n]), i32([0, n * n])
    in_ptr, in_src, in_dst, in_woff = i32([0, 0, 1]), i32([0]), i32([1]), i32([0])
    out_ptr, out_dst, out_woff = i32([0, 1, 1]), i32([1]), i32([0])
    T = C.WT
    fwd_tasks = i32([[1, j0, 0, 1] for j0 in range(0, n, T)])  # (slot, j0, part, parts): one part
    bwd_tasks = i32([[0, k0, 0, 1] for k0 in range(0, n, T)])
    wgt_tasks = i32([[0, j0, k0] for j0 in range(0, n, T) for k0 in range(0, n, T)])
    P = lambda t: np.intp(t.data_ptr())
    rows = (B + T - 1) // T
    want = {
        "forward": torch.relu(x @ W.T + bias),
        "backward": g @ W,
        "weight": g.T @ x,
    }
    flops = 2.0 * B * n * n
    result = {"device": device.name(), "batch": B, "width": n, "gflop_each": flops / 1e9, "kernels": {}}

    timed = lambda fn: time_cuda(fn, 30, warmup=5)

    for blocks, precision in [(b, parse(p)) for p in args.precision for b in args.blocks]:
        src = runtime.source(["wide.cu"], precision).replace("#ifndef WIDE_BLOCKS", f"#define WIDE_BLOCKS {blocks}\n#ifndef WIDE_BLOCKS")
        module = drv.module_from_buffer(runtime.compile_cubin(src, "sm_%d%d" % device.compute_capability(), "wide_gemm"))
        f = {name: module.get_function(name) for name in ("forward_wide", "backward_wide", "weight_wide")}
        for name, fn in f.items():
            fn.prepare(runtime.signature(src, name))
        regs = {name: fn.get_attribute(drv.function_attribute.NUM_REGS) for name, fn in f.items()}
        spills = {name: fn.get_attribute(drv.function_attribute.LOCAL_SIZE_BYTES) for name, fn in f.items()}
        state = dict(width=width, act_off=act_off, bias_off=bias_off, in_ptr=in_ptr, in_src=in_src, in_dst=in_dst,
                     in_woff=in_woff, out_ptr=out_ptr, out_dst=out_dst, out_woff=out_woff, params=params, act=act,
                     dz=dz, grads=grads, stats=stats, wstats=wstats)
        state = {k: int(P(v)) for k, v in state.items()}  # the kernels' struct Net, filled by member name
        arguments = {  # no split-K: no scratch
            "forward": runtime.by_name("forward_wide", state, dict(tasks=P(fwd_tasks), batch=np.int32(B), ld=np.int32(0),
                                                                   output_slot=np.int32(-1), partials=np.intp(0),
                                                                   tickets=np.intp(0))),
            "backward": runtime.by_name("backward_wide", state, dict(tasks=P(bwd_tasks), batch=np.int32(B), ld=np.int32(0),
                                                                     partials=np.intp(0), tickets=np.intp(0))),
            "weight": runtime.by_name("weight_wide", state, dict(tasks=P(wgt_tasks), batch=np.int32(B), ld=np.int32(0),
                                                                 gradsq=P(gradsq))),
        }
        grids = {"forward": (len(fwd_tasks), rows), "backward": (len(bwd_tasks), rows), "weight": (len(wgt_tasks), 1)}
        launches = {kind: (lambda kind=kind: f[kind + "_wide"].prepared_call(grids[kind], (C.THREADS, 1, 1),
                                                                             *arguments[kind]))
                    for kind in arguments}
        for kind, launch in launches.items():
            launch()
            torch.cuda.synchronize()
            got = {"forward": act[B * n:].view(B, n), "backward": None, "weight": grads.view(n, n)}[kind]
            if kind == "backward":  # dz of slot 0 = dL/dh masked by h > 0 (h = x here)
                got = dz[:B * n].view(B, n)
                ref = torch.where(x > 0, want["backward"], torch.zeros_like(x))
            else:
                ref = want[kind]
            err = float((got - ref).norm() / ref.norm())
            ms = timed(launch)
            result["kernels"].setdefault(kind, {})[f"wide_{precision.value}_blocks{blocks}"] = {
                "ms": ms, "tflops": flops / ms / 1e9, "rel_error": err, "registers": regs[kind + "_wide"],
                "local_bytes": spills[kind + "_wide"]}
            print(f"{precision.value:6s} WIDE_BLOCKS={blocks} {kind:8s} {ms:7.3f} ms {flops / ms / 1e9:6.1f} TFLOP/s  "
                  f"rel err {err:.2e}  {regs[kind + '_wide']} registers, {spills[kind + '_wide']} B local")
    cublas = {"forward": lambda: torch.relu(torch.addmm(bias, x, W.T)), "backward": lambda: g @ W,
              "weight": lambda: g.T @ x}
    for setting in ("fp32", "tf32", "bf16"):
        torch.backends.cuda.matmul.allow_tf32 = setting == "tf32"
        for kind, fn in cublas.items():
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=setting == "bf16"):
                ms = timed(fn)
            result["kernels"][kind][f"cublas_{setting}"] = {"ms": ms, "tflops": flops / ms / 1e9}
            print(f"cuBLAS {setting:4s}   {kind:8s} {ms:7.3f} ms {flops / ms / 1e9:6.1f} TFLOP/s")
    torch.backends.cuda.matmul.allow_tf32 = False
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
