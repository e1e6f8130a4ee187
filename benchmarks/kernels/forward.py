"""forward.cu and wide.cu's forward kernels: h of every group against the serial engine."""

from harness import activations, case, compare, done, engines, poison, timed

from genlab.engines.cuda.executors import passes

for executor, width in (("level", (1, 40)), ("level", (30, 400)), ("level_batch", (1, 300))):
    net, x, y = case(1, width=width)
    gpu, ref = engines(net, executor)
    print(f"{executor}, widths {width}: {len(net.groups)} groups, batch {len(x)}")
    gpu.ensure_batch(len(x))
    poison(gpu, "act")
    batch = gpu.put_batch(x)
    passes.forward(gpu, batch)
    gpu.stream.synchronize()
    ref.forward(x)
    got = activations(gpu, net, batch)
    for g in net.groups[1:]:
        compare(f"h of group {g} (width {net.widths[g]})", got[g], ref._h[g], 1e-5)
    timed("forward, every level", gpu, lambda: passes.forward(gpu, batch))
raise SystemExit(done())
