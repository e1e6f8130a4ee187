"""The row executor's item timeline of one step, raw, for W1 and W2, with the update deferred to the
next step's forward items (as genlab runs it) and without: one .npz per case (per item: kind, slot,
topological level, SM, and when it was taken, its inputs were complete and it was done, in
microseconds from the step's start), for analyses that trace_rows.py's summary does not make.

    python benchmarks/trace_dump_rows.py OUT_DIR

`results/NVIDIA_H200/speed_v2/traces/` holds one run's files; benchmarks/NOTES.md reads them (what
delays the last item of a level).
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from genlab.bench import WORKLOADS, batch_of  # noqa: E402
from genlab.engines.cuda import CudaEngine  # noqa: E402
from genlab.optim import Adam  # noqa: E402
from trace_rows import shortest_step  # noqa: E402


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in ("W1", "W2"):
        for defer in (True, False):
            _, build, batch = WORKLOADS[name]
            net = build()
            x, y = batch_of(net, batch)
            engine = CudaEngine(net, Adam(lr=1e-3), executor="dataflow_rows")
            engine.executor.defer_update = defer
            for _ in range(5):
                engine.step(x, y)
            best, levels = shortest_step(engine, net, x, y, traces=7)
            level = np.array([levels.get(s, -1) for s in best["slot"]])
            np.savez_compressed(out / f"trace_{name}_{'defer' if defer else 'nodefer'}.npz", level=level,
                     grid=engine.executor.grid, **{k: np.asarray(v) for k, v in best.items()})
            print(name, "deferred update" if defer else "update at the end", f"span {best['done'].max():.1f} us")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
