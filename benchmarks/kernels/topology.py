"""topology.cu: the CSR of in- and out-edges and the level of each group, built on the GPU,
against the network, at load and after growth; the time of a whole rebuild."""

import time

import numpy as np
from harness import case, done, engines, same

from genlab.growth import duplicate_width
from genlab.operations import Noise


def device(gpu, name, n):
    out = np.empty(n, np.int32)
    if n:
        gpu.drv.memcpy_dtoh(out, getattr(gpu.dev.csr, name))
    return out


def check(gpu, net, when):
    L = gpu.layout
    n, E = len(L.groups), L.n_edges
    in_ptr, in_src = device(gpu, "in_ptr", n + 1), device(gpu, "in_src", E)
    out_ptr, out_dst = device(gpu, "out_ptr", n + 1), device(gpu, "out_dst", E)
    level, want = device(gpu, "level", n), net.levels()
    same(f"{when}: in-edges of every group", [[L.groups[x] for x in in_src[in_ptr[L.slot[g]]:in_ptr[L.slot[g] + 1]]]
                                              for g in net.groups], [net.inputs(g) for g in net.groups])
    same(f"{when}: out-edges of every group", [[L.groups[x] for x in out_dst[out_ptr[L.slot[g]]:out_ptr[L.slot[g] + 1]]]
                                               for g in net.groups], [net.outputs(g) for g in net.groups])
    same(f"{when}: levels", [int(level[L.slot[g]]) for g in net.groups], [want[g] for g in net.groups])


net, x, y = case(5, levels=8, per_level=40, width=(1, 70))
gpu, _ = engines(net)
check(gpu, net, "load")
times = []
for step in range(1, 6):
    log = [Noise(0, step)]
    duplicate_width(net, net.hidden_groups[step], step, 0, log=log)
    t = time.perf_counter()
    gpu.apply_growth(net.copy(), log)
    times.append((time.perf_counter() - t) * 1e3)
    check(gpu, net, f"growth {step}")
print(f"       apply_growth of one duplication ({len(net.groups)} groups)   {np.median(times):9.2f} ms")
raise SystemExit(done())
