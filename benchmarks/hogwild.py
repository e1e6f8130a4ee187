"""Hogwild! against synchronous training: throughput and time to accuracy, K = 1, 2, 4, 8.

For each dataset and K, on one engine: K lock-free workers of batch b (Trainer(parallel=
genlab.Hogwild(K))) against the synchronous trainer of the same total batch K*b, from the same
network and seed, SGD of the same learning rate. Each run fits epoch by epoch (a fit's time
includes starting its workers) and is tested after each; the JSON keeps per epoch the seconds,
the samples per second, the test accuracy, and for Hogwild the staleness its steps saw.

    python benchmarks/hogwild.py --backend serial --out benchmarks/results/cpu/hogwild_<machine>.json
    python benchmarks/hogwild.py --backend cuda --out benchmarks/results/NVIDIA_H200/hogwild.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

import genlab

NETWORK = dict(levels=4, per_level=8, width=16, fan_in=4)  # 32 groups of 16 (genlab.Network.random_dag)
TARGETS = {"digits": 0.9, "fashion_mnist": 0.8}             # the accuracy "time to accuracy" is timed to


def run(data, backend: str, workers: int, batch: int, epochs: int, lr: float, seed: int, hogwild: bool) -> dict:
    net = genlab.Network.random_dag(**NETWORK, n_inputs=data.n_features, n_outputs=data.n_classes, seed=seed)
    options = dict(backend=backend, optimizer="sgd", lr=lr, seed=seed)
    if backend == "cuda":
        options["executor"] = "level_batch"
    if hogwild:
        trainer = genlab.Trainer(net, batch_size=batch, parallel=genlab.Hogwild(workers), **options)
    else:
        trainer = genlab.Trainer(net, batch_size=batch * workers, **options)
    out = {"method": "hogwild" if hogwild else "synchronous", "workers": workers if hogwild else 1,
           "batch": trainer.batch_size, "epochs": []}
    clock = 0.0
    for e in range(epochs):
        first = len(trainer.history.steps)
        start = time.perf_counter()
        trainer.fit(data.X_train, data.y_train, epochs=1, progress=False)
        seconds = time.perf_counter() - start
        clock += seconds
        steps = trainer.history.steps[first:]
        record = {"epoch": e + 1, "seconds": seconds, "clock": clock, "samples_per_s": len(data.y_train) / seconds,
                  "train_loss": trainer.history.epochs[-1]["loss"],
                  "test_accuracy": trainer.evaluate(data.X_test, data.y_test)["accuracy"]}
        if hogwild:
            stale = np.array([s["staleness"] for s in steps])
            record.update(staleness_mean=float(stale.mean()), staleness_max=int(stale.max()))
        out["epochs"].append(record)
    target = TARGETS.get(data.name)
    reached = [r["clock"] for r in out["epochs"] if target is not None and r["test_accuracy"] >= target]
    out["seconds_to_target"] = reached[0] if reached else None
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="serial", choices=["serial", "cuda"])
    p.add_argument("--datasets", default="digits,fashion_mnist")
    p.add_argument("--workers", default="1,2,4,8")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    results = {"backend": a.backend, "network": NETWORK, "batch_per_worker": a.batch, "lr": a.lr, "optimizer": "sgd",
               "targets": TARGETS, "cpus": os.cpu_count(), "machine": platform.node(), "runs": {}}
    if a.backend == "cuda":
        import pycuda.autoprimaryctx  # noqa: F401
        import pycuda.driver as drv

        results["device"] = drv.Context.get_device().name()
    for name in a.datasets.split(","):
        data = genlab.datasets.load(name)
        runs = results["runs"][name] = []
        for k in map(int, a.workers.split(",")):
            for hogwild in (False, True):
                r = run(data, a.backend, k, a.batch, a.epochs, a.lr, a.seed, hogwild)
                runs.append(r)
                print(f"{name:14s} K={k} {r['method']:12s} batch {r['batch']:4d}: "
                      f"{np.median([e['samples_per_s'] for e in r['epochs']]):9.0f} samples/s, "
                      f"test {r['epochs'][-1]['test_accuracy']:.3f}, to target {r['seconds_to_target']}", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
