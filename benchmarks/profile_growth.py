"""Where a growth step's time goes: W5's run (digits from one group, growth every 20 steps up to
512 groups) on an engine, each growth event timed, the events profiled with cProfile.

    python benchmarks/profile_growth.py [cuda|serial] [executor] [--top 30] [--sort tottime]
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
    parser.add_argument("--sort", default="cumulative", help="pstats order: cumulative, tottime, ...")
    parser.add_argument("--phases", action="store_true",
                        help="time the parts of each growth event (wall clock, no profiler) instead of cProfile")
    args = parser.parse_args()
    data = datasets.load("digits", seed=0)
    rng = np.random.default_rng(0)
    policy = GrowthPolicy(threshold=0.0, every=20, cooldown=0, max_groups=512, mode="width")
    trainer = Trainer(Network.mlp([64, 8, 10], seed=0), backend=args.backend, seed=0, growth=policy,
                      executor=args.executor)
    phases = time_phases(trainer) if args.phases else None
    grow, events, profile = trainer.grow, [], cProfile.Profile()

    def timed_grow():
        trainer.engine.stream.synchronize() if hasattr(trainer.engine, "stream") else None
        t = time.perf_counter()
        if phases is None:
            profile.enable()
        made = grow()
        if phases is None:
            profile.disable()
        trainer.engine.stream.synchronize() if hasattr(trainer.engine, "stream") else None
        if made:
            events.append(((time.perf_counter() - t) * 1e3, len(made), len(trainer.net.groups)))
            if phases is not None:
                phases["events"].append(dict(phases["now"]))
        if phases is not None:
            phases["now"].clear()
        return made

    trainer.grow = timed_grow
    steps = []
    for _ in range(args.steps):
        idx = rng.choice(len(data.y_train), 64, replace=False)
        t = time.perf_counter()
        trainer.step(data.X_train[idx], data.y_train[idx])
        steps.append((time.perf_counter() - t) * 1e3)
    for i, (ms, made, groups) in enumerate(events):
        print(f"growth event: {made:4d} new groups -> {groups:4d} groups, {ms:7.2f} ms")
        if phases is not None:
            print("    " + ", ".join(f"{name} {t:.2f}" for name, t in phases["events"][i].items()))
    print(f"median step (with events) {np.median(steps):.3f} ms, mean {np.mean(steps):.3f} ms")
    if phases is None:
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)


def time_phases(trainer) -> dict:
    """Wrap the parts of a growth event so that each event records their wall-clock milliseconds
    (the device synchronised after each part of the engine, so that its work counts where queued)."""
    from genlab import growth, network

    phases = {"now": {}, "events": []}
    engine = trainer.engine
    sync = engine.stream.synchronize if hasattr(engine, "stream") else (lambda: None)

    def wrap(owner, name, label, device=False):
        original = getattr(owner, name)

        def timed(*a, **k):
            t = time.perf_counter()
            out = original(*a, **k)
            if device:
                sync()
            phases["now"][label] = phases["now"].get(label, 0.0) + (time.perf_counter() - t) * 1e3
            return out

        setattr(owner, name, timed)

    wrap(trainer.grower, "check", "check")
    wrap(growth, "duplicate_width", "duplicate")
    wrap(growth, "duplicate_depth", "duplicate")
    wrap(engine, "choose_growth", "choose", device=True)
    wrap(engine, "apply_growth", "apply", device=True)
    wrap(network.Network, "topology", "topology")
    wrap(network.Network, "copy", "copy")
    if hasattr(engine, "stream"):
        from genlab.engines import cuda

        wrap(cuda._Index, "grown", "index")
        for name in ("_build", "_group_state", "_replay", "_flush"):
            wrap(engine, name, name.strip("_"), device=True)
    return phases


if __name__ == "__main__":
    main()
