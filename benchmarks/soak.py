"""A long run with growth, watched for leaks: 100,000 training steps on digits, a growth check
every 90 steps (1,100 growth events), the network reset to its start whenever it reaches 24
groups (so it grows again: about 50 resets, each a rebuild of the engine). Every 1,000 steps it
logs the host's resident memory, the device memory in use and the CUDA graphs alive (CUDA), the
groups and the events so far; at the end a checkpoint is saved and loaded back. Writes a JSON:

    python benchmarks/soak.py --backend serial --out benchmarks/results/cpu/soak_serial.json
    python benchmarks/soak.py --backend cuda --out benchmarks/results/NVIDIA_H200/soak_cuda.json
    python benchmarks/soak.py --keep --out benchmarks/results/cpu/soak_serial_keep.json   (one unbroken run)

Memory is flat when the last tenth of the samples sits within a few MB of the fifth (before it:
the warm-up, imports, kernels compiled, the first graphs captured, and the history filling up to
its bound; genlab.history).
"""

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import genlab


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))


def device_mb(backend: str) -> tuple[float | None, int | None]:
    if backend != "cuda":
        return None, None
    import pycuda.driver as drv

    from genlab.engines.cuda.graph import Graph

    free, total = drv.mem_get_info()
    return (total - free) / 2**20, Graph.alive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="serial", choices=["serial", "cuda"])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=90)
    parser.add_argument("--max-groups", type=int, default=24)
    parser.add_argument("--keep", action="store_true",
                        help="never reset: grow to --max-groups, then train on (the history's bound at work)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    data = genlab.datasets.load("digits", seed=0)
    X, y = data.train
    trainer = genlab.Trainer(genlab.Network.mlp([64, 16, 10], seed=0), backend=args.backend, seed=0,
                             growth=genlab.GrowthPolicy(every=args.every, cooldown=0, max_groups=args.max_groups,
                                                        mode="alternate"))
    order = np.random.default_rng(0).permutation(len(X))
    samples, events, resets, start = [], 0, 0, time.perf_counter()
    for step in tqdm(range(1, args.steps + 1), mininterval=5, desc=f"soak ({args.backend})"):
        idx = order[(step * 32) % (len(X) - 32):][:32]
        trainer.step(X[idx], y[idx])
        if len(trainer.net.groups) >= args.max_groups and not args.keep:
            events += len(trainer.history.events)
            trainer.reset()
            resets += 1
        if step % 1000 == 0:
            used, graphs = device_mb(args.backend)
            samples.append({"step": step, "seconds": round(time.perf_counter() - start, 2), "rss_mb": round(rss_mb(), 1),
                            "device_mb": None if used is None else round(used, 1), "graphs_alive": graphs,
                            "groups": len(trainer.net.groups), "events": events + len(trainer.history.events)})
    events += len(trainer.history.events)
    with tempfile.TemporaryDirectory() as folder:
        path = trainer.save(Path(folder) / "soak.ckpt")
        size = path.stat().st_size
        resumed = genlab.Trainer.load(path, backend=args.backend)
        resumed.step(X[:32], y[:32])
    tenth = max(1, len(samples) // 10)
    middle, late = samples[4 * tenth:5 * tenth], samples[-tenth:]  # after the warm-up and the history's filling
    drift = {key: round(np.mean([s[key] for s in late]) - np.mean([s[key] for s in middle]), 1)
             for key in ("rss_mb", "device_mb") if samples[0][key] is not None}
    summary = {"backend": trainer.backend, "steps": args.steps, "mode": "keep" if args.keep else "cycles", "growth_events": events, "resets": resets,
               "seconds": round(time.perf_counter() - start, 1), "drift_mb_last_tenth_vs_fifth": drift,
               "graphs_alive_at_end": samples[-1]["graphs_alive"], "checkpoint_bytes": size,
               "history_records_at_end": len(trainer.history.steps), "machine": platform.node(),
               "gpu": genlab.backends.cuda_status()[1] if args.backend == "cuda" else None}
    print(json.dumps(summary))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"summary": summary, "samples": samples}, indent=1) + "\n")


if __name__ == "__main__":
    main()
