"""What a data-parallel step costs on one GPU beyond the plain step, without any collective: the
CUDA engine's replica path (two graphs, replica_pack / replica_unpack, the norms of the summed
gradients) over one Mirror copy, against engine.step on the same rows. The data-parallel step
on two GPUs is this plus the two collectives (genlab.bench.multi_gpu).

    python benchmarks/replica_overhead.py [--batch 2048] [--repeats 50] [--json out.json]

W1 and W3 at half of genlab.bench.multi_gpu's batch of 4096 (a GPU's share), executors level and
dataflow_rows; the median of --repeats steps between CUDA events, each step ending in the host
synchronisation that reads the loss.
"""

from __future__ import annotations

import argparse
import json

from genlab.bench.timing import time_cuda
from genlab.bench.workloads import WORKLOADS, batch_of
from genlab.distributed.mirror import Mirror
from genlab.engines.cuda import CudaEngine
from genlab.optim import Adam


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    for name in ("W1", "W3"):
        net = WORKLOADS[name][1]()
        x, y = batch_of(net, args.batch)
        for executor in ("level", "dataflow_rows"):
            engine = CudaEngine(net.copy(), Adam(), executor=executor)
            plain = time_cuda(lambda: engine.step(x, y), args.repeats)
            replica = CudaEngine(net.copy(), Adam(), executor=executor)
            mirrored = time_cuda(lambda: replica.step(x, y, Mirror(len(y), 1)), args.repeats)
            rows.append({"workload": name, "executor": executor, "batch": args.batch, "step_ms": plain,
                         "replica_step_ms": mirrored, "overhead_ms": mirrored - plain})
            print(f"{name} {executor:14s} step {plain:.3f} ms, replica step {mirrored:.3f} ms "
                  f"(+{mirrored - plain:.3f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
