"""conv.cu and attention.cu: h, dz and the gradients of conv and attention groups against the
serial engine (float64) on layered DAGs of each kind, outputs poisoned first; then their times."""

import numpy as np
from harness import check_passes, done, timed

from genlab.bench.kinds import layered
from genlab.engines.cuda.executors import kinds

CASES = [("conv", (2, 9, 7), {"kernel": 3}), ("conv", (3, 8, 8), {"kernel": 1, "stride": 2}),
         ("conv", (1, 7, 6), {"kernel": 5}), ("attention", (7, 5), {"heads": 2}), ("attention", (3, 9), {"heads": 1})]

for number, (kind, shape, options) in enumerate(CASES):
    net = layered(kind, 3, 4, 4, 2, shape, options, seed=number)
    rng = np.random.default_rng(number)
    x, y = rng.normal(size=(37, *shape)).astype(np.float32), rng.integers(0, 10, 37)
    print(f"{kind} {options}, input {shape}: {len(net.groups)} groups, batch {len(x)}")
    gpu = check_passes(net, x, y, kind)
    rows = len(x) * gpu.layout.kinds.tokens
    depth = len(gpu.layout.forward_levels)
    timed(f"{kind}: its forward launches", gpu, lambda: [kinds.forward(gpu, lv, rows) for lv in range(1, depth)])
    timed(f"{kind}: its backward launches", gpu, lambda: [kinds.backward(gpu, lv, rows) for lv in range(1, depth)])
    timed(f"{kind}: its gradients", gpu, lambda: kinds.gradients(gpu, rows, gpu.dev.sums.gradsq))
raise SystemExit(done())
