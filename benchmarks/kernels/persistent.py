"""dataflow.cu and rows.cu: the persistent executors' whole step (forward to update in one launch)
against serial, three steps, outputs poisoned first; the time of a step."""

from harness import check_steps, done, timed

for executor in ("dataflow", "dataflow_batch", "dataflow_rows"):
    print(f"{executor}:")
    gpu, x, _ = check_steps(executor)
    print(f"       {len(gpu.layout.groups)} groups, grid {gpu.executor.grid}, batch {len(x)}")
    timed("one whole step", gpu, lambda: gpu.executor.enqueue_step(len(x)))
    gpu.flush()
raise SystemExit(done())
