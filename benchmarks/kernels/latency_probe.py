"""What a dependent read costs inside a kernel on this GPU: the SM clock during a kernel (clock64
against globaltimer), and the latency of a chain of dependent loads through L2 (__ldcg) and
through L1, for 1 and for 8 blocks, in nanoseconds. The cluster executor's phases are chains of
such reads (benchmarks/NOTES.md).

    python benchmarks/kernels/latency_probe.py [--out latency.json]
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pycuda.autoinit  # noqa: F401
import pycuda.driver as drv
from pycuda.compiler import SourceModule

SRC = r"""
__device__ unsigned long long gt() { unsigned long long t; asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); return t; }
extern "C" __global__ void chase(const int* __restrict__ next, int steps, int cg, unsigned long long* out)
{
    int i = blockIdx.x * 64;
    long long c0 = clock64();
    unsigned long long t0 = gt();
    for (int s = 0; s < steps; ++s) i = cg ? __ldcg(next + i) : next[i];
    unsigned long long t1 = gt();
    long long c1 = clock64();
    if (threadIdx.x == 0) { out[3 * blockIdx.x] = t1 - t0; out[3 * blockIdx.x + 1] = c1 - c0; out[3 * blockIdx.x + 2] = i; }
}
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    f = SourceModule(SRC, no_extern_c=True).get_function("chase")
    result = {}
    for mib in (1, 8):
        n = mib * 2**18  # ints
        rng = np.random.default_rng(0)
        perm = rng.permutation(n // 32) * 32  # one load per 128-byte line
        nxt = np.zeros(n, np.int32)
        nxt[perm] = np.roll(perm, -1)
        d_next = drv.to_device(nxt)
        out = np.zeros(3 * 8, np.uint64)
        for blocks in (1, 8):
            for cg in (1, 0):
                steps = 2000
                for _ in range(3):
                    f(d_next, np.int32(steps), np.int32(cg), drv.Out(out), block=(32, 1, 1), grid=(blocks, 1))
                ns = float(out[0]) / steps
                ghz = float(out[1]) / float(out[0])
                key = f"{mib}MiB_blocks{blocks}_{'ldcg' if cg else 'ld'}"
                result[key] = {"ns_per_load": ns, "cycles_per_load": ns * ghz, "sm_ghz": ghz}
                print(key, result[key], flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
