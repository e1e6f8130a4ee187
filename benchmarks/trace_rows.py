"""Timeline of one training step of the row executor (dataflow_rows) on W1-W3.

    python benchmarks/trace_rows.py --out benchmarks/results/<device>/trace_rows.json

For each workload: the step's span, and per kind of work item how many, how long they waited for
their inputs and how long their work took (medians and totals, microseconds), and per topological
level the span of its forward and backward items (the critical path's pieces).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from genlab.bench import WORKLOADS, batch_of  # noqa: E402
from genlab.engines.cuda import CudaEngine  # noqa: E402
from genlab.optim import Adam  # noqa: E402


def summarise(tr: dict, levels: dict) -> dict:
    out = {"span_us": float(tr["done"].max() - tr["taken"].min()), "kinds": {}}
    for kind in dict.fromkeys(tr["kind"]):
        m = tr["kind"] == kind
        wait, work = tr["ready"][m] - tr["taken"][m], tr["done"][m] - tr["ready"][m]
        out["kinds"][kind] = {"count": int(m.sum()), "wait_median": float(np.median(wait)),
                              "work_median": float(np.median(work)), "work_max": float(work.max()),
                              "work_total": float(work.sum()), "first_taken": float(tr["taken"][m].min()),
                              "last_done": float(tr["done"][m].max())}
    for kind in ("forward", "backward"):
        m = tr["kind"] == kind
        per = {}
        for lv in sorted(set(levels[s] for s in tr["slot"][m])):
            k = m & np.array([levels.get(s, -1) == lv for s in tr["slot"]])
            per[int(lv)] = [float(tr["ready"][k].min()), float(tr["done"][k].max()),
                            float(np.median(tr["done"][k] - tr["ready"][k]))]
        out[f"{kind}_levels"] = per  # level: [first ready, last done, median work]
    return out


def shortest_step(engine: CudaEngine, net, x, y, traces: int = 5) -> tuple[dict, dict]:
    """The shortest of `traces` traced steps (engine.trace_step) and each slot's topological level."""
    L = engine.layout
    levels = {L.slot[g]: lv for g, lv in net.levels().items()}
    return min((engine.trace_step(x, y) for _ in range(traces)), key=lambda t: t["done"].max()), levels


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", action="append", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    result = {}
    for name in args.workload or ["W1", "W2", "W3"]:
        _, build, batch = WORKLOADS[name]
        net = build()
        x, y = batch_of(net, batch)
        engine = CudaEngine(net, Adam(lr=1e-3), executor="dataflow_rows")
        for _ in range(5):
            engine.step(x, y)
        result[name] = summarise(*shortest_step(engine, net, x, y))
        result[name]["grid"] = engine.executor.grid
        r = result[name]
        print(name, f"span {r['span_us']:.0f} us, grid {engine.executor.grid}")
        for kind, k in r["kinds"].items():
            print(f"  {kind:13s} n={k['count']:5d} wait {k['wait_median']:7.1f} work {k['work_median']:6.1f} "
                  f"(max {k['work_max']:6.1f}, total {k['work_total']:8.0f}) taken {k['first_taken']:7.1f} "
                  f"done {k['last_done']:7.1f}")
        for kind in ("forward", "backward"):
            spans = r[f"{kind}_levels"]
            print(f"  {kind} levels: " + " ".join(f"{lv}:{a:.0f}-{b:.0f}({w:.1f})" for lv, (a, b, w) in spans.items()))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
