"""W5's growth events, many times over, on the tree that PYTHONPATH names: every event's wall time
(host and device, the stream synchronised after it), the parts of each (genlab.bench.growth_run's
growth_phases) and where the host's time goes (cProfile, tottime per function), per executor.

`genlab bench --workload W5` keeps one median of nine events and the parts of one event; this
repeats the same growth (W5's policy and batches, up to the step after the last event) `--runs`
times in one process, so that two trees' events can be compared event by event:

    PYTHONPATH=.device/base python benchmarks/growth_events.py --json base.json
    python benchmarks/growth_events.py --json head.json

It reads only what both trees have (Trainer, GrowthPolicy, growth_phases).
"""

import argparse
import cProfile
import json
import pstats
import statistics
import time

import numpy as np


def one_run(executor, batches, data, policy, phases=False, profile=None):
    """One W5 growth; returns [ms per event] (or the events' parts when phases)."""
    from genlab import Network, Trainer
    from genlab.bench.growth_run import growth_phases
    from genlab.growth import GrowthPolicy

    trainer = Trainer(Network.mlp([64, 8, 10], seed=0), backend="cuda", seed=0, growth=GrowthPolicy(**policy),
                      executor=executor)
    grow, events, sync = trainer.grow, [], trainer.engine.stream.synchronize

    def timed_grow():
        sync()
        t = time.perf_counter()
        if profile is not None:
            profile.enable()
        made = grow()
        sync()
        if profile is not None:
            profile.disable()
        if made:
            events.append((time.perf_counter() - t) * 1e3)
        return made

    if phases:
        with growth_phases(trainer) as parts:
            for idx in batches:
                trainer.step(data.X_train[idx], data.y_train[idx])
        return parts
    trainer.grow = timed_grow
    for idx in batches:
        trainer.step(data.X_train[idx], data.y_train[idx])
    return events


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=12)
    ap.add_argument("--executors", nargs="+", default=["level", "dataflow_rows"])
    ap.add_argument("--json", required=True)
    a = ap.parse_args()

    import genlab
    from genlab import datasets

    data = datasets.load("digits", seed=0)
    rng = np.random.default_rng(0)
    every, steps = 20, 200  # W5 grows from 8 to 512 groups in nine events, the last at step 180
    batches = [rng.choice(len(data.y_train), 64, replace=False) for _ in range(steps)]
    # run_growth's policy, written out: a base tree from before this script has no shared one
    policy = dict(threshold=0.0, every=every, cooldown=0, max_groups=512, mode="width", sibling="split")
    out = {"genlab": genlab.__file__, "runs": a.runs, "executors": {}}
    for ex in a.executors:
        one_run(ex, batches, data, policy)  # warm: kernels loaded, pools filled
        runs = [one_run(ex, batches, data, policy) for _ in range(a.runs)]
        parts = [one_run(ex, batches, data, policy, phases=True) for _ in range(3)]
        prof = cProfile.Profile()
        for _ in range(3):
            one_run(ex, batches, data, policy, profile=prof)
        stats = pstats.Stats(prof)
        host = sorted(((tt * 1e3 / 3, f"{f.split('genlab/')[-1]}:{ln}:{fn}", nc // 3)
                       for (f, ln, fn), (cc, nc, tt, ct, callers) in stats.stats.items()), reverse=True)[:40]
        per_event = [statistics.median(r[i] for r in runs) for i in range(min(map(len, runs)))]
        keys = sorted({k for p in parts for e in p for k in e})
        out["executors"][ex] = {
            "events_ms": runs, "median_per_event_ms": per_event, "sum_of_medians_ms": sum(per_event),
            "phases_median_ms": {k: statistics.median(e.get(k, 0.0) for p in parts for e in p) for k in keys},
            "host_tottime_ms_per_run": [[round(t, 3), name, n] for t, name, n in host]}
        print("  phases", " ".join("%s=%.3f" % kv for kv in out["executors"][ex]["phases_median_ms"].items()))
        print(ex, "events", len(per_event), "sum of per-event medians %.2f ms" % sum(per_event),
              " ".join("%.2f" % v for v in per_event), flush=True)
    with open(a.json, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
