"""Where a growth step's time goes: W5's run (digits from one group, growth every 20 steps up to
512 groups) on an engine, each growth event timed, the events profiled with cProfile (or, with
--phases, the wall-clock time of each part of each event: genlab.bench.growth_phases).

    python benchmarks/profile_growth.py [cuda|serial] [executor] [--top 30] [--sort tottime] [--phases [--json F]]
"""

import argparse
import cProfile
import json
import pstats
import time

import numpy as np

from genlab import GrowthPolicy, Network, Trainer, datasets
from genlab.bench import growth_phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backend", nargs="?", default="cuda")
    parser.add_argument("executor", nargs="?", default=None)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="cumulative", help="pstats order: cumulative, tottime, ...")
    parser.add_argument("--json", help="with --phases: write the events (parts, the next step) to this file")
    parser.add_argument("--phases", action="store_true",
                        help="time the parts of each growth event (wall clock, no profiler) instead of cProfile")
    args = parser.parse_args()
    data = datasets.load("digits", seed=0)
    rng = np.random.default_rng(0)
    policy = GrowthPolicy(threshold=0.0, every=20, cooldown=0, max_groups=512, mode="width")
    trainer = Trainer(Network.mlp([64, 8, 10], seed=0), backend=args.backend, seed=0, growth=policy,
                      executor=args.executor)
    steps, events, profile = [], [], cProfile.Profile()

    grown_at = []  # the step of each event

    def train():
        for _ in range(args.steps):
            idx = rng.choice(len(data.y_train), 64, replace=False)
            made = len(events)
            t = time.perf_counter()
            trainer.step(data.X_train[idx], data.y_train[idx])
            if trainer.engine.grows_in_place:
                trainer.engine.stream.synchronize()
            steps.append((time.perf_counter() - t) * 1e3)
            if len(events) > made:
                grown_at.append(len(steps) - 1)

    if args.phases:
        with growth_phases(trainer) as events:
            train()
    else:
        grow = trainer.grow

        def profiled_grow():
            sync = trainer.engine.stream.synchronize if trainer.engine.grows_in_place else (lambda: None)
            sync()
            t = time.perf_counter()
            profile.enable()
            made = grow()
            profile.disable()
            sync()
            if made:
                events.append({"total": (time.perf_counter() - t) * 1e3, "new_groups": len(made)})
            return made

        trainer.grow = profiled_grow
        train()
    median = float(np.median(steps))
    for event, at in zip(events, grown_at):
        parts = {k: v for k, v in event.items() if k not in ("total", "new_groups")}
        following = steps[at + 1] if at + 1 < len(steps) else float("nan")
        print(f"growth event: {event['new_groups']:4d} new groups, {event['total']:7.2f} ms, the next step "
              f"{following:.3f} ms ({following - median:+.3f} against the median step)" +
              ("\n    " + ", ".join(f"{name} {t:.2f}" for name, t in parts.items()) if parts else ""))
    print(f"median step (with events) {median:.3f} ms, mean {np.mean(steps):.3f} ms")
    if args.json:
        rows = [{**event, "next_step_ms": steps[at + 1] if at + 1 < len(steps) else None}
                for event, at in zip(events, grown_at)]
        with open(args.json, "w") as f:
            json.dump({"backend": args.backend, "executor": args.executor, "median_step_ms": median,
                       "events": rows}, f, indent=1)
    if not args.phases:
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)

if __name__ == "__main__":
    main()
