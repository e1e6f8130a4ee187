"""rows.cu's numbered variants (llm.c's dev/cuda habit): each one builds rows_step with other
settings or an edited item, checks it against the float64 serial engine (three steps of a random
DAG, outputs poisoned first) and times it on W1, W2 and the classroom network (a step's graph
replayed, CUDA events), with W1's item timeline (median work of a forward and a backward item,
median span of a level). Diagnostic variants leave part of an item out to measure what it costs;
their results are wrong by design and are not checked.

    python benchmarks/kernels/rows_variants.py [--only 0,3] [--out rows_variants.json] [--before FILE]

--before FILE (repeatable) times a whole earlier rows.cu translation unit (runtime.source(["rows.cu"])
of an earlier commit, saved to FILE) as variant -1, -2, ..., beside the others in the same run; its
RowsStep must have the fields the executor fills today (`level` came with the level-ordered edges).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import check_steps, done, use_variant, warmed  # noqa: E402
from trace_rows import shortest_step, summarise  # noqa: E402

from genlab.bench import WORKLOADS, time_graph  # noqa: E402
from genlab.bench.small import build as classroom  # noqa: E402
from genlab.engines.cuda import CudaEngine, runtime  # noqa: E402

# accumulate()'s FMA block and its loads, as rows.cu has them (the diagnostic edits replace them)
FMAS = """                fma_row(acc, v[u].x, w);
                fma_row(acc, v[u].y, w + CH);
                fma_row(acc, v[u].z, w + 2 * CH);
                fma_row(acc, v[u].w, w + 3 * CH);"""
LOADS = "v[u] = (active && q0 + u < nq) ? load_quad(S, buf, q0 + u, b) : make_float4(0.f, 0.f, 0.f, 0.f);"

VARIANTS = [  # (number, what it tries, #defines, source edits (old, new), checked)
    # (5 and 8-10 read activations through L1, 11 one edge's count at a time: measured in
    # results/NVIDIA_H200/speed_v2/rows_variants_2 and _5, then their switches were taken out of rows.cu)
    (0, "as committed", {}, [], True),
    (1, "8 quads of a row in flight (RQ 8)", {"RQ": 8}, [], True),
    (2, "16 quads in flight (RQ 16; spills at 2 blocks an SM)", {"RQ": 16}, [], True),
    (3, "RQ 16, one block an SM (214 registers, no spills)", {"RQ": 16, "ROWS_BLOCKS": 1}, [], True),
    (4, "RQ 8, one block an SM", {"ROWS_BLOCKS": 1}, [], True),
    (6, "diagnostic: no FMAs (the loads' values summed once)", {},
     [(FMAS, "                acc[u & (CH - 1)] += v[u].x + v[u].y + v[u].z + v[u].w + w[0];")], False),
    (7, "diagnostic: no input loads (a register instead)", {},
     [(LOADS, "v[u] = make_float4(b * 1e-3f, u * 1e-3f, 1.f, 2.f);")], False),
    (12, "three blocks an SM (80 registers, spills)", {"ROWS_BLOCKS": 3}, [], True),
    (13, "three blocks an SM, RQ 1", {"ROWS_BLOCKS": 3, "RQ": 1}, [], True),
]


def step_us(net, batch: int) -> tuple[float, CudaEngine, tuple]:
    """Microseconds of a step's graph, the engine (a few steps in) and its batch."""
    engine, x, y = warmed(net, batch, "dataflow_rows", lr=1e-3)
    n = engine.put_batch(x, y)
    return time_graph(engine, lambda: engine.executor.enqueue_step(n), 300), engine, (x, y)


def run(number: int, what: str, defines: dict, edits: list, checked: bool, whole: str | None = None) -> dict:
    print(f"== variant {number}: {what}", flush=True)
    use_variant("rows.cu", "rows_step", defines, edits, whole)
    f = runtime.kernels().functions["rows_step"]
    import pycuda.driver as drv

    row = {"what": what, "defines": defines, "checked": checked,
           "registers": f.get_attribute(drv.function_attribute.NUM_REGS),
           "local_bytes": f.get_attribute(drv.function_attribute.LOCAL_SIZE_BYTES)}
    if checked:
        row["check"] = "ok" if check_steps("dataflow_rows")[2] else "FAIL"
    for name in ("W1", "W2"):
        _, build, batch = WORKLOADS[name]
        net = build()
        row[f"{name}_us"], engine, (x, y) = step_us(net, batch)
        if name == "W1":
            t = summarise(*shortest_step(engine, net, x, y))
            row["W1_span_us"] = t["span_us"]
            for kind in ("forward", "backward", "weight"):
                row[f"W1_{kind}_work_us"] = t["kinds"][kind]["work_median"]
            for kind in ("forward", "backward"):
                spans = sorted(t[f"{kind}_levels"].items())
                starts = [a for _, (a, _b, _w) in spans]
                row[f"W1_{kind}_level_us"] = float(np.median(np.diff(starts))) if len(starts) > 1 else None
        engine.flush()
    row["classroom_us"] = step_us(classroom(), 32)[0]
    print("   " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                           if k not in ("what", "defines")), flush=True)
    return row


def table(rows: dict) -> str:
    """The run as a Markdown table for benchmarks/NOTES.md: variant, what it tried, microseconds."""
    lines = ["| variant | what it tries | W1 us | W2 us | classroom us | W1 forward level us | check |",
             "| ---: | --- | ---: | ---: | ---: | ---: | --- |"]
    for n, r in rows.items():
        lines.append(f"| {n} | {r['what']} | {r['W1_us']:.1f} | {r['W2_us']:.1f} | {r['classroom_us']:.1f} | "
                     f"{r['W1_forward_level_us'] or 0:.1f} | {r.get('check', 'not checked')} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default=None, help="variant numbers, comma-separated")
    parser.add_argument("--out", default=None)
    parser.add_argument("--before", action="append", default=[])
    args = parser.parse_args()
    only = {int(v) for v in args.only.split(",")} if args.only else None
    rows = {}
    for i, before in enumerate(args.before, 1):
        rows[-i] = run(-i, f"before: {before}", {}, [], True, Path(before).read_text())
    rows.update({n: run(n, what, d, e, c) for n, what, d, e, c in VARIANTS if only is None or n in only})
    print(table(rows))
    if args.out:
        import pycuda.driver as drv

        Path(args.out).write_text(json.dumps({"device": runtime.kernels().device.name(), "variants": rows,
                                              "driver": drv.get_driver_version()}, indent=1))
    return done()


if __name__ == "__main__":
    raise SystemExit(main())
