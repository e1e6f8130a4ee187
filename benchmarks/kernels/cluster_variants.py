"""cluster.cu's numbered variants (llm.c's dev/cuda habit): each builds cluster_step with other
settings or an edited phase, checks it against the float64 serial engine (three steps of a random
DAG of widths 1-70 at batch 300, outputs poisoned first: unaligned rows, several row blocks, a
split output group) and times a step's graph (CUDA events, replayed) on small networks beside the
row and level executors. Diagnostic variants leave the work out (barriers only) to measure what
the barriers and the launch cost; their results are wrong by design and are not checked.

    python benchmarks/kernels/cluster_variants.py [--only 0,3] [--out cluster_variants.json]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import harness  # noqa: E402
from harness import check_steps, warmed  # noqa: E402

from genlab.bench import WORKLOADS, time_graph  # noqa: E402
from genlab.bench.small import build as classroom  # noqa: E402
from genlab.engines.cuda import runtime  # noqa: E402
from genlab.engines.cuda.executors.cluster import Cluster  # noqa: E402
from genlab.network import Network  # noqa: E402

NO_WORK = ("const int kind = a.phases[4 * p], n_weight = a.phases[4 * p + 3], n = items_of(a, p, rows);",
           "const int kind = -1, n_weight = 0, n = 0;")
NO_SUMS = ("            if (row)\n                for (int k = 0; k < ws; k += 4) {",
           "            if (row && ws < 0)\n                for (int k = 0; k < ws; k += 4) {")
NO_COPIES = ("for (int c = 4 * lane; c < n; c += 128) copy16(dst + c, src + c);", "(void)dst; (void)src; (void)n; (void)lane;")
NO_ROW_COPIES = ("for (int c = lane; c < rows * q; c += 32) copy16(dst + (c / q) * stride + 4 * (c % q), src + 4 * c);",
                 "(void)dst; (void)src; (void)rows; (void)stride; (void)lane; (void)q;")
LDCG_COPY = ('asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(d), "l"(src) : "memory");',
             '(void)d; *reinterpret_cast<float4*>(dst) = __ldcg(reinterpret_cast<const float4*>(src));')
CA_COPY = ("cp.async.cg.shared.global [%0], [%1], 16;", "cp.async.ca.shared.global [%0], [%1], 16;")
NO_STAGING = ("if (((ed[0] | ws | ed[2]) & 3) || used + need > WARP_FLOATS) break;", "break;")
SOFT = {"CLUSTER_SOFT": 1}

VARIANTS = [  # (number, what it tries, #defines, blocks, threads, floats a warp stages, edits, checked)
    (0, "as committed: a cluster of 8 blocks of 512, 12 KiB staged a warp", {}, 8, 512, 3072, [], True),
    (11, "8 KiB staged a warp (2 edges of 16 a round)", {"WARP_FLOATS": 2048}, 8, 512, 2048, [], True),
    (12, "the update as the launch's last phase (8 multiprocessors)", {"_fused": 1}, 8, 512, 3072, [], True),
    (1, "a cluster of 8 blocks of 1024, 6 KiB a warp (64 registers: spills)",
     {"CL_THREADS": 1024, "WARP_FLOATS": 1536}, 8, 1024, 1536, [], True),
    (2, "software barrier, 16 blocks of 512", {**SOFT, "CL_BLOCKS": 16}, 16, 512, 3072, [], True),
    (3, "software barrier, 64 blocks of 512", {**SOFT, "CL_BLOCKS": 64}, 64, 512, 3072, [], True),
    (4, "software barrier, 132 blocks of 512", {**SOFT, "CL_BLOCKS": 132}, 132, 512, 3072, [], True),
    (5, "diagnostic: barriers only, cluster of 8", {}, 8, 512, 3072, [NO_WORK], False),
    (8, "copies as __ldcg float4 loads and shared stores, not cp.async", {}, 8, 512, 3072, [LDCG_COPY], True),
    (9, "copies through L1 (cp.async.ca; diagnostic: may read stale lines)", {}, 8, 512, 3072, [CA_COPY], False),
    (10, "nothing staged: every edge read straight from global memory", {}, 8, 512, 3072, [NO_STAGING], True),
    (6, "diagnostic: staged rounds without their sums", {}, 8, 512, 3072, [NO_SUMS], False),
    (7, "diagnostic: staged rounds without their copies", {}, 8, 512, 3072, [NO_COPIES, NO_ROW_COPIES], False),
]

NETS = {  # name: (network, batch)
    "classroom_b32": (classroom, 32),
    "classroom_b128": (classroom, 128),
    "classroom_b256": (classroom, 256),
    "mlp_64_32_10_b32": (lambda: Network.mlp([64, 32, 10], seed=0), 32),
    "deep_narrow_b64": (lambda: Network.random_dag(12, 4, 8, 3, seed=1), 64),
    "W1": (WORKLOADS["W1"][1], WORKLOADS["W1"][2]),
}


def use_variant(defines: dict, edits: list) -> None:
    """Make the next cluster_step load come from cluster.cu with these #defines and edits."""
    harness.use_variant("cluster.cu", "cluster_step", defines, edits)


