"""loss.cu, backward.cu and wide.cu's backward and gradient kernels: the loss, the weight and bias
gradients (which every group's dz feeds) and the group statistics, pulled and pushed, against
serial; every dz block written and masked by the ReLU."""

import numpy as np
from harness import activations, case, compare, done, engines, flat, poison, timed

from genlab.engines.cuda.executors import passes

for executor, width in (("level", (1, 40)), ("level", (30, 400)), ("level_push", (1, 70)), ("level_batch", (1, 300))):
    net, x, y = case(2, width=width)
    gpu, ref = engines(net, executor)
    print(f"{executor}, widths {width}: {len(net.groups)} groups, batch {len(x)}")
    gpu.ensure_batch(len(x))
    gpu.forward(x)
    ref.forward(x)
    poison(gpu, "dz", "grads")
    loss = gpu.backward(y)
    compare("loss (softmax_xent)", loss, ref.backward(y), 1e-5)
    dz = activations(gpu, net, len(x), "dz")  # every block written (the poison is gone), masked by ReLU
    for g in net.hidden_groups:
        compare(f"dz of group {g} is zero where h is", dz[g] * (ref._h[g] <= 0), np.zeros_like(dz[g]), 0.0)
    compare("every weight and bias gradient", flat(gpu.grads), flat(ref.grads), 1e-5)
    stds = [gpu.stats["grad_std"][g] for g in net.groups[1:]]
    compare("grad_std of every group", stds, [ref.stats["grad_std"][g] for g in net.groups[1:]], 1e-4)
    assert np.isfinite(stds).all()
    timed("loss, backward and gradients", gpu, lambda: passes.backward(gpu, len(x)))
raise SystemExit(done())
