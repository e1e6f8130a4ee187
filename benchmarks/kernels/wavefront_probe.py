"""One training pass of the wavefront kernel on a stacked RNN, for a profiler to look at
(`ncu --kernel-name wavefront_step --launch-count 1 ... python benchmarks/kernels/wavefront_probe.py`):
prints the launch's shape (rows a block, blocks, weights staged, shared memory) and its time.

    python benchmarks/kernels/wavefront_probe.py [layers steps hidden batch] [--stage 0|1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from genlab.bench import time_graph  # noqa: E402
from genlab.bench.recurrence import case  # noqa: E402
from genlab.engines.cuda.recurrent import RecurrentCudaEngine  # noqa: E402
from genlab.optim import Adam  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("shape", nargs="*", type=int, default=[2, 64, 128, 16])
    p.add_argument("--stage", type=int, choices=[0, 1], default=None)
    p.add_argument("--repeats", type=int, default=20)
    a = p.parse_args()
    net, x, y = case(*a.shape)
    options = {} if a.stage is None else {"stage": bool(a.stage)}
    engine = RecurrentCudaEngine(net, Adam(lr=1e-3), executor="wavefront", **options)
    runner = engine.runner
    runner.put(x, y)
    now = runner.now
    us = time_graph(engine, lambda: runner.enqueue(train=True), a.repeats)
    print(f"shape {a.shape}: rows {now.rows} row blocks {now.n_rb} slots {runner.plan.n_slots} staged {now.stage} "
          f"shared {now.shared} B optin {runner.optin} B: pass {us:.1f} us", flush=True)


if __name__ == "__main__":
    main()
