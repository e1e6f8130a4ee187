"""Synthetic gradients (genlab.DNI) against exact backprop: test accuracy per epoch and each
module's error over training, on digits and Fashion-MNIST, the serial engine (or --backend cuda).

For each dataset, one network (an MLP of three hidden layers of one group each) trained from
the same start and seed with exact backprop, DNI cut after every hidden group, cDNI (the
modules also read the label) cut the same way, and cDNI pipelined (each part on its own batch,
the later parts on earlier ones: genlab.asynchronous.pipeline). The error of a module at a step is
|prediction - true share| / |true share| of its group's dL/dh.

    python benchmarks/dni.py --out benchmarks/results/cpu/dni.json
    python benchmarks/dni.py --backend cuda --out benchmarks/results/NVIDIA_H200/async/dni_cuda.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import genlab

HIDDEN = [128, 64, 32]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="digits,fashion_mnist")
    p.add_argument("--epochs", default="20,6")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="serial", choices=["serial", "cuda"])
    p.add_argument("--out", required=True)
    a = p.parse_args()
    out = {"backend": a.backend, "hidden": HIDDEN, "optimizer": "adam", "lr": 1e-3, "module_lr": 1e-3, "batch": 32, "runs": {}}
    for name, epochs in zip(a.datasets.split(","), map(int, a.epochs.split(","))):
        data = genlab.datasets.load(name)
        net = genlab.Network.mlp([data.n_features, *HIDDEN, data.n_classes], seed=a.seed)
        cuts = list(net.hidden_groups)
        out["runs"][name] = runs = {}
        for method, dec in (("backprop", None), ("dni", genlab.DNI(cuts)), ("cdni", genlab.DNI(cuts, conditioned=True)),
                            ("cdni_pipelined", genlab.DNI(cuts, conditioned=True, pipelined=True))):
            t = genlab.Trainer(net.copy(), backend=a.backend, seed=a.seed, decouple=dec,
                               **({"executor": "level_push"} if a.backend == "cuda" else {}))
            start = time.perf_counter()
            t.fit(data.X_train, data.y_train, epochs=epochs, validation=(data.X_test, data.y_test), progress=False)
            seconds = time.perf_counter() - start
            r = runs[method] = {"test_accuracy": [e["val_accuracy"] for e in t.history.epochs], "seconds": seconds}
            if dec is not None:
                errors = list(t.engine.errors)
                every = max(1, len(errors) // 200)
                r["module_error"] = {str(g): [float(np.mean([e[g] for e in errors[i:i + every]]))
                                              for i in range(0, len(errors), every)] for g in cuts}
                r["error_every_steps"] = every
            print(f"{name:14s} {method:9s} test {r['test_accuracy'][-1]:.4f} ({seconds:.1f} s)", flush=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
