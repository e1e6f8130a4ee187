"""Where a growth step's time goes: W5's run (digits from one group, growth every 20 steps up to
512 groups) on an engine, each growth event timed, the events profiled with cProfile.

    python benchmarks/profile_growth.py [cuda|serial] [executor] [--top 30]
"""

import argparse
import cProfile
import pstats
import time

import numpy as np

from genlab import GrowthPolicy, Network, Trainer, datasets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backend", nargs="?", default="cuda")
    parser.add_argument("executor", nargs="?", default=None)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    data = datasets.load("digits", seed=0)
    rng = np.random.default_rng(0)
    policy = GrowthPolicy(threshold=0.0, every=20, cooldown=0, max_groups=512, mode="width")
    trainer = Trainer(Network.mlp([64, 8, 10], seed=0), backend=args.backend, seed=0, growth=policy,
                      executor=args.executor)
    grow, events, profile = trainer.grow, [], cProfile.Profile()

    def timed_grow():
        trainer.engine.stream.synchronize() if hasattr(trainer.engine, "stream") else None
        t = time.perf_counter()
        profile.enable()
        made = grow()
        profile.disable()
        trainer.engine.stream.synchronize() if hasattr(trainer.engine, "stream") else None
        if made:
            events.append(((time.perf_counter() - t) * 1e3, len(made), len(trainer.net.groups)))
        return made

    trainer.grow = timed_grow
    steps = []
    for _ in range(args.steps):
        idx = rng.choice(len(data.y_train), 64, replace=False)
        t = time.perf_counter()
        trainer.step(data.X_train[idx], data.y_train[idx])
        steps.append((time.perf_counter() - t) * 1e3)
    for ms, made, groups in events:
        print(f"growth event: {made:4d} new groups -> {groups:4d} groups, {ms:7.2f} ms")
    print(f"median step (with events) {np.median(steps):.3f} ms, mean {np.mean(steps):.3f} ms")
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