def step_us(net, batch: int, executor: str) -> float:
    engine, x, y = warmed(net, batch, executor, lr=1e-4)
    n = engine.put_batch(x, y)
    us = time_graph(engine, lambda: engine.executor.enqueue_step(n), 500, warmup=20)
    engine.flush()
    return us


def traces(net, batch: int, count: int = 20) -> list[dict]:
    """`count` traced steps of the cluster executor (Cluster.phase_times), after three."""
    engine, x, y = warmed(net, batch, "cluster", lr=1e-4, steps=3)
    return [engine.executor.phase_times(x, y) for _ in range(count)]


def phase_spans(runs: list[dict]) -> dict:
    """Median microseconds of each phase over the traced steps."""
    names = [f"{i}_{name}" for i, (name, _) in enumerate(runs[0]["phases"])]
    spans = [np.diff([0.0] + [end for _, end in r["phases"]]) for r in runs]
    return {n: float(np.median([s[i] for s in spans])) for i, n in enumerate(names)}


def item_timeline(runs: list[dict]) -> list[dict]:
    """Per phase of the shortest traced step: when it started, its first item started, the median
    and longest item, a forward item's median wait for its first staged inputs and first sums,
    and when its last item ended (us from the step's start)."""
    best = min(runs, key=lambda t: t["phases"][-1][1])
    out, start = [], 0.0
    for (name, end), items in zip(best["phases"], best["items"]):
        row = {"phase": name, "start": start, "end": end}
        if items:
            a = np.array(items)
            row.update(first_item=float(a[:, 0].min()), item_median=float(np.median(a[:, 3] - a[:, 0])),
                       item_max=float((a[:, 3] - a[:, 0]).max()), last_item_end=float(a[:, 3].max()))
            if name == "forward":
                row.update(staged_median=float(np.median(a[:, 1] - a[:, 0])),
                           summed_median=float(np.median(a[:, 2] - a[:, 1])))
        out.append(row)
        start = end
    return out


def run(number, what, defines, blocks, threads, warp_floats, edits, checked) -> dict:
    print(f"== variant {number}: {what}", flush=True)
    defines = dict(defines)
    Cluster.fused_update = bool(defines.pop("_fused", False))
    use_variant(defines, edits)
    Cluster.grid, Cluster.threads, Cluster.warp_floats = blocks, threads, warp_floats
    import pycuda.driver as drv

    f = runtime.kernels().functions["cluster_step"]
    row = {"what": what, "defines": defines, "blocks": blocks, "threads": threads, "checked": checked,
           "registers": f.get_attribute(drv.function_attribute.NUM_REGS),
           "local_bytes": f.get_attribute(drv.function_attribute.LOCAL_SIZE_BYTES)}
    if checked:
        row["check"] = "ok" if check_steps("cluster")[2] else "FAIL"
    for name, (build, batch) in NETS.items():
        row[f"{name}_us"] = step_us(build(), batch, "cluster")
    runs = traces(classroom(), 32)
    row["classroom_b32_phases_us"] = phase_spans(runs)
    if number in (0, 8, 9, 10):
        row["classroom_b32_timeline"] = item_timeline(runs)
        for r in row["classroom_b32_timeline"]:
            print("   ", {k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}, flush=True)
    print("   " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                           if k not in ("what", "defines", "classroom_b32_phases_us", "classroom_b32_timeline")), flush=True)
    if "classroom_b32_phases_us" in row:
        print("   phases:", {k: round(v, 2) for k, v in row["classroom_b32_phases_us"].items()}, flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default=None, help="variant numbers, comma-separated")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    only = {int(n) for n in args.only.split(",")} if args.only else None
    result = {"others": {}, "variants": {}}
    for executor in ("dataflow_rows", "level"):  # the same networks on the other executors, same run
        result["others"][executor] = {f"{n}_us": step_us(b(), batch, executor) for n, (b, batch) in NETS.items()}
        print(executor, {k: round(v, 1) for k, v in result["others"][executor].items()}, flush=True)
    for number, *rest in VARIANTS:
        if only is None or number in only:
            result["variants"][number] = run(number, *rest)
    Cluster.grid, Cluster.threads, Cluster.warp_floats = VARIANTS[0][3:6]
    Cluster.fused_update = False
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    failed = [n for n, r in result["variants"].items() if r.get("check") == "FAIL"]
    print("FAILED checks:", failed if failed else "none")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
