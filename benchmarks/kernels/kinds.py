"""conv.cu and attention.cu: h, dz and the gradients of conv and attention groups against the
serial engine (float64) on layered DAGs of each kind, outputs poisoned first; then their times."""

import numpy as np
from harness import activations, compare, done, engines, flat, poison, timed

from genlab.bench.kinds import layered
from genlab.engines.cuda.executors import kinds, passes

CASES = [("conv", (2, 9, 7), {"kernel": 3}), ("conv", (3, 8, 8), {"kernel": 1, "stride": 2}),
         ("conv", (1, 7, 6), {"kernel": 5}), ("attention", (7, 5), {"heads": 2}), ("attention", (3, 9), {"heads": 1})]

for number, (kind, shape, options) in enumerate(CASES):
    net = layered(kind, 3, 4, 4, 2, shape, options, seed=number)
    rng = np.random.default_rng(number)
    x, y = rng.normal(size=(37, *shape)).astype(np.float32), rng.integers(0, 10, 37)
    gpu, ref = engines(net)
    print(f"{kind} {options}, input {shape}: {len(net.groups)} groups, batch {len(x)}")
    rows = len(x) * gpu.layout.kinds.tokens
    gpu.ensure_batch(rows)
    poison(gpu, "act", "dz", "grads")
    gpu.put_batch(x, y)
    passes.forward(gpu, rows)
    passes.backward(gpu, rows)
    gpu.stream.synchronize()
    ref.forward(x)
    ref.backward(y)
    got, dz = activations(gpu, net, rows), activations(gpu, net, rows, "dz")
    for g in net.hidden_groups:
        compare(f"h of {kind} group {g}", got[g], ref._h[g].reshape(got[g].shape), 1e-5)
    compare("every gradient", flat(gpu.grads), flat(ref.grads), 1e-5)
    depth = len(gpu.layout.forward_levels)
    timed(f"{kind}: its forward launches", gpu, lambda: [kinds.forward(gpu, lv, rows) for lv in range(1, depth)])
    timed(f"{kind}: its backward launches", gpu, lambda: [kinds.backward(gpu, lv, rows) for lv in range(1, depth)])
    timed(f"{kind}: its gradients", gpu, lambda: kinds.gradients(gpu, rows, gpu.ptr("scalars", 16)))
raise SystemExit(done())
