"""Three steps of the classroom network (50 groups of 16, batch 32) on the cluster executor, then
one with its timeline printed: a short run for compute-sanitizer and Nsight Compute.

    compute-sanitizer --tool racecheck python benchmarks/kernels/cluster_classroom.py [soft]

`soft` builds cluster.cu with its software barrier (CLUSTER_SOFT) instead of the cluster's.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from cluster_variants import SOFT, use_variant  # noqa: E402

from genlab.bench import batch_of  # noqa: E402
from genlab.bench.small import build  # noqa: E402
from genlab.engines.cuda import CudaEngine  # noqa: E402
from genlab.optim import Adam  # noqa: E402

if len(sys.argv) > 1 and sys.argv[1] == "soft":
    use_variant(SOFT, [])
net = build()
x, y = batch_of(net, 32)
engine = CudaEngine(net, Adam(lr=1e-4), executor="cluster")
for _ in range(3):
    print(engine.step(x, y))
print(engine.executor.phase_times(x, y))
