"""genlab bench: one full training step (forward, loss, backward, Adam update) of each workload.

Every implementation is built from the same genlab Network with the same weights, and their
losses on the same batch are checked to agree before anything is timed. Times are medians of
CUDA-event measurements after a warm-up (host clocks for the serial engine), in milliseconds.

Implementations: genlab_<executor> (the CUDA engine with each executor of
genlab.engines.cuda.EXECUTORS: level, level_push, level_batch, dataflow, dataflow_batch,
dataflow_rows, cluster),
serial (the NumPy engine), torch_eager_group (one nn.Linear per group on torch.cat of its inputs), torch_level
(one gather + bmm + ReLU per topological level), torch_level_graph (that, captured whole in one
CUDA graph) and torch_compile (that, through torch.compile, in a child process given 5 minutes).
genlab_auto is the engine with executor="auto" (its choice is recorded beside its time).
W5 grows a network on digits for 2000 steps and times the whole run and each growth event,
PyTorch rebuilding its model (and re-capturing its graph) at each one. "small" times a
50-group classroom network's Trainer.step, engine step and device part (genlab.bench.small);
"sweep" times every executor and auto over a grid of shapes (genlab.bench.sweep); "precision" times
W1-W4 in each precision against PyTorch in the same one (genlab.bench.precisions).

Each workload also gets a floor: its FLOPs over the device's measured FP32 matmul rate and its
fewest bytes over the measured copy bandwidth, whichever is longer.

    genlab bench --workload W1 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .growth_run import run_growth
from .precisions import run_precisions
from .report import environment, write
from .small import run_small
from .sweep import run_sweep
from .timing import ceilings, import_times
from .workload_run import add_floors, run_workload
from .workloads import IMPLEMENTATIONS, WORKLOADS


EXTRA = {  # the parts beside W1-W4: name -> run(args, implementations)
    "W5": lambda args, impls: run_growth(implementations=args.growth_implementation or impls),
    "small": lambda args, impls: run_small(),
    "sweep": lambda args, impls: run_sweep(progress=lambda line: print(line, flush=True)),
    "precision": lambda args, impls: run_precisions(progress=lambda line: print(line, flush=True)),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="genlab bench", description=__doc__.splitlines()[0])
    parser.add_argument("--workload", action="append", choices=[*WORKLOADS, *EXTRA],
                        help="repeatable; default: all")
    parser.add_argument("--implementation", action="append", choices=IMPLEMENTATIONS, help="repeatable; default: all")
    parser.add_argument("--growth-implementation", action="append", choices=IMPLEMENTATIONS,
                        help="repeatable; W5's implementations (default: those of --implementation; serial and "
                             "torch_eager_group take minutes there)")
    parser.add_argument("--repeats", type=int, default=100, help="timed steps per implementation (at least 50)")
    parser.add_argument("--compile-timeout", type=int, default=300, help="seconds torch.compile may take")
    parser.add_argument("--out", default="benchmarks/results", help="folder; results go to OUT/<device>/")
    args = parser.parse_args(argv)
    from ..backends import cuda_status

    ok, why = cuda_status()
    if not ok:
        print(f"genlab bench: error: it times the CUDA engine, which cannot run here: {why}", file=sys.stderr)
        return 2
    env = environment()
    implementations = args.implementation or IMPLEMENTATIONS
    folder = Path(args.out) / env["device"].replace(" ", "_")
    folder.mkdir(parents=True, exist_ok=True)
    details = {"environment": env, "command": " ".join(["genlab bench", *(argv if argv is not None else sys.argv[1:])]),
               "ceilings": ceilings(), "import": import_times(), "workloads": {}}
    print("ceilings", json.dumps(details["ceilings"]), "import", json.dumps(details["import"]), flush=True)
    for name in args.workload or [*WORKLOADS, *EXTRA]:
        if name in EXTRA:
            details["workloads"][name] = EXTRA[name](args, implementations)
            print(name, json.dumps(details["workloads"][name]), flush=True)
        else:
            result = run_workload(name, max(args.repeats, 50), implementations, compile_timeout=args.compile_timeout)
            add_floors(result, details["ceilings"])
            details["workloads"][name] = result
            print(name, json.dumps(result["ms_per_step"]), "floor", json.dumps(result["floor_ms"]), flush=True)
        write(details, folder)  # after each workload, so a run cut short keeps what it measured
    for target in details["targets"]:
        print(("met   " if target["met"] else "missed"), target["target"], target["measured"], flush=True)
    print(f"wrote {folder}/summary.json, details.json, chart.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
