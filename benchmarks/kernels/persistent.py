"""dataflow.cu and rows.cu: the persistent executors' whole step (forward to update in one launch)
against serial, three steps, outputs poisoned first; the time of a step."""

from harness import case, compare, done, engines, flat, poison, timed

for executor in ("dataflow", "dataflow_batch", "dataflow_rows"):
    net, x, y = case(6, levels=6, per_level=8, width=(1, 70), batch=300)
    gpu, ref = engines(net, executor)
    print(f"{executor}: {len(net.groups)} groups, grid {gpu.executor.grid}, batch {len(x)}")
    gpu.ensure_batch(len(x))
    poison(gpu, "act", "dz", "grads")
    for step in range(3):
        loss, correct = gpu.step(x, y)
        want, want_correct = ref.step(x, y)
        compare(f"step {step}: loss", loss, want, 1e-5)
        compare(f"step {step}: gradients", flat(gpu.grads), flat(ref.grads), 1e-5)
    compare("parameters after three steps", flat(gpu.params), flat(ref.params), 1e-4)
    timed("one whole step", gpu, lambda: gpu.executor.enqueue_step(len(x)))
    gpu.flush()
raise SystemExit(done())
