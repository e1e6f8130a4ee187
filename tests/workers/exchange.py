"""Each process of a partitioned engine under a partition that sends both ways at every level
(groups alternate between the processes), against the serial engine in the same process:
writes OUT/rank<r>.json with the largest differences (tests/test_distributed.py).

    python -m torch.distributed.run --standalone --nproc-per-node N tests/workers/exchange.py OUT MICRO
"""

import json
import sys
from pathlib import Path

import numpy as np

import genlab
from genlab.distributed import World
from genlab.distributed.partitioned import PartitionedEngine
from genlab.engines.serial import SerialEngine
from genlab.optim import make_optimizer
from genlab.partition import given


def main(out: str, micro: str) -> None:
    world = World.start()
    net = genlab.Network.random_dag(5, 4, width=(2, 7), fan_in=(1, 4), seed=11, n_inputs=12, n_outputs=5)
    groups = sorted(g for g in net.groups if g != genlab.INPUT)
    alternate = given(net, {g: i % world.size for i, g in enumerate(groups)}, world.size)
    engine = PartitionedEngine(net.copy(), make_optimizer("sgd", lr=0.05), world, micro_batches=int(micro),
                               partition=alternate, tolerance=1e9)
    serial = SerialEngine(net.copy(), make_optimizer("sgd", lr=0.05))
    rng = np.random.default_rng(4)
    worst = {"logits": 0.0, "loss": 0.0, "params": 0.0, "grad_std": 0.0}
    for _ in range(3):
        x = rng.normal(size=(13, 12)).astype(np.float32)
        y = rng.integers(0, 5, 13)
        worst["logits"] = max(worst["logits"], float(np.abs(engine.forward(x) - serial.forward(x)).max()))
        (loss, correct), (loss0, correct0) = engine.step(x, y), serial.step(x, y)
        assert correct == correct0, (correct, correct0)
        worst["loss"] = max(worst["loss"], abs(loss - loss0))
        worst["grad_std"] = max(worst["grad_std"], max(abs(engine.grad_std[g] - v) for g, v in serial.grad_std.items()))
    p, q = engine.params, serial.params
    worst["params"] = float(max(np.abs(p[k] - q[k]).max() for k in q))
    worst["cut_edges"] = len(alternate.cut_edges)
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / f"rank{world.rank}.json").write_text(json.dumps(worst))


if __name__ == "__main__":
    main(*sys.argv[1:])
