"""Each process of a partitioned run with synthetic gradients at the pipeline's cut (genlab.DNI,
distributed="partitioned"), against the decoupled serial engine cut at the same groups in the
same process: writes OUT/rank<r>.json with the largest differences (tests/test_dni.py).

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/workers/dni.py OUT
"""

import json
import sys
from pathlib import Path

import numpy as np

import genlab
from genlab.distributed import World


def main(out: str) -> None:
    world = World.start()
    data = genlab.datasets.load("digits")
    net = genlab.Network.mlp([data.n_features, 24, 16, 12, data.n_classes], seed=3)
    parted = genlab.Trainer(net.copy(), backend="serial", distributed="partitioned", world=world,
                            decouple=genlab.DNI(conditioned=True))
    cut = parted.engine.partition.cut_edges
    cuts = sorted({s for s, _ in cut})
    serial = genlab.Trainer(net.copy(), backend="serial", decouple=genlab.DNI(cuts, conditioned=True))
    worst = {"loss": 0.0, "params": 0.0, "errors": 0.0}
    X, y = data.train
    for step in range(12):
        idx = np.arange(step * 48, (step + 1) * 48)
        (a, b) = parted.step(X[idx], y[idx]), serial.step(X[idx], y[idx])
        worst["loss"] = max(worst["loss"], abs(a["loss"] - b["loss"]))
        mine = parted.engine.errors[-1]  # this process's modules: {(level, reader): error}
        theirs = serial.engine.errors[-1]
        if mine:
            worst["errors"] = max(worst["errors"], abs(np.mean(list(mine.values())) - np.mean(list(theirs.values()))))
    pw, sw = parted.net.weights, serial.net.weights
    worst["params"] = float(max(np.abs(pw[k] - sw[k]).max() for k in sw))
    worst["cut_edges"] = len(cut)
    worst["modules"] = len(parted.engine.synthetic.modules)
    worst["first_error"] = serial.engine.errors[0]
    worst["last_error"] = {str(k): v for k, v in parted.engine.errors[-1].items()}
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / f"rank{world.rank}.json").write_text(json.dumps(worst, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:])
